"""Config helpers for classes that hold another Keras object (a schedule)."""

import keras


def deserialize_nested(config, key="schedule"):
    """Returns a copy of `config` with `config[key]` deserialized.

    For `from_config` of classes whose `get_config` stores a nested object
    as `keras.saving.serialize_keras_object(obj)`.
    """
    config = dict(config)
    config[key] = keras.saving.deserialize_keras_object(config[key])
    return config
