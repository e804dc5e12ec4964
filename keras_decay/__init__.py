"""keras_decay: weight decay and its relatives for Keras 3.

Public modules: `keras_decay.regularizers`, `keras_decay.conventions`,
`keras_decay.schedules`, `keras_decay.optimizers`, `keras_decay.layers`,
`keras_decay.callbacks`, `keras_decay.rules`.
The most used names are re-exported here.

`import keras_decay` imports every public module, which registers every
keras_decay class with Keras: `keras.saving.load_model` of a model that uses
them needs that import first. Only the `keras-decay` command (its entry
point, the top-level module `keras_decay_cli`, is imported first) defers
the imports to first use (PEP 562), so that `--help` and argument errors
answer without importing Keras and TensorFlow.
"""

import importlib
import sys

__version__ = "0.1.0"

# Public name -> (module, attribute or None for the module itself).
_EXPORTS = {
    "DecayReport": ("keras_decay.apply", "DecayReport"),
    "ElasticDecay": ("keras_decay.regularizers", "ElasticDecay"),
    "L1Decay": ("keras_decay.regularizers", "L1Decay"),
    "WeightDecay": ("keras_decay.regularizers", "WeightDecay"),
    "apply_weight_decay": ("keras_decay.apply", "apply_weight_decay"),
    "callbacks": ("keras_decay.callbacks", None),
    "conventions": ("keras_decay.conventions", None),
    "layers": ("keras_decay.layers", None),
    "optimizers": ("keras_decay.optimizers", None),
    "regularizers": ("keras_decay.regularizers", None),
    "rules": ("keras_decay.rules", None),
    "schedules": ("keras_decay.schedules", None),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_decay' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if "keras_decay_cli" not in sys.modules:
    for _name in __all__:
        __getattr__(_name)
