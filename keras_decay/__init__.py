"""keras_decay: weight decay and its relatives for Keras 3, exact to the formula.

Public modules: `keras_decay.regularizers`, `keras_decay.conventions`,
`keras_decay.callbacks` (and, as they land, `keras_decay.schedules` and
`keras_decay.layers`). The most used names are re-exported here.
"""

from keras_decay import callbacks
from keras_decay import regularizers
from keras_decay import schedules
from keras_decay.regularizers import ElasticDecay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

__version__ = "0.1.0"

__all__ = [
    "ElasticDecay",
    "L1Decay",
    "WeightDecay",
    "callbacks",
    "regularizers",
    "schedules",
]
