"""Learning-rate (and hyperparameter) schedules, exact to the formula.

Every class is a `keras.optimizers.schedules.LearningRateSchedule`: pass it
as any Keras optimizer's `learning_rate`, as the `momentum`, `beta_1` or
`weight_decay` of a `keras_decay.optimizers` optimizer, or to
`keras_decay.callbacks.MomentumScheduler` / `WeightDecayScheduler`. The step
is the optimizer's `iterations` (0-based, the number of updates done).

| class              | value at step `t`                                     |
| ------------------ | ----------------------------------------------------- |
| `ExponentialDecay` | `lr * decay_rate ** (t / decay_steps)`                |
| `StepDecay`        | `lr * drop ** floor(epoch / epochs_per_drop)`, 1      |
| `LinearRamp`       | `start + (end - start) * min(t, n) / n`, 2            |
| `Warmup`           | linear to `schedule(warmup_steps)`, then the schedule |
| `OneCycle`         | PyTorch's `OneCycleLR` learning rate                  |
| `OneCycleMomentum` | PyTorch's `OneCycleLR(cycle_momentum=True)` momentum  |

1: `epoch = floor(t / steps_per_epoch)`. 2: `n = ramp_steps`. `Warmup`
starts at `initial_value`.

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
from keras_decay._validation import check_choice
from keras_decay._validation import check_float
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_positive_float
from keras_decay._validation import check_positive_int
from keras_decay._validation import check_schedule

__all__ = [
    "ExponentialDecay",
    "LinearRamp",
    "OneCycle",
    "OneCycleMomentum",
    "StepDecay",
    "Warmup",
]


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
    `lr * gamma ** (epoch // step_size)`. It is
    `ExponentialDecay(initial_learning_rate, steps_per_epoch *
    epochs_per_drop, drop, staircase=True)`, parameterised in epochs.

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

        # floor(floor(t / s) / e) == floor(t / (s * e)) for whole s, e: the
        # staircase of ExponentialDecay, counted in epochs.
        self._staircase = ExponentialDecay(
            self.initial_learning_rate,
            self.steps_per_epoch * self.epochs_per_drop,
            self.drop,
            staircase=True,
        )

    def __call__(self, step):
        return self._staircase(step)

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
        self.schedule = check_schedule(schedule)
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


class _OneCycleBase(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise annealing over the phases of PyTorch's `OneCycleLR`.

    Phase `i` runs from step `s_i` to `e_i` (`s_0 = 0`, `s_{i+1} = e_i`;
    `e = [pct_start * T - 1, T - 1]`, or with `three_phase`
    `[pct_start * T - 1, 2 * pct_start * T - 2, T - 1]`, floats as in
    PyTorch) from value `a_i` to `b_i`; step `t` is in the first phase with
    `t <= e_i` and takes `anneal(a_i, b_i, (t - s_i) / (e_i - s_i))`, with
    `cos`: `b + (a - b) / 2 * (cos(pi * pct) + 1)`, `linear`:
    `a + (b - a) * pct`. Steps from `T - 1` on hold the value of `T - 1`.
    """

    def __init__(self, total_steps, pct_start, three_phase, anneal):
        super().__init__()
        self.total_steps = check_positive_int(total_steps, "total_steps")
        self.pct_start = check_float(
            pct_start,
            "pct_start",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            high_inclusive=False,
        )
        self.three_phase = check_bool(three_phase, "three_phase")
        self.anneal = check_choice(anneal, "anneal", ("cos", "linear"))
        ends = self._ends()
        starts = [0.0] + ends[:-1]
        if any(end <= start for start, end in zip(starts, ends)):
            raise ValueError(
                "Invalid value received for argument `pct_start`. Expected "
                "every phase to last more than 0 steps (phase ends "
                f"{ends}). Received: pct_start={self.pct_start!r}, "
                f"total_steps={self.total_steps!r}"
            )

    def _ends(self):
        first = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if self.three_phase:
            second = float(2 * self.pct_start * self.total_steps) - 2
            return [first, second, last]
        return [first, last]

    def _values(self):
        """`[(a_i, b_i), ...]`, one pair per phase."""
        raise NotImplementedError

    def _annealed(self, start, end, pct):
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)
        return start + (end - start) * pct

    def __call__(self, step):
        ends = self._ends()
        # `where`, not `minimum`: Keras 3.15's torch `minimum` returns
        # float32 for float64 inputs.
        step = _as_wide_step(step)
        step = ops.where(step > ends[-1], ends[-1], step)
        starts = [0.0] + ends[:-1]
        phases = [
            self._annealed(a, b, (step - s) / (e - s))
            for (a, b), s, e in zip(self._values(), starts, ends)
        ]
        value = phases[-1]
        for phase, end in zip(phases[-2::-1], ends[-2::-1]):
            value = ops.where(step <= end, phase, value)
        return _out(value)

    def _phase_config(self):
        return {
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "three_phase": self.three_phase,
            "anneal": self.anneal,
        }


