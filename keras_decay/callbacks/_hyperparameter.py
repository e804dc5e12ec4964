"""Callbacks that set an optimizer's momentum or weight decay per batch.

For an optimizer that should carry its schedule itself, pass the schedule
to `keras_decay.optimizers` (`SGD(momentum=schedule)`): it is evaluated
inside the update and saved with the optimizer. These callbacks are for a
model compiled with a Keras optimizer (`keras.optimizers.SGD`, ...): at
the start of `fit` the optimizer becomes its `keras_decay.optimizers`
equivalent in place (same config, same state; the hyperparameter held in
an optimizer variable, momentum slots added if needed), and before each
batch the callback assigns `schedule(t)` to that variable from the host,
as Keras' `LearningRateScheduler` assigns the learning rate. `t` is the
0-based step about to be taken (`optimizer.iterations`). The compiled
update reads the variable: one trace per fit, `jit_compile=True` and
distribution strategies work, a checkpoint at any batch saves the value,
and after the fit (or an interruption: nothing needs restoring) the
optimizer keeps the last value used, as a constant.
"""

import contextlib
import math

import keras
from keras import ops

from keras_decay import _keras_compat
from keras_decay._config import deserialize_nested
from keras_decay.optimizers import take_over_optimizer

__all__ = ["MomentumScheduler", "WeightDecayScheduler"]


def _check_schedule(schedule):
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    if callable(schedule) and not isinstance(schedule, type):
        return schedule
    raise TypeError(
        "Invalid value received for argument `schedule`. Expected a "
        "keras.optimizers.schedules.LearningRateSchedule instance (or a "
        "callable taking the step and returning the value). "
        f"Received: schedule={schedule!r}"
    )


class _HyperparameterScheduler(keras.callbacks.Callback):
    """Base: assigns `schedule(step)` to one optimizer hyperparameter."""

    _log_name = None
    _low, _high = 0.0, None

    def __init__(self, schedule):
        super().__init__()
        self.schedule = _check_schedule(schedule)
        self._optimizer = None
        self._attribute = None
        self._last_value = None

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
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                f"{type(self).__name__} needs a model compiled with a Keras "
                f"optimizer. Received: optimizer={optimizer!r}"
            )
        strategy = getattr(model, "distribute_strategy", None)
        scope = strategy.scope() if strategy is not None else None
        with scope or contextlib.nullcontext():
            changed = take_over_optimizer(optimizer, model.trainable_variables)
            self._attribute = self._attribute_name(optimizer)
            if optimizer._is_scheduled(self._attribute):
                raise ValueError(
                    f"{type(self).__name__}: the optimizer already schedules "
                    f"`{self._attribute}` itself; remove the callback or "
                    "pass a float to the optimizer."
                )
            self._optimizer = optimizer
            # The first value, before `build` makes it a variable.
            changed |= self._assign(self._value_now())
            changed |= optimizer._complete(model.trainable_variables)
        if changed:
            # A train function traced before held the Keras class's update.
            model.make_train_function(force=True)

    def _value_now(self):
        optimizer = self._optimizer
        step = int(ops.convert_to_numpy(_keras_compat.schedule_step(optimizer)))
        value = float(ops.convert_to_numpy(self.schedule(step)))
        low, high = self._low, self._high
        if (
            not math.isfinite(value)
            or value < low
            or (high is not None and value > high)
        ):
            bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(
                f"{type(self).__name__}: the schedule gave "
                f"{self._attribute}={value!r} at step {step}; expected a "
                f"value {bounds}."
            )
        return value

    def _assign(self, value):
        """Sets the hyperparameter; True if that created its variable."""
        values = vars(self._optimizer)["_hyperparameters"]
        created = values.get(self._attribute) is None
        setattr(self._optimizer, self._attribute, value)
        self._last_value = value
        return created

    def on_train_batch_begin(self, batch, logs=None):
        # `self.model` brings JAX's state back into the variables first.
        self.model
        self._assign(self._value_now())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._last_value is not None:
            logs[self._log_name] = self._last_value


@keras.saving.register_keras_serializable(package="keras_decay")
class MomentumScheduler(_HyperparameterScheduler):
    """Sets the optimizer's momentum from a schedule before every batch.

    The update of step `t` (0-based `optimizer.iterations` before it) uses
    `momentum_t = schedule(t)`; for SGD:
    `v = momentum_t * v - lr * g; w = w + v`. The attribute set is SGD's
    and RMSprop's `momentum`, and the Adam family's and Lion's `beta_1`
    (as PyTorch's `OneCycleLR(cycle_momentum=True)` does); Adam's bias
    correction uses the current value, `1 - beta_1_t ** (t + 1)`.

    At the start of `fit` a Keras optimizer becomes its
    `keras_decay.optimizers` equivalent in place (momentum slots are added
    to an SGD built with `momentum=0.0`; one retrace); before each batch the
    value is computed on the host and assigned to the optimizer's momentum
    variable. A checkpoint saves it; after `fit`, or an interrupted `fit`,
    the optimizer keeps the last value used. A value outside [0, 1] from
    the schedule raises a `ValueError` before the batch. The value goes into
    `logs["momentum"]` at each epoch end. To keep the schedule with the
    optimizer instead, pass it to `keras_decay.optimizers.SGD(momentum=...)`.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` (e.g.
            `keras_decay.schedules.LinearRamp(0.5, 0.99, 1000)`), or a
            callable taking the step and returning the value.

    Example:

    >>> ramp = keras_decay.schedules.LinearRamp(0.0, 0.9, ramp_steps=500)
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> model.fit(x, y, callbacks=[MomentumScheduler(ramp)])
    """

    _log_name = "momentum"
    _high = 1.0

    def _attribute_name(self, optimizer):
        names = optimizer._hyperparameter_names
        return "momentum" if "momentum" in names else "beta_1"


@keras.saving.register_keras_serializable(package="keras_decay")
class WeightDecayScheduler(_HyperparameterScheduler):
    """Sets the optimizer's decoupled weight decay before every batch.

    Before the gradient step of step `t` (0-based `optimizer.iterations`),
    each decayed variable is set to `w = w - w * schedule(t) * lr_t`
    (Keras' decoupled weight decay, `weight_decay` scheduled). Works with
    the Keras optimizers SGD, RMSprop, Adam, AdamW, Nadam, Adamax and Lion,
    also one created with `weight_decay=None`; `exclude_from_weight_decay`
    still applies. Mechanism as `MomentumScheduler`; a negative value from
    the schedule raises a `ValueError`. The value goes into
    `logs["weight_decay"]` at each epoch end.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` or a
            callable taking the step and returning the value.

    Example:

    >>> decay = keras_decay.schedules.ExponentialDecay(1e-4, 1000, 0.5)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    >>> model.fit(x, y, callbacks=[WeightDecayScheduler(decay)])
    """

    _log_name = "weight_decay"

    def _attribute_name(self, optimizer):
        return "weight_decay"
