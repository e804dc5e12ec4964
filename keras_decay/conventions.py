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
"""

from keras_decay._validation import check_choice
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_optional
from keras_decay._validation import check_positive_int
from keras_decay._validation import fail

__all__ = ["CONVENTIONS", "convert"]

CONVENTIONS = ("keras_l2", "weight_decay", "nielsen")


def convert(value, source, target, *, num_examples=None):
    """Converts an L2 coefficient from one convention to another.

    The conversion goes through the gradient coefficient `wd` (the
    `"weight_decay"` convention): `wd = 2 * l2 = lam / n`.

    Args:
        value: Float >= 0. The coefficient in the `source` convention.
        source: One of `"keras_l2"`, `"weight_decay"`, `"nielsen"`.
        target: One of `"keras_l2"`, `"weight_decay"`, `"nielsen"`.
        num_examples: Int >= 1, the training-set size `n`. Required when
            `source` or `target` is `"nielsen"`, refused otherwise.

    Returns:
        The coefficient in the `target` convention, a float.

    Example:

    >>> convert(5e-4, "weight_decay", "keras_l2")
    0.00025
    >>> convert(5.0, "nielsen", "weight_decay", num_examples=50000)
    0.0001
    """
    value = check_non_negative_float(value, "value")
    source = check_choice(source, "source", CONVENTIONS)
    target = check_choice(target, "target", CONVENTIONS)
    num_examples = check_optional(
        check_positive_int, num_examples, "num_examples"
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
