"""Keras callbacks: hyperparameter schedules and weight diagnostics.

Each callback lives in its own private module; this package re-exports them.
"""

from keras_decay.callbacks._weight_norm_logger import WeightNormLogger

__all__ = ["WeightNormLogger"]
