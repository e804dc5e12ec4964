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
import numpy as np

from keras_decay import _keras_compat
from keras_decay import _validation

# Seeds must fit every backend's seed dtype (int32 on PyTorch, uint32 on
# JAX), so that a model saved on one backend loads on another.
_MAX_SEED = 2**31 - 1
# The entry under which a layer's seed-generator state is saved.
SEED_STATE_KEY = "seed_generator_state"


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
    """Returns `seed` as an int in [0, 2**31 - 1] or None (stored as ints)."""
    if seed is None:
        return None
    expected = f"an integer in [0, {_MAX_SEED}]"
    seed = _validation.check_int(seed, "seed", low=0, expected=expected)
    if seed > _MAX_SEED:
        _validation.fail(ValueError, "seed", expected, seed)
    return seed


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


class ScheduledRateLayer:
    """Mixin for our dropout layers: built at init, exact save and resume.

    Put first in the bases (`class L(ScheduledRateLayer, keras.layers.Layer)`).
    The layer defines `seed_generator` and `rate_variable`. Besides Keras'
    variables, the seed generator's state is saved with the weights (under
    "seed_generator_state"), so a model restored from a checkpoint, e.g. by
    `keras.callbacks.BackupAndRestore`, draws the masks the uninterrupted run
    would have drawn (Keras' own `Dropout` does not save it). Files written
    before that entry existed still load. A loaded rate outside [0, 1) is
    rejected: the layers' formulas assume it.
    """

    def build_at_init(self):
        """Marks the layer built unless a subclass defines its own `build`."""
        _keras_compat.build_at_init(self)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.built:
            store[SEED_STATE_KEY] = self.seed_generator.state

    def keras_entries(self, store):
        """The entries of `store` that the Keras base layer loads itself."""
        keys = [key for key in store.keys() if key != SEED_STATE_KEY]
        return {key: store[key] for key in keys}

    def load_own_variables(self, store):
        super().load_own_variables(self.keras_entries(store))
        check_loaded_rate(self)
        if SEED_STATE_KEY in store.keys():
            state = self.seed_generator.state
            state.assign(np.asarray(store[SEED_STATE_KEY]).astype(state.dtype))


def check_loaded_rate(layer):
    """Raises if `layer.rate_variable` holds a value outside [0, 1)."""
    value = float(keras.ops.convert_to_numpy(layer.rate_variable))
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"Invalid value loaded for `rate_variable` of layer "
            f"'{layer.name}'. Expected a float value in [0, 1) (the weights "
            f"file may be corrupt). Received: rate_variable={value!r}"
        )


def check_input_rank(layer, shape, ndim):
    """Raises if `shape` (the input's shape) is not of rank `ndim`."""
    if len(shape) != ndim:
        raise ValueError(
            f"Invalid value received for argument `inputs` of layer "
            f"'{layer.name}'. Expected a {ndim}D tensor. "
            f"Received: inputs.shape={tuple(shape)}"
        )


# Added to the first seed component on replica r, so that replicas draw
# different streams; a large prime keeps them apart from nearby user seeds.
_REPLICA_SEED_STRIDE = 1_000_003


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A `SeedGenerator` that gives each `tf.distribute` replica its own seed.

    Keras' generator state is one mirrored variable, so under
    `MirroredStrategy` every replica draws the same seed, hence the same
    dropout mask for different examples (Keras' own `Dropout` does this since
    Keras 3.8). This generator offsets the drawn seed by the replica's index,
    `seed + [replica_id * 1000003, 0]`: replicas get different masks, and the
    masks are still a function of the layer's seed alone. Outside a
    multi-replica context (one device, JAX, a cross-replica call) it draws
    exactly what `keras.random.SeedGenerator` draws.
    """

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        replica = _replica_id()
        if replica is None:
            return seed
        offset = keras.ops.stack(
            [keras.ops.cast(replica, seed.dtype) * _REPLICA_SEED_STRIDE, 0]
        )
        return seed + keras.ops.cast(offset, seed.dtype)


def _replica_id():
    """The `tf.distribute` replica index, or None with a single replica."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context.replica_id_in_sync_group
