"""Keras callbacks: hyperparameter schedules and weight diagnostics.

Each callback lives in its own private module; this package re-exports them.
"""

from keras_decay.callbacks._drop_rate import DropRateScheduler

__all__ = [
    "DropRateScheduler",
]
