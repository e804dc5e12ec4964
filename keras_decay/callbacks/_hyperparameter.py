"""Callbacks that schedule an optimizer's momentum or decoupled weight decay.

Keras optimizers read `momentum`, `beta_1` and `weight_decay` as Python
floats while the train function is traced, so assigning a new float from a
callback after the first step changes nothing (the traced value stays), and
`SGD(momentum=0.0)` creates no momentum slots at all. These callbacks instead
put a `_ScheduledValue` in the optimizer's attribute at the start of `fit`:
a float (for `get_config`, JSON, `!= 0` checks) that, when the traced update
converts it to a tensor, evaluates `schedule(optimizer.iterations)` inside
the graph. So the update of step `t` (0-based `optimizer.iterations` before
the update) uses `schedule(t)`, nothing is assigned from the host per batch,
the train function is traced once, and it works with `jit_compile=True` and
under `tf.distribute` strategies. At the end of `fit` the attribute is a
plain float again: `schedule(optimizer.iterations)`, the value the next step
would use.
"""

from contextlib import nullcontext

import keras
from keras import ops

from keras_decay._config import deserialize_nested

__all__ = ["MomentumScheduler", "WeightDecayScheduler"]

# Optimizer class name -> attribute holding its momentum coefficient.
_MOMENTUM_ATTRIBUTES = {
    "SGD": "momentum",
    "RMSprop": "momentum",
    "Adam": "beta_1",
    "AdamW": "beta_1",
    "Nadam": "beta_1",
    "Adamax": "beta_1",
}


class _ScheduledValue(float):
    """A float whose tensor value is `schedule(optimizer.iterations)`.

    As a Python float it holds the last value read on the host (refreshed
    at the start and end of `fit` and of every epoch); that is what the
    optimizer's `get_config` reports. Converted to a tensor
    (`__tf_tensor__`, used by `ops.cast`, `tf.cast` and tensor arithmetic)
    and in arithmetic with numbers it is the schedule evaluated at the
    optimizer's current step, in the graph. Compared with 0 it is "on"
    (`!= 0` and `> 0` are true), so optimizers create their slots and run
    their momentum / weight-decay branch whatever the schedule's value.
    """

    def __new__(cls, value, schedule, optimizer):
        self = super().__new__(cls, value)
        self._schedule = schedule
        self._optimizer = optimizer
        self._cache = None
        return self

    def _tensor(self, dtype=None):
        value = self._evaluate()
        if dtype is not None:
            value = ops.cast(value, dtype)
        return value

    def _evaluate(self):
        """`schedule(iterations)`, computed once per traced graph.

        The optimizers convert the attribute once or twice per variable;
        inside one traced step (one graph, one replica context) the value
        is the same, so it is computed once and reused. Eagerly it is
        computed on every use.
        """
        import tensorflow as tf

        if tf.executing_eagerly():
            return self._compute()
        key = (
            tf.compat.v1.get_default_graph(),
            tf.distribute.get_replica_context(),
        )
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        value = self._compute()
        self._cache = (key, value)
        return value

    def _compute(self):
        return ops.convert_to_tensor(self._schedule(self._optimizer.iterations))

    @property
    def dtype(self):
        # For `keras.ops` dtype inference (`ops.multiply(self.momentum, m)`).
        return keras.config.floatx()

    def __tf_tensor__(self, dtype=None, name=None):
        import tensorflow as tf

        if dtype is not None:
            dtype = tf.as_dtype(dtype).name
        return self._tensor(dtype)

    # The optimizers only ask "is the hyperparameter on?".
    def __bool__(self):
        return True

    def __eq__(self, other):
        return other is self

    def __ne__(self, other):
        return other is not self

    def __gt__(self, other):
        return other == 0 or float(self) > other

    def __ge__(self, other):
        return other == 0 or float(self) >= other

    def __lt__(self, other):
        return other != 0 and float(self) < other

    def __le__(self, other):
        return other != 0 and float(self) <= other

    __hash__ = object.__hash__

    def __add__(self, other):
        return self._tensor() + other

    def __radd__(self, other):
        return other + self._tensor()

    def __sub__(self, other):
        return self._tensor() - other

    def __rsub__(self, other):
        return other - self._tensor()

    def __mul__(self, other):
        return self._tensor() * other

    def __rmul__(self, other):
        return other * self._tensor()

    def __truediv__(self, other):
        return self._tensor() / other

    def __rtruediv__(self, other):
        return other / self._tensor()

    def __pow__(self, other):
        return ops.power(self._tensor(), other)

    def __rpow__(self, other):
        return ops.power(other, self._tensor())

    def __neg__(self):
        return -self._tensor()

    def __repr__(self):
        return f"<scheduled {float(self)!r}>"

    def __reduce__(self):
        # Copies and pickles are plain floats: never a second live link to
        # the optimizer's step.
        return (float, (float(self),))


