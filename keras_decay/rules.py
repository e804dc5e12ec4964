"""Rules for choosing the weight-decay coefficient λ.

Weight decay shrinks every decayed weight by a constant factor each step, so
a weight is an exponential moving average of its updates whose timescale,
in steps, is

    tau = 1 / (lr * wd)                     # decoupled: w <- w - lr*wd*w
    tau = (1 - momentum) / (lr * wd)        # coupled L2 under SGD + momentum

(Wang & Aitchison, "How to set AdamW's weight decay as you scale model and
dataset size", ICML 2025). τ is what to keep fixed, as a fraction of the
training length, when the learning rate or the number of steps changes: a
λ copied from a paper with another learning rate or schedule length forgets
at another pace.

`timescale` gives τ, `weight_decay_for_timescale` its inverse,
`scale_weight_decay` carries a λ over to another learning rate or training
length, and `optimizer_timescale` reads τ off an optimizer (and a model
with weight-decay regularizers).
"""

import keras
from keras import ops

from keras_decay._validation import check_bool
from keras_decay._validation import check_choice
from keras_decay._validation import check_float
from keras_decay._validation import check_optional
from keras_decay._validation import check_positive_float
from keras_decay._validation import check_positive_int
from keras_decay._validation import fail
from keras_decay.optimizers import current_hyperparameters
from keras_decay.optimizers._scheduled import WEIGHT_DECAY_MODES
from keras_decay.regularizers import ElasticDecay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

__all__ = [
    "optimizer_timescale",
    "scale_weight_decay",
    "timescale",
    "weight_decay_for_timescale",
    "weight_decay_range",
]


def _check_momentum(momentum):
    return check_float(
        momentum,
        "momentum",
        low=0.0,
        high=1.0,
        high_inclusive=False,
        expected="a float in [0, 1)",
    )


def _rate_factor(momentum, decoupled):
    """The factor `f` in `tau = f / (lr * wd)`."""
    momentum = _check_momentum(momentum)
    decoupled = check_bool(decoupled, "decoupled")
    return 1.0 if decoupled else 1.0 - momentum


def _decay_coefficient(learning_rate, mode, max_learning_rate, decoupled):
    """`c` of the decoupled decay `w <- w - c * wd * w` (module docstring).

    `"lr"`: `lr`; `"independent"`: `lr / lr_max`; `"corrected"`:
    `lr ** 2 / lr_max` (the `weight_decay_mode`s of
    `keras_decay.optimizers`).
    """
    mode = check_choice(mode, "weight_decay_mode", WEIGHT_DECAY_MODES)
    max_learning_rate = check_optional(
        check_positive_float, max_learning_rate, "max_learning_rate"
    )
    if mode == "lr":
        if max_learning_rate is not None:
            fail(
                ValueError,
                "max_learning_rate",
                'None for weight_decay_mode="lr"',
                max_learning_rate,
            )
        return learning_rate
    if not decoupled:
        fail(
            ValueError,
            "weight_decay_mode",
            '"lr" for coupled decay (decoupled=False)',
            mode,
        )
    if max_learning_rate is None or max_learning_rate < learning_rate:
        fail(
            ValueError,
            "max_learning_rate",
            f"the largest learning rate so far (a float >= learning_rate="
            f"{learning_rate!r}) for weight_decay_mode={mode!r}",
            max_learning_rate,
        )
    if mode == "independent":
        return learning_rate / max_learning_rate
    return learning_rate * learning_rate / max_learning_rate


