"""Callbacks that give an optimizer a momentum or weight-decay schedule.

The optimizer owns its hyperparameters: a `keras_decay.optimizers`
optimizer evaluates a schedule inside its own update, at the step being
taken, as Keras evaluates `learning_rate`. These callbacks hand it the
schedule through its own setter at the start of `fit`
(`optimizer.momentum = schedule`), so every step uses `schedule(t)` on
every execution path (`steps_per_execution`, `jit_compile`, distribution)
and the schedule is saved with the optimizer. From then on the optimizer
keeps it, after the fit as after an interrupted one: a later fit, with or
without the callback, goes on along the schedule (setting a float,
`optimizer.momentum = 0.9`, ends it). A Keras optimizer
(`keras.optimizers.SGD`, ...) has no place for a schedule: it is a
`TypeError` at train begin that names the fix,
`keras_decay.optimizers.from_keras(optimizer)`.
"""

import contextlib

import keras
from keras import ops

from keras_decay import _keras_compat
from keras_decay._config import deserialize_nested
from keras_decay._validation import check_schedule
from keras_decay.callbacks._schedule_range import first_out_of_range
from keras_decay.optimizers import current_hyperparameters
from keras_decay.optimizers._scheduled import ScheduledHyperparameters

__all__ = ["MomentumScheduler", "WeightDecayScheduler"]


def _check_schedule(schedule):
    if not isinstance(
        schedule, keras.optimizers.schedules.LearningRateSchedule
    ) and callable(schedule):
        raise TypeError(
            "Invalid value received for argument `schedule`. Expected a "
            "keras.optimizers.schedules.LearningRateSchedule instance (the "
            "optimizer evaluates it inside each step and saves it: a plain "
            "function of the step can do neither; write it as a "
            "LearningRateSchedule subclass with keras.ops, or use one of "
            f"keras_decay.schedules). Received: schedule={schedule!r}"
        )
    return check_schedule(schedule)


