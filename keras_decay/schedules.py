"""Learning-rate (and hyperparameter) schedules, exact to the formula.

Every class is a `keras.optimizers.schedules.LearningRateSchedule`: pass it
as any Keras optimizer's `learning_rate`, or to
`keras_decay.callbacks.MomentumScheduler` / `WeightDecayScheduler`. The step
is the optimizer's `iterations` (0-based, the number of updates done).

| class              | value at step `t`                                     |
| ------------------ | ----------------------------------------------------- |
| `ExponentialDecay` | `lr * decay_rate ** (t / decay_steps)`                |
| `StepDecay`        | `lr * drop ** floor(floor(t / steps_per_epoch)`       |
|                    | `                       / epochs_per_drop)`           |
| `LinearRamp`       | `start + (end - start) * min(t, ramp_steps)`          |
|                    | `                      / ramp_steps`                  |
| `Warmup`           | linear from `initial_value` to `schedule(warmup)`,    |
|                    | then `schedule(t)`                                    |

The schedules compute in float64 (where the backend has it: TensorFlow
always, JAX with `jax_enable_x64`) and return `keras.config.floatx()`.
Keras' built-in `ExponentialDecay` raises a float32 `decay_rate` to a float32
power, which is off by 2.6e-5 (relative) at `decay_rate=0.9998` after 1000
decay periods and by 2.6e-3 after 10^5; the exponent here is
`(t / decay_steps) * log(decay_rate)` with the logarithm taken in float64 on
the host, and the result is within 1e-6 of the float64 formula for steps up
to 10^7 (see `tests/test_schedules.py`).
"""

import math

import keras
from keras import ops

from keras_decay._config import deserialize_nested
from keras_decay._validation import check_bool
from keras_decay._validation import check_float
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_positive_float
from keras_decay._validation import check_positive_int

__all__ = ["ExponentialDecay", "LinearRamp", "StepDecay", "Warmup"]


def _wide_float():
    """The widest float dtype the backend computes in: float64 if it can."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


def _as_wide_step(step):
    return ops.cast(step, _wide_float())


def _out(value):
    return ops.cast(value, keras.config.floatx())


@keras.saving.register_keras_serializable(package="keras_decay")
class ExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Exponential decay of the learning rate, accurate to float64.

    The value at step `t` is computed as:
    `initial_learning_rate * decay_rate ** (t / decay_steps)`,
    or with `staircase=True`:
    `initial_learning_rate * decay_rate ** floor(t / decay_steps)`,
    evaluated as `initial_learning_rate * exp(p * log(decay_rate))` in
    float64 with `log(decay_rate)` taken on the host, so the relative error
    against the float64 formula stays below 1e-6 for `t` up to 10^7 (Keras'
    built-in is off by 2.6e-5 at `decay_rate=0.9998`, `t / decay_steps =
    1000`).

    Args:
        initial_learning_rate: Float >= 0. The value at step 0.
        decay_steps: Int >= 1. The number of steps per factor `decay_rate`.
        decay_rate: Float > 0. The factor per `decay_steps` steps.
        staircase: Bool. Whether to decay in discrete intervals
            (`floor(t / decay_steps)`). Defaults to `False`.

    Example:

    >>> schedule = ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96)
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule)
    """

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        decay_rate,
        staircase=False,
    ):
        super().__init__()
        self.initial_learning_rate = check_non_negative_float(
            initial_learning_rate, "initial_learning_rate"
        )
        self.decay_steps = check_positive_int(decay_steps, "decay_steps")
        self.decay_rate = check_positive_float(decay_rate, "decay_rate")
        self.staircase = check_bool(staircase, "staircase")

    def __call__(self, step):
        # log(decay_rate) / decay_steps in float64 on the host: no float32
        # rounding of decay_rate enters the exponent.
        log_rate = math.log(self.decay_rate)
        step = _as_wide_step(step)
        if self.staircase:
            exponent = ops.floor_divide(step, self.decay_steps) * log_rate
        else:
            exponent = step * (log_rate / self.decay_steps)
        return _out(self.initial_learning_rate * ops.exp(exponent))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