def timescale(
    learning_rate,
    weight_decay,
    *,
    momentum=0.0,
    decoupled=True,
    weight_decay_mode="lr",
    max_learning_rate=None,
):
    """The number of steps over which weight decay forgets.

    Computed as:
    `tau = 1 / (learning_rate * weight_decay)` when `decoupled`, and
    `tau = (1 - momentum) / (learning_rate * weight_decay)` for coupled L2
    (`WeightDecay(weight_decay)`, gradient `weight_decay * w`) under SGD
    with momentum, whose effective step is `learning_rate / (1 - momentum)`.
    With the `weight_decay_mode` of `keras_decay.optimizers` (decoupled
    only), `tau = 1 / (c * weight_decay)` with `c = learning_rate`
    (`"lr"`), `learning_rate / max_learning_rate` (`"independent"`, Wortsman
    et al. 2023, arXiv 2309.14322) or `learning_rate ** 2 /
    max_learning_rate` (`"corrected"`, Defazio 2025, arXiv 2506.02285).

    After `tau` steps without gradient, a decayed weight has shrunk by
    `(1 - 1 / tau) ** tau ≈ exp(-1)`. Decoupled decay (`AdamW`,
    `weight_decay=` of a Keras optimizer) does not pass through the
    momentum buffer, so `momentum` does not change its `tau`.

    Args:
        learning_rate: Float > 0. The learning rate (of the step considered,
            for a schedule).
        weight_decay: Float > 0. The weight-decay coefficient: the
            optimizer's `weight_decay` when `decoupled`, else the gradient
            coefficient of the L2 penalty (`WeightDecay.rate /
            num_examples`; `2 * l2` for `keras.regularizers.L2(l2)`).
        momentum: Float in [0, 1). SGD's momentum, for coupled decay.
            Defaults to 0.
        decoupled: Bool. Whether the decay is decoupled from the gradient.
            Defaults to `True`.
        weight_decay_mode: `"lr"`, `"independent"` or `"corrected"`.
            Defaults to `"lr"`.
        max_learning_rate: Float >= `learning_rate`: the largest learning
            rate so far (the schedule's peak, once reached). Required for
            `"independent"` and `"corrected"`, refused for `"lr"`.

    Returns:
        `tau`, a float, in steps.

    Example:

    >>> timescale(1e-3, 0.1)  # AdamW(1e-3, weight_decay=0.1)
    10000.0
    >>> timescale(0.1, 5e-4, momentum=0.5, decoupled=False)  # SGD + L2
    10000.0
    >>> timescale(5e-4, 1e-4, weight_decay_mode="independent",
    ...           max_learning_rate=1e-3)  # half-way down the schedule
    20000.0
    """
    learning_rate = check_positive_float(learning_rate, "learning_rate")
    weight_decay = check_positive_float(weight_decay, "weight_decay")
    factor = _rate_factor(momentum, decoupled)
    c = _decay_coefficient(
        learning_rate, weight_decay_mode, max_learning_rate, decoupled
    )
    return factor / (c * weight_decay)


def weight_decay_for_timescale(
    tau_steps, learning_rate, *, momentum=0.0, decoupled=True
):
    """The weight decay that forgets over `tau_steps` steps.

    The inverse of `timescale`:
    `weight_decay = 1 / (learning_rate * tau_steps)` when `decoupled`, and
    `weight_decay = (1 - momentum) / (learning_rate * tau_steps)` for
    coupled L2 under SGD with momentum.

    Wang & Aitchison find the best `tau_steps` to be a roughly constant
    fraction of the training length (of the order of the whole run), so a
    start is `tau_steps = total_steps`.

    Args:
        tau_steps: Float > 0. The timescale wanted, in steps.
        learning_rate: Float > 0. The learning rate.
        momentum: Float in [0, 1). SGD's momentum, for coupled decay.
            Defaults to 0.
        decoupled: Bool. Whether the decay is decoupled from the gradient.
            Defaults to `True`.

    Returns:
        The weight-decay coefficient, a float.

    Example:

    >>> weight_decay_for_timescale(10_000, 1e-3)
    0.1
    """
    tau_steps = check_positive_float(tau_steps, "tau_steps")
    learning_rate = check_positive_float(learning_rate, "learning_rate")
    return _rate_factor(momentum, decoupled) / (learning_rate * tau_steps)