class _HyperparameterScheduler(keras.callbacks.Callback):
    """Base: gives the optimizer `schedule` as one of its hyperparameters."""

    _log_name = None
    _low, _high = 0.0, None

    def __init__(self, schedule):
        super().__init__()
        self.schedule = _check_schedule(schedule)
        self._optimizer = None
        self._attribute = None

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config))

    def _attribute_name(self, optimizer):
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        model = self.model
        optimizer = _keras_compat.unwrap_optimizer(model.optimizer)
        if not isinstance(optimizer, ScheduledHyperparameters):
            name = type(optimizer).__name__
            raise TypeError(
                f"{type(self).__name__} needs a keras_decay.optimizers "
                "optimizer, which evaluates the schedule inside each step. "
                f"Compile with keras_decay.optimizers.{name}(...), or "
                "convert: model.compile(optimizer="
                "keras_decay.optimizers.from_keras(optimizer), ...). "
                f"Received: optimizer={name}"
            )
        self._optimizer = optimizer
        self._attribute = self._attribute_name(optimizer)
        self._check_range()
        values = vars(optimizer)["_hyperparameters"]
        if values.get(self._attribute) is self.schedule:
            return  # given in an earlier fit: the traced update has it
        strategy = getattr(model, "distribute_strategy", None)
        scope = strategy.scope() if strategy is not None else None
        with scope or contextlib.nullcontext():
            # Built first, so that a float hyperparameter has its variable
            # (saved by position) whichever backend builds when: a float
            # set later (`optimizer.momentum = 0.9`) ends the schedule.
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            setattr(optimizer, self._attribute, self.schedule)
        # A train function traced before read the hyperparameter's float.
        model.make_train_function(force=True)

    def _check_range(self):
        """Raises before the first step if the schedule leaves its range
        on a step the fit can take."""
        found = first_out_of_range(self, self.schedule, self._low, self._high)
        if found is not None:
            step, value = found
            low, high = self._low, self._high
            bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(
                f"{type(self).__name__}: the schedule gives "
                f"{self._attribute}={value:.7g} at step {step}, a step this "
                f"fit takes; expected a value {bounds}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self._optimizer is None:
            return
        # The value the last step of the epoch used.
        step = int(ops.convert_to_numpy(self._optimizer.iterations)) - 1
        values = current_hyperparameters(self._optimizer, max(step, 0))
        logs[self._log_name] = values[self._log_name]


@keras.saving.register_keras_serializable(package="keras_decay")
class MomentumScheduler(_HyperparameterScheduler):
    """Gives the optimizer a momentum schedule, evaluated inside each step.

    The update of step `t` (0-based `optimizer.iterations` before it) uses
    `momentum_t = schedule(t)`; for SGD:
    `v = momentum_t * v - lr * g; w = w + v`. The attribute is SGD's and
    RMSprop's `momentum`, and the Adam family's and Lion's `beta_1` (as
    PyTorch's `OneCycleLR(cycle_momentum=True)` does); Adam's bias
    correction uses the current value, `1 - beta_1_t ** (t + 1)`.

    The model must be compiled with a `keras_decay.optimizers` optimizer
    (a Keras one is a `TypeError` at train begin:
    `keras_decay.optimizers.from_keras(optimizer)` converts it). At the
    start of `fit` the callback sets `optimizer.momentum = schedule` (one
    retrace); the optimizer evaluates it at every step, with any
    `steps_per_execution`, under `jit_compile` and distribution, saves it
    with its config, and keeps it after the fit (or an interrupted fit), so
    that a later fit goes on along it. A value outside [0, 1] on any step
    the fit can take raises a `ValueError` before the first step. The
    value of the epoch's last step goes into `logs["momentum"]`.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` (e.g.
            `keras_decay.schedules.LinearRamp(0.5, 0.99, 1000)`).

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras_decay.optimizers.SGD(0.01), loss="mse")
    >>> ramp = keras_decay.schedules.LinearRamp(0.0, 0.9, ramp_steps=500)
    >>> x, y = np.ones((8, 3)), np.zeros((8, 1))
    >>> history = model.fit(
    ...     x, y, batch_size=4, callbacks=[MomentumScheduler(ramp)], verbose=0
    ... )
    >>> round(history.history["momentum"][0], 4)  # step 1: 0.9 * 1 / 500
    0.0018
    """

    _log_name = "momentum"
    _high = 1.0

    def _attribute_name(self, optimizer):
        names = optimizer._hyperparameter_names
        return "momentum" if "momentum" in names else "beta_1"


@keras.saving.register_keras_serializable(package="keras_decay")
class WeightDecayScheduler(_HyperparameterScheduler):
    """Gives the optimizer a weight-decay schedule, evaluated in each step.

    Before the gradient step of step `t` (0-based `optimizer.iterations`),
    each decayed variable is set to `w = w - w * schedule(t) * lr_t`
    (Keras' decoupled weight decay, `weight_decay` scheduled), on a
    `keras_decay.optimizers` optimizer (SGD, RMSprop, Adam, AdamW, Nadam,
    Adamax, Lion; also one created with `weight_decay=None`); its decay
    groups (`decay_exclude`, `decay_mult`, `lr_mult`) apply. Mechanism as
    `MomentumScheduler`; a negative value on a step the fit can take
    raises a `ValueError` before the first step. The value of the epoch's
    last step goes into `logs["weight_decay"]`.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule`.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras_decay.optimizers.AdamW(1e-3), loss="mse")
    >>> decay = keras_decay.schedules.ExponentialDecay(1e-4, 1, 0.5)
    >>> x, y = np.ones((8, 3)), np.zeros((8, 1))
    >>> history = model.fit(
    ...     x, y, batch_size=4, verbose=0,
    ...     callbacks=[WeightDecayScheduler(decay)],
    ... )
    >>> print(f"{history.history['weight_decay'][0]:.3g}")  # 1e-4 * 0.5 ** 1
    5e-05
    """

    _log_name = "weight_decay"

    def _attribute_name(self, optimizer):
        return "weight_decay"
