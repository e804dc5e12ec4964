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

from keras_decay import _validation


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
    """Returns `seed` as an int or None (seeds are stored as ints)."""
    return _validation.check_optional(_validation.check_int, seed, "seed")


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
