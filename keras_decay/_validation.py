"""Argument checks shared by every public class.

The checks of plain values (`check_float`, `check_int`, `check_bool`,
`check_choice`, `fail`, ...) live in the top-level module
`_keras_decay_validation`, which the `keras-decay` command's option
declarations use without importing this package; they are re-exported here
beside the checks that need Keras.
"""

import keras

from _keras_decay_validation import check_bool
from _keras_decay_validation import check_choice
from _keras_decay_validation import check_float
from _keras_decay_validation import check_int
from _keras_decay_validation import check_non_negative_float
from _keras_decay_validation import check_optional
from _keras_decay_validation import check_positive_float
from _keras_decay_validation import check_positive_int
from _keras_decay_validation import fail

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_non_negative_float",
    "check_optional",
    "check_positive_float",
    "check_positive_int",
    "check_schedule",
    "fail",
]


def check_schedule(value, name="schedule"):
    """Returns `value` if it is a `LearningRateSchedule` (Keras' or ours)."""
    if not isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        fail(
            TypeError,
            name,
            "a keras.optimizers.schedules.LearningRateSchedule instance",
            value,
        )
    return value