def scale_weight_decay(
    weight_decay, *, from_lr, to_lr, from_steps=None, to_steps=None
):
    """Carries a weight decay over to another learning rate or run length.

    Keeps the timescale `tau` a fixed fraction of training, `tau / steps`,
    which gives:
    `new_weight_decay = weight_decay * (from_lr / to_lr) *
    (from_steps / to_steps)`,
    with the steps factor 1 when `from_steps` and `to_steps` are `None`
    (then `lr * weight_decay` is kept). It holds for decoupled decay and for
    coupled L2 under SGD with an unchanged momentum (the `1 - momentum`
    factor cancels).

    Args:
        weight_decay: Float >= 0. The weight decay that worked.
        from_lr: Float > 0. The learning rate it worked with.
        to_lr: Float > 0. The new learning rate.
        from_steps: Optional float > 0. The training length it worked with,
            in steps (or epochs: only the ratio counts).
        to_steps: Optional float > 0. The new training length; given
            together with `from_steps`.

    Returns:
        The new weight decay, a float.

    Example:

    >>> # A paper's AdamW(1e-3, weight_decay=0.05) over 100k steps, rerun
    >>> # at lr 4e-3 for 50k steps:
    >>> scale_weight_decay(0.05, from_lr=1e-3, to_lr=4e-3,
    ...                    from_steps=100_000, to_steps=50_000)
    0.025
    """
    weight_decay = check_float(
        weight_decay, "weight_decay", low=0.0, expected="a float >= 0"
    )
    from_lr = check_positive_float(from_lr, "from_lr")
    to_lr = check_positive_float(to_lr, "to_lr")
    from_steps = check_optional(check_positive_float, from_steps, "from_steps")
    to_steps = check_optional(check_positive_float, to_steps, "to_steps")
    if (from_steps is None) != (to_steps is None):
        name, value = (
            ("to_steps", to_steps)
            if from_steps is not None
            else ("from_steps", from_steps)
        )
        fail(
            ValueError,
            name,
            "a float > 0 when the other of from_steps/to_steps is given",
            value,
        )
    ratio = 1.0 if from_steps is None else from_steps / to_steps
    return weight_decay * (from_lr / to_lr) * ratio


def optimizer_timescale(optimizer, model=None, step=None):
    """The weight-decay timescale of an optimizer at a step.

    Computed as `tau = 1 / (lr * (wd + l2 / (1 - momentum)))` where `lr` is
    the current learning rate, `wd` the optimizer's decoupled
    `weight_decay` (0 if `None`) and `l2` the largest L2 gradient
    coefficient among the regularizers of `model`'s trainable variables:
    `WeightDecay.rate / num_examples`, `ElasticDecay.l2 / num_examples`,
    `2 * l2` of `keras.regularizers.L2` and `L1L2`. The two decays add up:
    per step a weight shrinks by `lr * wd` (decoupled) plus
    `lr * l2 / (1 - momentum)` (coupled, through SGD's momentum).

    The coupled part counts only under SGD (`keras.optimizers.SGD` and its
    subclasses): an adaptive optimizer (Adam, RMSprop, ...) divides the L2
    gradient by its running gradient scale, so coupled L2 has no fixed
    timescale there. The hyperparameters are those of step `step`, read by
    `keras_decay.optimizers.current_hyperparameters` (the one reader of a
    step's hyperparameters). A `LossScaleOptimizer` is looked through.
    Per-group multipliers (`decay_mult`, `lr_mult`) are not applied: `tau`
    is that of a variable with multipliers 1. For a `keras_decay`
    optimizer with `weight_decay_mode="independent"` or `"corrected"`, the
    decoupled part is `c * wd` with `c = lr / lr_max` or `lr ** 2 / lr_max`,
    `lr_max` the larger of the optimizer's `max_learning_rate` so far and
    `lr` (see `timescale`). With `cautious_weight_decay`, `tau` is that of
    an entry that decays (the others do not).

    Args:
        optimizer: A Keras optimizer.
        model: Optional `keras.Model` whose regularizers count as coupled
            decay.
        step: Optional int >= 0. The 0-based step. Defaults to the step
            about to be taken.

    Returns:
        `tau` in steps (a float), or `None` when there is no weight decay
        (or only coupled decay under an adaptive optimizer).

    Example:

    >>> opt = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
    >>> round(optimizer_timescale(opt))  # lr is a float32 variable
    10000
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        fail(TypeError, "optimizer", "a keras.optimizers.Optimizer", optimizer)
    if model is not None and not isinstance(model, keras.Model):
        fail(TypeError, "model", "a keras.Model or None", model)
    current = current_hyperparameters(optimizer, step)
    if current["learning_rate"] <= 0.0:
        return None
    l2 = 0.0
    if model is not None and isinstance(optimizer, keras.optimizers.SGD):
        l2 = max(
            (l2_coefficient(v.regularizer) for v in model.trainable_variables),
            default=0.0,
        )
    decoupled, coupled = step_decay(optimizer, current, l2=l2)
    rate = decoupled + coupled / (1.0 - (current.get("momentum") or 0.0))
    if rate <= 0.0:
        return None
    return 1.0 / rate


def step_decay(optimizer, current, *, decay_mult=1.0, lr_mult=1.0, l2=0.0):
    """The per-step shrink factors of one variable (one reader of them).

    `(decoupled, coupled)`: `decoupled = c * wd * decay_mult` is the factor
    of the decoupled decay `w <- w - decoupled * w` the optimizer applies
    (`c` of its `weight_decay_mode`, with the variable's learning rate
    `lr * lr_mult`; see `timescale`), and `coupled = lr * lr_mult * l2` the
    factor of an L2 gradient `l2 * w` taken by a plain gradient step
    (before momentum). `current` is `current_hyperparameters(optimizer,
    step)`; both are 0.0 at a learning rate of 0.
    """
    learning_rate = current["learning_rate"]
    if learning_rate <= 0.0:
        return 0.0, 0.0
    c = _decoupled_coefficient(optimizer, learning_rate) * lr_mult
    decoupled = c * (current.get("weight_decay") or 0.0) * decay_mult
    return decoupled, learning_rate * lr_mult * l2


def _decoupled_coefficient(optimizer, learning_rate):
    """`c` of the optimizer's decoupled decay at `learning_rate`."""
    mode = getattr(optimizer, "weight_decay_mode", "lr")
    if mode == "lr":
        return learning_rate
    variable = optimizer.max_learning_rate
    seen = 0.0 if variable is None else float(ops.convert_to_numpy(variable))
    return _decay_coefficient(
        learning_rate, mode, max(seen, learning_rate), True
    )


