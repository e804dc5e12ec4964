"""Keras callbacks: hyperparameter schedules and weight diagnostics.

Each callback lives in its own private module; this package re-exports them.
"""

from keras_decay.callbacks._drop_rate import DropRateScheduler
from keras_decay.callbacks._hyperparameter import MomentumScheduler
from keras_decay.callbacks._hyperparameter import WeightDecayScheduler
from keras_decay.callbacks._weight_norm_logger import WeightNormLogger

__all__ = [
    "DropRateScheduler",
    "MomentumScheduler",
    "WeightDecayScheduler",
    "WeightNormLogger",
]