@keras.saving.register_keras_serializable(package="keras_decay")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Drops the learning rate by a factor every few epochs.

    The value at step `t` is computed as:
    `initial_learning_rate * drop ** floor(epoch / epochs_per_drop)` with
    `epoch = floor(t / steps_per_epoch)`: the "halve every 5 epochs" rule
    with the defaults. Per epoch it equals PyTorch's
    `StepLR(step_size=epochs_per_drop, gamma=drop)`, i.e.
    `lr * gamma ** (epoch // step_size)`.

    Args:
        initial_learning_rate: Float >= 0. The value during the first
            `epochs_per_drop` epochs.
        steps_per_epoch: Int >= 1. Optimizer steps (batches) per epoch.
        drop: Float in (0, 1]. The factor applied at each drop.
            Defaults to `0.5`.
        epochs_per_drop: Int >= 1. Epochs between drops. Defaults to `5`.

    Example:

    >>> schedule = StepDecay(0.1, steps_per_epoch=100)  # halve every 5 epochs
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule)
    """

    def __init__(
        self,
        initial_learning_rate,
        steps_per_epoch,
        drop=0.5,
        epochs_per_drop=5,
    ):
        super().__init__()
        self.initial_learning_rate = check_non_negative_float(
            initial_learning_rate, "initial_learning_rate"
        )
        self.steps_per_epoch = check_positive_int(
            steps_per_epoch, "steps_per_epoch"
        )
        self.drop = check_float(
            drop,
            "drop",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            expected="a float in (0, 1]",
        )
        self.epochs_per_drop = check_positive_int(
            epochs_per_drop, "epochs_per_drop"
        )

    def __call__(self, step):
        step = _as_wide_step(step)
        epoch = ops.floor_divide(step, self.steps_per_epoch)
        drops = ops.floor_divide(epoch, self.epochs_per_drop)
        factor = ops.exp(drops * math.log(self.drop))
        return _out(self.initial_learning_rate * factor)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "drop": self.drop,
            "epochs_per_drop": self.epochs_per_drop,
        }


@keras.saving.register_keras_serializable(package="keras_decay")
class LinearRamp(keras.optimizers.schedules.LearningRateSchedule):
    """Moves linearly from `start` to `end` in `ramp_steps`, then holds.

    The value at step `t` is computed as:
    `start + (end - start) * min(t, ramp_steps) / ramp_steps`.
    The momentum warm-up shape: start with a small momentum (or 0) and
    raise it gradually (`LinearRamp(0.5, 0.99, 1000)`).

    Args:
        start: Float >= 0. The value at step 0.
        end: Float >= 0. The value from step `ramp_steps` on.
        ramp_steps: Int >= 1. The length of the ramp.

    Example:

    >>> momentum = LinearRamp(0.0, 0.9, ramp_steps=500)
    >>> callback = keras_decay.callbacks.MomentumScheduler(momentum)
    """

    def __init__(self, start, end, ramp_steps):
        super().__init__()
        self.start = check_non_negative_float(start, "start")
        self.end = check_non_negative_float(end, "end")
        self.ramp_steps = check_positive_int(ramp_steps, "ramp_steps")

    def __call__(self, step):
        step = ops.minimum(_as_wide_step(step), float(self.ramp_steps))
        fraction = step / self.ramp_steps
        return _out(self.start + (self.end - self.start) * fraction)

    def get_config(self):
        return {
            "start": self.start,
            "end": self.end,
            "ramp_steps": self.ramp_steps,
        }


@keras.saving.register_keras_serializable(package="keras_decay")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up in front of any schedule.

    The value at step `t` is computed as:
    `initial_value + (schedule(warmup_steps) - initial_value) * t /
    warmup_steps` for `t < warmup_steps`, and `schedule(t)` from
    `warmup_steps` on. The wrapped schedule sees the absolute step (it is
    not shifted), so the curve is continuous at `warmup_steps`.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule` (one of
            this module's or Keras'), serialized with the warm-up.
        warmup_steps: Int >= 1. The length of the warm-up.
        initial_value: Float >= 0. The value at step 0. Defaults to `0.0`.

    Example:

    >>> decay = ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.9)
    >>> schedule = Warmup(decay, warmup_steps=200)
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule)
    """

    def __init__(self, schedule, warmup_steps, initial_value=0.0):
        super().__init__()
        if not isinstance(
            schedule, keras.optimizers.schedules.LearningRateSchedule
        ):
            raise TypeError(
                "Invalid value received for argument `schedule`. Expected a "
                "keras.optimizers.schedules.LearningRateSchedule instance. "
                f"Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.warmup_steps = check_positive_int(warmup_steps, "warmup_steps")
        self.initial_value = check_non_negative_float(
            initial_value, "initial_value"
        )

    def __call__(self, step):
        wide = _wide_float()
        step = _as_wide_step(step)
        target = ops.cast(self.schedule(self.warmup_steps), wide)
        after = ops.cast(self.schedule(step), wide)
        fraction = step / self.warmup_steps
        ramp = self.initial_value + (target - self.initial_value) * fraction
        return _out(ops.where(step < self.warmup_steps, ramp, after))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "warmup_steps": self.warmup_steps,
            "initial_value": self.initial_value,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config))
