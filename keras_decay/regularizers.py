"""Weight-decay regularizers in the conventions practitioners use.

Keras' own `keras.regularizers.L2(l2)` adds `l2 * sum(w**2)` (no 1/2), so its
gradient is `2 * l2 * w` and `l2` is not the "weight decay" coefficient that
PyTorch, Caffe, D2L and Nielsen's book talk about. The classes here are
parameterised by that coefficient:

| class                  | penalty                   | gradient           |
| ---------------------- | ------------------------- | ------------------ |
| `WeightDecay(rate)`    | `rate / 2 * sum(w**2)`    | `rate * w`         |
| `WeightDecay(rate, n)` | `rate / (2n) * sum(w**2)` | `rate / n * w`     |
| `L1Decay(rate)`        | `rate * sum(abs(w))`      | `rate * sign(w)`   |
| `L1Decay(rate, n)`     | `rate / n * sum(abs(w))`  | `rate / n * sign(w)` |
| `ElasticDecay(l1, l2)` | the sum of the two above  | the sum of the two |

`sign(0) = 0`: a weight that is exactly zero gets no L1 gradient.

The penalty is always reduced in float32, also for float16 / bfloat16
variables, so a float16 kernel of large weights cannot overflow the sum.
"""

import keras
from keras import ops

from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_optional
from keras_decay._validation import check_positive_int

__all__ = ["WeightDecay", "L1Decay", "ElasticDecay"]

_NARROW_FLOATS = ("float16", "bfloat16")


def _as_float32(x):
    """Casts float16/bfloat16 tensors to float32; leaves wider ones alone."""
    if keras.backend.standardize_dtype(x.dtype) in _NARROW_FLOATS:
        return ops.cast(x, "float32")
    return x


def _sum_abs(x):
    """`sum(abs(x))` whose gradient is `sign(x)` with `sign(0) = 0`.

    `x * sign(x)` equals `abs(x)` exactly; stopping the gradient through
    `sign` makes the gradient `sign(x)` on every backend (JAX's own `abs`
    has gradient 1 at 0).
    """
    return ops.sum(x * ops.stop_gradient(ops.sign(x)))


def _check_num_examples(num_examples):
    return check_optional(check_positive_int, num_examples, "num_examples")


class _DecayRegularizer(keras.regularizers.Regularizer):
    """Base: holds `num_examples` and the divisor it implies."""

    def __init__(self, num_examples=None):
        self.num_examples = _check_num_examples(num_examples)

    @property
    def _divisor(self):
        return 1.0 if self.num_examples is None else float(self.num_examples)

    @property
    def l2_coefficient(self):
        """The coefficient `c` of the L2 part's gradient, `c * w` (a float).

        `rate / n` for `WeightDecay`, `l2 / n` for `ElasticDecay`, 0 for
        `L1Decay`: what `keras_decay.rules` counts as coupled decay.
        """
        return 0.0

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_decay")
class WeightDecay(_DecayRegularizer):
    """L2 weight decay parameterised by the gradient coefficient.

    The penalty is computed as:
    `loss = rate / (2 * n) * reduce_sum(square(x))`,
    with `n = num_examples`, or `n = 1` when `num_examples` is `None`.

    Its gradient is `rate / n * x`, so one plain SGD step is
    `w <- (1 - lr * rate / n) * w - lr * grad(C0)`: with `n = 1` it is the
    same step as PyTorch's `SGD(weight_decay=rate)` (with or without
    momentum), Caffe's `weight_decay` and D2L's `lambda / 2 * ||w||**2`; with
    `n` the training-set size it is Nielsen's `lambda / (2n) * sum(w**2)`.
    Without momentum it also equals Keras' decoupled optimizer argument
    `weight_decay=rate`; with momentum or adaptive optimizers it does not.

    In Keras' own convention this is `keras.regularizers.L2(rate / (2 * n))`.

    Args:
        rate: Float >= 0. The decay coefficient (lambda).
        num_examples: Optional int >= 1. The training-set size `n` of
            Nielsen's convention. Defaults to `None` (no division).

    Example:

    >>> layer = keras.layers.Dense(10, kernel_regularizer=WeightDecay(5e-4))
    """

    def __init__(self, rate, num_examples=None):
        super().__init__(num_examples)
        self.rate = check_non_negative_float(rate, "rate")

    def __call__(self, x):
        x = _as_float32(x)
        coefficient = self.rate / (2.0 * self._divisor)
        return ops.cast(coefficient, x.dtype) * ops.sum(ops.square(x))

    @property
    def l2_coefficient(self):
        """`rate / n`: the gradient of the penalty is `l2_coefficient * x`."""
        return self.rate / self._divisor

    def get_config(self):
        return {"rate": self.rate, "num_examples": self.num_examples}


@keras.saving.register_keras_serializable(package="keras_decay")
class L1Decay(_DecayRegularizer):
    """L1 weight decay.

    The penalty is computed as:
    `loss = rate / n * reduce_sum(abs(x))`,
    with `n = num_examples`, or `n = 1` when `num_examples` is `None`.

    Its gradient is `rate / n * sign(x)` with `sign(0) = 0`: every weight is
    shrunk towards zero by the same amount, which drives unimportant weights
    to (near) zero. Same as `keras.regularizers.L1(rate / n)`.

    Args:
        rate: Float >= 0. The decay coefficient (lambda).
        num_examples: Optional int >= 1. The training-set size `n`.
            Defaults to `None` (no division).

    Example:

    >>> layer = keras.layers.Dense(10, kernel_regularizer=L1Decay(1e-5))
    """

    def __init__(self, rate, num_examples=None):
        super().__init__(num_examples)
        self.rate = check_non_negative_float(rate, "rate")

    def __call__(self, x):
        x = _as_float32(x)
        coefficient = self.rate / self._divisor
        return ops.cast(coefficient, x.dtype) * _sum_abs(x)

    def get_config(self):
        return {"rate": self.rate, "num_examples": self.num_examples}


@keras.saving.register_keras_serializable(package="keras_decay")
class ElasticDecay(_DecayRegularizer):
    """L1 plus L2 weight decay (elastic net).

    The penalty is computed as:
    `loss = l1 / n * reduce_sum(abs(x)) + l2 / (2 * n) * reduce_sum(square(x))`,
    the sum of `L1Decay(l1, n)` and `WeightDecay(l2, n)`; its gradient is
    `l1 / n * sign(x) + l2 / n * x`.

    Args:
        l1: Float >= 0. The L1 coefficient.
        l2: Float >= 0. The L2 (weight-decay) coefficient.
        num_examples: Optional int >= 1. The training-set size `n`.
            Defaults to `None` (no division).

    Example:

    >>> reg = ElasticDecay(l1=1e-5, l2=5e-4)
    >>> layer = keras.layers.Dense(10, kernel_regularizer=reg)
    """

    def __init__(self, l1=0.0, l2=0.0, num_examples=None):
        super().__init__(num_examples)
        self.l1 = check_non_negative_float(l1, "l1")
        self.l2 = check_non_negative_float(l2, "l2")

    def __call__(self, x):
        x = _as_float32(x)
        l1 = ops.cast(self.l1 / self._divisor, x.dtype)
        l2 = ops.cast(self.l2 / (2.0 * self._divisor), x.dtype)
        return l1 * _sum_abs(x) + l2 * ops.sum(ops.square(x))

    @property
    def l2_coefficient(self):
        """`l2 / n`: the L2 part's gradient is `l2_coefficient * x`."""
        return self.l2 / self._divisor

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2, "num_examples": self.num_examples}