@keras.saving.register_keras_serializable(package="keras_decay")
class OneCycle(_OneCycleBase):
    """The 1cycle learning rate (Smith), equal to PyTorch's `OneCycleLR`.

    With `initial = max_learning_rate / div_factor` and
    `final = initial / final_div_factor`, the learning rate anneals from
    `initial` to `max_learning_rate` until step `pct_start * T - 1`, then
    to `final` at step `T - 1` (`T = total_steps`); with `three_phase`,
    back to `initial` at step `2 * pct_start * T - 2`, then to `final`.
    `anneal="cos"`: `b + (a - b) / 2 * (cos(pi * pct) + 1)` from `a` to `b`
    over a phase (`pct` its elapsed fraction); `"linear"`:
    `a + (b - a) * pct`. Per step `t` in `[0, T)` this is PyTorch's
    `OneCycleLR(..., max_lr, total_steps, pct_start, anneal_strategy,
    div_factor, final_div_factor, three_phase)` learning rate after `t`
    scheduler steps; from `T - 1` on it holds `final`.

    Args:
        max_learning_rate: Float >= 0. The peak.
        total_steps: Int >= 1. The cycle's length in optimizer steps.
        pct_start: Float in (0, 1). The rising fraction. Defaults to `0.3`.
        div_factor: Float > 0. `initial = max / div_factor`. Defaults to
            `25.0`.
        final_div_factor: Float > 0. `final = initial / final_div_factor`.
            Defaults to `1e4`.
        three_phase: Bool. Defaults to `False`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.

    Example:

    >>> optimizer = keras_decay.optimizers.SGD(
    ...     learning_rate=OneCycle(0.1, total_steps=1000),
    ...     momentum=OneCycleMomentum(total_steps=1000))
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
        anneal="cos",
    ):
        super().__init__(total_steps, pct_start, three_phase, anneal)
        self.max_learning_rate = check_non_negative_float(
            max_learning_rate, "max_learning_rate"
        )
        self.div_factor = check_positive_float(div_factor, "div_factor")
        self.final_div_factor = check_positive_float(
            final_div_factor, "final_div_factor"
        )

    def _values(self):
        peak = self.max_learning_rate
        initial = peak / self.div_factor
        final = initial / self.final_div_factor
        if self.three_phase:
            return [(initial, peak), (peak, initial), (initial, final)]
        return [(initial, peak), (peak, final)]

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            **self._phase_config(),
        }


@keras.saving.register_keras_serializable(package="keras_decay")
class OneCycleMomentum(_OneCycleBase):
    """The 1cycle momentum, equal to PyTorch's `OneCycleLR` momentum.

    The mirror of `OneCycle`: from `max_momentum` down to `base_momentum`
    while the learning rate rises (until step `pct_start * T - 1`), then
    back up to `max_momentum` at step `T - 1`; with `three_phase`, up at
    step `2 * pct_start * T - 2` and then held at `max_momentum`. Same
    annealing as `OneCycle`. Per step `t` in `[0, T)` this is the momentum
    (SGD) or `beta_1` (Adam) that PyTorch's `OneCycleLR(...,
    cycle_momentum=True, base_momentum, max_momentum)` sets; from `T - 1`
    on it holds `max_momentum`. Pass it as a `keras_decay.optimizers`
    optimizer's `momentum` / `beta_1`, with a `OneCycle` of the same
    `total_steps`, `pct_start` and `three_phase` as its learning rate.

    Args:
        total_steps: Int >= 1. The cycle's length in optimizer steps.
        base_momentum: Float in [0, 1]. The low point. Defaults to `0.85`.
        max_momentum: Float in [0, 1]. Start and end. Defaults to `0.95`.
        pct_start: Float in (0, 1). Defaults to `0.3`.
        three_phase: Bool. Defaults to `False`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.

    Example:

    >>> optimizer = keras_decay.optimizers.Adam(
    ...     learning_rate=OneCycle(1e-3, total_steps=1000),
    ...     beta_1=OneCycleMomentum(total_steps=1000))
    """

    def __init__(
        self,
        total_steps,
        base_momentum=0.85,
        max_momentum=0.95,
        pct_start=0.3,
        three_phase=False,
        anneal="cos",
    ):
        super().__init__(total_steps, pct_start, three_phase, anneal)
        self.base_momentum = check_float(
            base_momentum, "base_momentum", low=0.0, high=1.0
        )
        self.max_momentum = check_float(
            max_momentum, "max_momentum", low=0.0, high=1.0
        )

    def _values(self):
        low, high = self.base_momentum, self.max_momentum
        if self.three_phase:
            return [(high, low), (low, high), (high, high)]
        return [(high, low), (low, high)]

    def get_config(self):
        return {
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            **self._phase_config(),
        }