def l2_coefficient(regularizer):
    """The gradient coefficient `c` of `regularizer`'s L2 part (`c * w`)."""
    if isinstance(regularizer, (WeightDecay, ElasticDecay, L1Decay)):
        return regularizer.l2_coefficient
    if isinstance(
        regularizer, (keras.regularizers.L2, keras.regularizers.L1L2)
    ):
        return 2.0 * float(regularizer.l2)
    return 0.0


def weight_decay_range(
    steps, learning_rate, *, momentum=0.0, decoupled=True, per_decade=2
):
    """Log-spaced weight decays whose timescale spans the training run.

    The values of `weight_decay` for which `tau = timescale(learning_rate,
    weight_decay, momentum=momentum, decoupled=decoupled)` runs from
    `10 * steps` (decay barely acts within the run) down to `steps / 10`
    (decay dominates the gradient), `per_decade` values a decade:

        tau_k = 10 * steps / 10 ** (k / per_decade),  k = 0 .. 2 * per_decade
        weight_decay_k = c / (learning_rate * tau_k)

    with `c = 1` for decoupled decay and `c = 1 - momentum` for coupled L2
    under SGD with momentum (`weight_decay_for_timescale`). Wang & Aitchison
    ("How to set AdamW's weight decay as you scale model and dataset size",
    ICML 2025) find the best `tau` a roughly constant fraction of the run,
    so the best rate of a sweep lies inside this range when the learning
    rate and the training length are the ones of the sweep. The
    values exclude 0: a sweep adds `weight_decay=0` as its baseline.

    Args:
        steps: Int > 0. The optimizer steps of the whole training run.
        learning_rate: Float > 0. The (initial) learning rate.
        momentum: Float in [0, 1). SGD's momentum, for coupled decay.
            Defaults to 0.
        decoupled: Bool. Whether the decay is decoupled from the gradient.
            Defaults to `True`.
        per_decade: Int > 0. Values per decade of `weight_decay`. Defaults
            to 2 (`2 * per_decade + 1` values in all).

    Returns:
        A list of floats, ascending.

    Example:

    >>> [f"{v:.3g}" for v in weight_decay_range(570, 0.1, momentum=0.9,
    ...                                         decoupled=False)]
    ['0.000175', '0.000555', '0.00175', '0.00555', '0.0175']
    """
    steps = check_positive_int(steps, "steps")
    per_decade = check_positive_int(per_decade, "per_decade")
    # A descending tau, so the weight decays come out ascending.
    return [
        weight_decay_for_timescale(
            10.0 * steps / 10.0 ** (k / per_decade),
            learning_rate,
            momentum=momentum,
            decoupled=decoupled,
        )
        for k in range(2 * per_decade + 1)
    ]