def _check_schedule(schedule):
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    if callable(schedule) and not isinstance(schedule, type):
        return schedule
    raise TypeError(
        "Invalid value received for argument `schedule`. Expected a "
        "keras.optimizers.schedules.LearningRateSchedule instance (or a "
        "callable taking the step tensor and returning the value). "
        f"Received: schedule={schedule!r}"
    )


class _HyperparameterScheduler(keras.callbacks.Callback):
    """Base: installs a `_ScheduledValue` in one optimizer attribute."""

    _log_name = None

    def __init__(self, schedule):
        super().__init__()
        self.schedule = _check_schedule(schedule)
        self._optimizer = None
        self._attribute = None
        self._original_get_config = None

    def _attribute_name(self, optimizer):
        raise NotImplementedError

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config))

    def _current_value(self):
        optimizer = self._optimizer
        value = self.schedule(ops.convert_to_tensor(optimizer.iterations))
        return float(keras.ops.convert_to_numpy(value))

    def _install(self, value):
        scheduled = _ScheduledValue(value, self.schedule, self._optimizer)
        # Bypass the optimizer's attribute tracking: a float is never a
        # variable, and the value changes without touching any state.
        object.__setattr__(self._optimizer, self._attribute, scheduled)

    def on_train_begin(self, logs=None):
        if keras.backend.backend() != "tensorflow":
            raise NotImplementedError(
                f"{type(self).__name__} needs the TensorFlow backend. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        optimizer = self.model.optimizer
        # Mixed precision wraps the optimizer in a LossScaleOptimizer: the
        # hyperparameters (and the step count) are the inner optimizer's.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if optimizer is None:
            raise ValueError(
                f"{type(self).__name__} needs a compiled model with an "
                "optimizer."
            )
        self._attribute = self._attribute_name(optimizer)
        self._optimizer = optimizer
        self._install(self._current_value())
        self._prepare(optimizer)
        self._build_optimizer(self.model.optimizer)
        self._patch_get_config(optimizer)
        # A train function traced by an earlier `fit` holds the old float:
        # make a new one, traced (once) with the schedule in the graph.
        self.model.make_train_function(force=True)

    def _prepare(self, optimizer):
        pass

    def _build_optimizer(self, optimizer):
        """Builds the optimizer now, so the traced step creates no variable.

        (A `tf.function` whose first trace creates variables is traced
        twice.) Skipped when the model has no variables yet.
        """
        variables = self.model.trainable_variables
        if optimizer.built or not variables:
            return
        strategy = getattr(self.model, "distribute_strategy", None)
        with strategy.scope() if strategy is not None else nullcontext():
            optimizer.build(variables)

    def _patch_get_config(self, optimizer):
        original = type(optimizer).get_config.__get__(optimizer)
        self._original_get_config = original

        def get_config():
            config = original()
            return {
                key: float(value)
                if isinstance(value, _ScheduledValue)
                else value
                for key, value in config.items()
            }

        object.__setattr__(optimizer, "get_config", get_config)

    def on_epoch_end(self, epoch, logs=None):
        value = self._current_value()
        self._install(value)
        if logs is not None:
            logs[self._log_name] = value

    def on_train_end(self, logs=None):
        optimizer = self._optimizer
        if optimizer is None:
            return
        object.__setattr__(optimizer, self._attribute, self._current_value())
        vars(optimizer).pop("get_config", None)
        self.model.make_train_function(force=True)
        self._optimizer = None


@keras.saving.register_keras_serializable(package="keras_decay")
class MomentumScheduler(_HyperparameterScheduler):
    """Sets the optimizer's momentum from a schedule at every step.

    The update of step `t` (0-based `optimizer.iterations` before the
    update) uses `momentum_t = schedule(t)`; for SGD:
    `v = momentum_t * v - lr * g; w = w + v`. The attribute scheduled is
    SGD's and RMSprop's `momentum`, and Adam's, AdamW's, Nadam's and
    Adamax's `beta_1` (as PyTorch's `OneCycleLR(cycle_momentum=True)`
    does). Adam-style bias correction then uses the current value,
    `1 - beta_1_t ** (t + 1)`, as Keras' and PyTorch's Adam do.

    The schedule is evaluated inside the traced train step from
    `optimizer.iterations`: no retrace, no host assignment per batch, works
    with `jit_compile=True` and `tf.distribute` strategies, and resumes
    from `optimizer.iterations` (saved with the model). An SGD created with
    the default `momentum=0.0` gets its momentum slots added. The current
    value goes into `logs["momentum"]` at each epoch end (History,
    CSVLogger, TensorBoard) and the optimizer's `get_config` reports it.
    TensorFlow backend only.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` (e.g.
            `keras_decay.schedules.LinearRamp(0.5, 0.99, 1000)`), or a
            callable taking the step tensor and returning the value with
            `keras.ops`. Values should lie in [0, 1).

    Example:

    >>> ramp = keras_decay.schedules.LinearRamp(0.0, 0.9, ramp_steps=500)
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> model.fit(x, y, callbacks=[MomentumScheduler(ramp)])
    """

    _log_name = "momentum"

    def _attribute_name(self, optimizer):
        for cls in type(optimizer).__mro__:
            if cls.__name__ in _MOMENTUM_ATTRIBUTES:
                return _MOMENTUM_ATTRIBUTES[cls.__name__]
        raise ValueError(
            f"MomentumScheduler cannot schedule the momentum of optimizer "
            f"{type(optimizer).__name__}: supported are "
            f"{', '.join(sorted(_MOMENTUM_ATTRIBUTES))} (and subclasses)."
        )

    def _prepare(self, optimizer):
        if not optimizer.built:
            return  # Its `build` sees a value that is `!= 0`: slots made.
        name = type(optimizer).__name__
        slots = {"momentum": ("momentums", "_momentums")}.get(self._attribute)
        if slots is None:
            return  # Adam-style optimizers always have their slots.
        attribute = next(s for s in slots if hasattr(optimizer, s))
        if getattr(optimizer, attribute):
            return
        # Built with momentum 0: add the slots a momentum > 0 would have.
        strategy = getattr(self.model, "distribute_strategy", None)
        variables = optimizer._trainable_variables
        if not variables:
            raise ValueError(f"{name} is built without trainable variables.")
        with strategy.scope() if strategy is not None else nullcontext():
            slots = optimizer.add_optimizer_variables(variables, "momentum")
        setattr(optimizer, attribute, slots)


@keras.saving.register_keras_serializable(package="keras_decay")
class WeightDecayScheduler(_HyperparameterScheduler):
    """Sets the optimizer's decoupled weight decay from a schedule.

    Before the gradient step of step `t` (0-based `optimizer.iterations`),
    each decayed variable is set to `w = w - w * schedule(t) * lr_t`
    (Keras' decoupled weight decay, `weight_decay` scheduled). Works with
    every Keras optimizer, also one created with `weight_decay=None`; the
    optimizer's `exclude_from_weight_decay` rules still apply. Evaluated in
    the traced step from `optimizer.iterations` like `MomentumScheduler`.
    The current value goes into `logs["weight_decay"]` at each epoch end.
    TensorFlow backend only.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` or a
            callable taking the step tensor and returning the value.

    Example:

    >>> decay = keras_decay.schedules.ExponentialDecay(1e-4, 1000, 0.5)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    >>> model.fit(x, y, callbacks=[WeightDecayScheduler(decay)])
    """

    _log_name = "weight_decay"

    def _attribute_name(self, optimizer):
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "WeightDecayScheduler needs a keras.optimizers.Optimizer "
                f"with decoupled weight decay. Received: "
                f"{type(optimizer).__name__}"
            )
        return "weight_decay"
