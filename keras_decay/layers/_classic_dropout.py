"""Classic (non-inverted) dropout."""

import keras
from keras import ops

from keras_decay import _validation
from keras_decay.layers import _rate


@keras.saving.register_keras_serializable(package="keras_decay")
class ClassicDropout(_rate.ScheduledRateLayer, keras.layers.Layer):
    """Dropout as first described: no rescaling in training, `1 - rate` after.

    During training each unit is kept with probability `1 - rate` and the
    survivors are not rescaled; at inference every unit is kept and scaled
    by the keep probability (at `rate=0.5`, "halve the outgoing weights"):

    ```python
    training:  outputs = inputs * mask   # mask ~ Bernoulli(1 - rate)
    inference: outputs = inputs * (1 - rate)
    ```

    Both modes have the same expected activation. `keras.layers.Dropout` is
    the inverted form (`inputs * mask / (1 - rate)` in training, identity at
    inference); use this layer to reproduce the original convention.

    The rate is kept in `rate_variable` (float32 scalar), which
    `keras_decay.callbacks.DropRateScheduler` assigns during training
    without retracing the train step; `rate` is the constructor's value.

    Args:
        rate: Float in [0, 1). Probability of dropping each unit.
        noise_shape: Optional tuple of ints or `None`s: the shape of the
            mask, broadcast against the inputs (`None` takes the input's
            size). For example `(None, 1, None)` on `(batch, time, features)`
            shares the mask across time steps. Defaults to `None` (the
            input's shape).
        seed: Optional int. Random seed. Defaults to `None`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`).

    Call arguments:
        inputs: Input tensor of any rank.
        training: Python bool. Training mode (drop) or inference (scale).

    Example:

    >>> layer = ClassicDropout(0.5, seed=0)
    >>> x = keras.ops.ones((2, 4))
    >>> keras.ops.convert_to_numpy(layer(x, training=False))[0].tolist()
    [0.5, 0.5, 0.5, 0.5]
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate.check_rate(rate)
        self.noise_shape = _check_noise_shape(noise_shape)
        self.seed = _rate.check_seed(seed)
        self.seed_generator = _rate.ReplicaSeedGenerator(self.seed)
        self.rate_variable = _rate.make_rate_variable(self, self.rate)
        self.supports_masking = True
        self.build_at_init()

    def call(self, inputs, training=False):
        rate = ops.cast(self.rate_variable, inputs.dtype)
        if not training:
            return inputs * (1.0 - rate)
        shape = _concrete_noise_shape(inputs, self.noise_shape)
        noise = keras.random.uniform(
            shape, dtype="float32", seed=self.seed_generator
        )
        keep = ops.cast(
            ops.greater_equal(noise, self.rate_variable), inputs.dtype
        )
        return inputs * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rate": self.rate,
                "noise_shape": self.noise_shape,
                "seed": self.seed,
            }
        )
        return config


def _check_noise_shape(noise_shape):
    if noise_shape is None:
        return None
    expected = "a tuple of positive integers or None"
    if isinstance(noise_shape, str) or not hasattr(noise_shape, "__iter__"):
        _validation.fail(TypeError, "noise_shape", expected, noise_shape)
    dims = []
    for dim in noise_shape:
        if dim is None:
            dims.append(None)
            continue
        try:
            dims.append(_validation.check_positive_int(dim, "noise_shape"))
        except (TypeError, ValueError):
            _validation.fail(
                ValueError, "noise_shape", expected, tuple(noise_shape)
            )
    return tuple(dims)


def _concrete_noise_shape(inputs, noise_shape):
    if noise_shape is None:
        return ops.shape(inputs)
    if len(noise_shape) != len(inputs.shape):
        raise ValueError(
            "Invalid value received for argument `noise_shape`. Expected a "
            f"tuple of the inputs' rank {len(inputs.shape)}. "
            f"Received: noise_shape={noise_shape}"
        )
    input_shape = ops.shape(inputs)
    return tuple(
        input_shape[i] if dim is None else dim
        for i, dim in enumerate(noise_shape)
    )
