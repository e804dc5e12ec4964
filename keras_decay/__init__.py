"""keras_decay: weight decay and its relatives for Keras 3.

Public modules: `keras_decay.regularizers`, `keras_decay.conventions`,
`keras_decay.schedules`, `keras_decay.optimizers`, `keras_decay.layers`,
`keras_decay.callbacks`, `keras_decay.rules`.
The most used names are re-exported here.

`import keras_decay` imports every public module, which registers every
keras_decay class with Keras: `keras.saving.load_model` of a model that uses
them needs only that import, however the process started. The
`keras-decay` command's parser and options live apart, in the top-level
package `keras_decay_cli`, which imports neither this package nor Keras.
"""

from keras_decay import callbacks
from keras_decay import conventions
from keras_decay import layers
from keras_decay import optimizers
from keras_decay import regularizers
from keras_decay import rules
from keras_decay import schedules
from keras_decay.apply import DecayReport
from keras_decay.apply import apply_weight_decay
from keras_decay.regularizers import ElasticDecay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

__version__ = "0.1.0"

__all__ = [
    "DecayReport",
    "ElasticDecay",
    "L1Decay",
    "WeightDecay",
    "apply_weight_decay",
    "callbacks",
    "conventions",
    "layers",
    "optimizers",
    "regularizers",
    "rules",
    "schedules",
]
