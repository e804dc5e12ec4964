"""Shared state and checks for the dropout layers whose rate can change.

The rate of each layer lives in a non-trainable float32 scalar variable
(`rate_variable`). Assigning it (for instance from
`keras_decay.callbacks.DropRateScheduler`) changes the rate used by an
already compiled train step without retracing it: the traced graph reads
the variable, not a Python float. The variable is saved with the layer's
weights, so a model saved mid-schedule reloads with its current rate; the
config still holds the constructor's `rate`.
"""

import keras

from keras_decay import _validation


def check_rate(rate, name="rate"):
    """Returns `rate` as a float in [0, 1)."""
    return _validation.check_float(
        rate,
        name,
        low=0.0,
        high=1.0,
        high_inclusive=False,
        expected="a float value in [0, 1)",
    )


def check_seed(seed):
    """Returns `seed` as an int or None (seeds are stored as ints)."""
    return _validation.check_optional(_validation.check_int, seed, "seed")


def make_rate_variable(layer, rate):
    """Creates `layer.rate_variable`, a float32 scalar holding `rate`."""
    return layer.add_weight(
        shape=(),
        initializer=keras.initializers.Constant(rate),
        dtype="float32",
        trainable=False,
        autocast=False,
        name="rate",
    )


def check_input_rank(layer, shape, ndim):
    """Raises if `shape` (the input's shape) is not of rank `ndim`."""
    if len(shape) != ndim:
        raise ValueError(
            f"Invalid value received for argument `inputs` of layer "
            f"'{layer.name}'. Expected a {ndim}D tensor. "
            f"Received: inputs.shape={tuple(shape)}"
        )
