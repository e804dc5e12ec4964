"""Convert an L2 coefficient between the conventions of different sources.

The same amount of L2 regularization is written with different numbers:

- `"keras_l2"`: `keras.regularizers.L2(l2)`.
  Penalty `l2 * sum(w**2)`, gradient `2 * l2 * w`.
- `"weight_decay"`: PyTorch `SGD(weight_decay=wd)`, Caffe's `weight_decay`,
  D2L's `wd / 2 * ||w||**2`, `keras_decay.WeightDecay(wd)`.
  Penalty `wd / 2 * sum(w**2)`, gradient `wd * w`.
- `"nielsen"`: Nielsen's book, `keras_decay.WeightDecay(lam, n)`.
  Penalty `lam / (2n) * sum(w**2)`, gradient `lam / n * w`.

Two values are the same regularization when their gradients are equal:
`2 * l2 == wd == lam / n`.

The decoupled weight decay of an optimizer is also written in several
ways, named by `keras_decay.optimizers`' `weight_decay_mode`:

- `"lr"`: Keras, PyTorch, optax: `w <- w - lr_t * wd * w`;
- `"independent"`: Loshchilov & Hutter's AdamW, Composer's
  `DecoupledAdamW`, optimi (Wortsman et al. 2023, arXiv 2309.14322):
  `w <- w - (lr_t / lr_max) * wd * w`;
- `"corrected"`: AdamC (Defazio 2025, arXiv 2506.02285), timm's
  `corrected_weight_decay=True`: `w <- w - (lr_t ** 2 / lr_max) * wd * w`.

`"lr"` and `"independent"` decay alike when `wd_lr = wd_independent /
lr_max`, at every step of any schedule. `"corrected"` has no constant
equivalent in the other two under a schedule (its factor is `lr_t ** 2`,
theirs `lr_t`): converting it is an error.
"""

from keras_decay._validation import check_choice
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_optional
from keras_decay._validation import check_positive_float
from keras_decay._validation import check_positive_int
from keras_decay._validation import fail

__all__ = ["CONVENTIONS", "DECOUPLED_CONVENTIONS", "convert"]

CONVENTIONS = ("keras_l2", "weight_decay", "nielsen")
# The `weight_decay_mode`s of `keras_decay.optimizers`.
DECOUPLED_CONVENTIONS = ("lr", "independent", "corrected")
_ALL = CONVENTIONS + DECOUPLED_CONVENTIONS


def convert(
    value, source, target, *, num_examples=None, max_learning_rate=None
):
    """Converts a weight-decay coefficient from one convention to another.

    An L2 coefficient (`"keras_l2"`, `"weight_decay"`, `"nielsen"`) is
    converted through the gradient coefficient `wd` (the `"weight_decay"`
    convention): `wd = 2 * l2 = lam / n`. A decoupled one (`"lr"`,
    `"independent"`) through `wd_lr = wd_independent / lr_max`: an
    independent `wd` of 1e-4 at `lr_max = 1e-3` is an `"lr"` `wd` of 0.1.
    `keras_decay.optimizers` take `lr_max` to be the largest learning rate
    applied so far, so the two are equal from the schedule's peak on (and
    at every step when the schedule starts at its peak).

    Args:
        value: Float >= 0. The coefficient in the `source` convention.
        source: One of `"keras_l2"`, `"weight_decay"`, `"nielsen"`, `"lr"`,
            `"independent"`, `"corrected"`.
        target: One of the same. An L2 convention converts to an L2
            convention, a decoupled one to a decoupled one; `"corrected"`
            only to itself.
        num_examples: Int >= 1, the training-set size `n`. Required when
            `source` or `target` is `"nielsen"`, refused otherwise.
        max_learning_rate: Float > 0, `lr_max`. Required between `"lr"`
            and `"independent"`, refused otherwise.

    Returns:
        The coefficient in the `target` convention, a float.

    Example:

    >>> convert(5e-4, "weight_decay", "keras_l2")
    0.00025
    >>> convert(5.0, "nielsen", "weight_decay", num_examples=50000)
    0.0001
    >>> convert(1e-4, "independent", "lr", max_learning_rate=1e-3)
    0.1
    """
    value = check_non_negative_float(value, "value")
    source = check_choice(source, "source", _ALL)
    target = check_choice(target, "target", _ALL)
    num_examples = check_optional(
        check_positive_int, num_examples, "num_examples"
    )
    max_learning_rate = check_optional(
        check_positive_float, max_learning_rate, "max_learning_rate"
    )
    if (source in DECOUPLED_CONVENTIONS) != (target in DECOUPLED_CONVENTIONS):
        fail(
            ValueError,
            "target",
            f"a decoupled convention ({', '.join(DECOUPLED_CONVENTIONS)}) "
            f"for the decoupled source {source!r}, an L2 convention "
            f"({', '.join(CONVENTIONS)}) for an L2 source",
            target,
        )
    if source in DECOUPLED_CONVENTIONS:
        return _convert_decoupled(
            value, source, target, num_examples, max_learning_rate
        )
    if max_learning_rate is not None:
        fail(
            ValueError,
            "max_learning_rate",
            'None unless converting between "lr" and "independent"',
            max_learning_rate,
        )
    uses_n = "nielsen" in (source, target)
    if uses_n and num_examples is None:
        fail(
            ValueError,
            "num_examples",
            'the training-set size when converting from or to "nielsen"',
            num_examples,
        )
    if not uses_n and num_examples is not None:
        fail(
            ValueError,
            "num_examples",
            'None unless converting from or to "nielsen"',
            num_examples,
        )
    to_weight_decay = {
        "keras_l2": lambda v: 2.0 * v,
        "weight_decay": lambda v: v,
        "nielsen": lambda v: v / num_examples,
    }
    from_weight_decay = {
        "keras_l2": lambda wd: wd / 2.0,
        "weight_decay": lambda wd: wd,
        "nielsen": lambda wd: wd * num_examples,
    }
    return from_weight_decay[target](to_weight_decay[source](value))


def _convert_decoupled(value, source, target, num_examples, max_lr):
    if num_examples is not None:
        fail(
            ValueError,
            "num_examples",
            'None unless converting from or to "nielsen"',
            num_examples,
        )
    if "corrected" in (source, target) and source != target:
        fail(
            ValueError,
            "target" if source == "corrected" else "source",
            '"corrected" on both sides: its decay follows lr_t ** 2 / '
            "lr_max, the others' lr_t, so no constant converts it under a "
            "schedule",
            target if source == "corrected" else source,
        )
    if source == target:
        if max_lr is not None:
            fail(
                ValueError,
                "max_learning_rate",
                "None when source and target are the same",
                max_lr,
            )
        return value
    if max_lr is None:
        fail(
            ValueError,
            "max_learning_rate",
            'the peak learning rate (a float > 0) between "lr" and '
            '"independent"',
            max_lr,
        )
    return value / max_lr if source == "independent" else value * max_lr
