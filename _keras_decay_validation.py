"""Argument checks shared by keras_decay and its `keras-decay` command.

A top-level module of the distribution, apart from both packages, because
both use it: the library's classes check their arguments with it
(`keras_decay._validation` re-exports it), and the command's option
declarations (`keras_decay_cli.options`) check theirs without importing the
`keras_decay` package, whose import registers every class with Keras. It
imports only the standard library and NumPy.

Each helper validates one argument eagerly (at construction), raises a
`TypeError` for a value of the wrong type and a `ValueError` for a value out
of range, in Keras' message template:

    Invalid value received for argument `rate`. Expected a non-negative
    finite float. Received: rate=-1.0

and returns the normalised value (a plain Python `float`, `int` or `str`) so
that `get_config` stays JSON-serializable.
"""

import math
import numbers

import numpy as np


def fail(error, name, expected, value):
    """Raises `error` in Keras' message template for argument `name`."""
    raise error(
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integral(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_float(
    value,
    name,
    *,
    low=None,
    high=None,
    low_inclusive=True,
    high_inclusive=True,
    expected=None,
):
    """Returns `value` as a finite `float` inside the given bounds.

    Args:
        value: The value received.
        name: The argument's name, used in the message.
        low, high: Optional bounds.
        low_inclusive, high_inclusive: Whether each bound is allowed.
        expected: Optional phrase for the message; built from the bounds
            when omitted.
    """
    if expected is None:
        expected = "a finite float" + _describe_bounds(
            low, high, low_inclusive, high_inclusive
        )
    if not _is_real(value):
        fail(TypeError, name, expected, value)
    value = float(value)
    if not math.isfinite(value):
        fail(ValueError, name, expected, value)
    if low is not None and (
        value < low or (value == low and not low_inclusive)
    ):
        fail(ValueError, name, expected, value)
    if high is not None and (
        value > high or (value == high and not high_inclusive)
    ):
        fail(ValueError, name, expected, value)
    return value


def check_non_negative_float(value, name):
    """Returns `value` as a finite `float` that is >= 0."""
    return check_float(
        value, name, low=0.0, expected="a non-negative finite float"
    )


def check_positive_float(value, name):
    """Returns `value` as a finite `float` that is > 0."""
    return check_float(
        value,
        name,
        low=0.0,
        low_inclusive=False,
        expected="a positive finite float",
    )


def check_int(value, name, *, low=None, expected=None):
    """Returns `value` as an `int` that is >= `low`.

    Integral floats such as `60000.0` are accepted; `True`/`False` are not.
    """
    if expected is None:
        expected = "an integer" + ("" if low is None else f" >= {low}")
    if _is_real(value) and not _is_integral(value):
        if not (math.isfinite(value) and float(value).is_integer()):
            fail(TypeError, name, expected, value)
    elif not _is_integral(value):
        fail(TypeError, name, expected, value)
    value = int(value)
    if low is not None and value < low:
        fail(ValueError, name, expected, value)
    return value


def check_positive_int(value, name):
    """Returns `value` as an `int` that is >= 1."""
    return check_int(value, name, low=1, expected="a positive integer")


def check_optional(check, value, name, *args, **kwargs):
    """Returns `None` for `None`, else `check(value, name, ...)`."""
    if value is None:
        return None
    return check(value, name, *args, **kwargs)


def check_bool(value, name):
    """Returns `value` as a `bool` if it is a `bool` or a NumPy `bool_`."""
    if not isinstance(value, (bool, np.bool_)):
        fail(TypeError, name, "a bool (True or False)", value)
    return bool(value)


def check_choice(value, name, choices):
    """Returns `value` if it is one of `choices`."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        fail(ValueError, name, f"one of {{{options}}}", value)
    return value


def _describe_bounds(low, high, low_inclusive, high_inclusive):
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>=' if low_inclusive else '>'} {low}"
    if low is None:
        return f" {'<=' if high_inclusive else '<'} {high}"
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    return f" in {left}{low}, {high}{right}"
