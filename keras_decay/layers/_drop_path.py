"""DropPath (stochastic depth): drops whole residual branches per example."""

import keras
from keras import ops

from keras_decay import _validation
from keras_decay.layers import _rate


def stochastic_depth_rates(num_blocks, max_rate):
    """The linear stochastic-depth rule: one drop rate per residual block.

    Block `l` of `L` (counted from the input, `l = 1..L`) drops its branch
    with probability (Huang et al., 2016, "linear decay" rule)

    ```python
    rate_l = max_rate * l / num_blocks
    ```

    so the first block is almost always kept and the last one is dropped
    with probability `max_rate`.

    Args:
        num_blocks: Positive int. Number of residual blocks `L`.
        max_rate: Float in [0, 1). Drop rate of the last block.

    Returns:
        A list of `num_blocks` Python floats, increasing.

    Example:

    >>> stochastic_depth_rates(4, 0.2)
    [0.05, 0.1, 0.15000000000000002, 0.2]
    """
    num_blocks = _validation.check_positive_int(num_blocks, "num_blocks")
    max_rate = _rate.check_rate(max_rate, "max_rate")
    return [max_rate * block / num_blocks for block in range(1, num_blocks + 1)]


@keras.saving.register_keras_serializable(package="keras_decay")
class DropPath(_rate.ScheduledRateLayer, keras.layers.Layer):
    """Stochastic depth: zeroes each example's input with probability `rate`.

    Put on a residual branch before the addition (`x + DropPath(r)(f(x))`):
    in training each example's whole branch output is dropped with
    probability `rate` and the survivors are rescaled, so that the expected
    output is kept; at inference the layer is the identity (timm's
    `drop_path`, Huang et al., 2016):

    ```python
    training:  outputs = inputs * keep / (1 - rate)
    # keep ~ Bernoulli(1 - rate), one draw per example (shape (batch, 1, ...))
    inference: outputs = inputs
    ```

    Use `stochastic_depth_rates(num_blocks, max_rate)` for the usual rates
    that grow linearly with depth. The rate is kept in `rate_variable`
    (float32 scalar), which `keras_decay.callbacks.DropRateScheduler`
    assigns during training without retracing (pass `layers=` to ramp some
    blocks only); `rate` is the constructor's value. Under
    `tf.distribute.MirroredStrategy` each replica draws its own masks.

    Args:
        rate: Float in [0, 1). Probability of dropping an example's input.
        seed: Optional int in [0, 2**31 - 1]. Random seed. Defaults to
            `None`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`).

    Call arguments:
        inputs: Tensor of rank >= 1; the first axis is the batch.
        training: Python bool. Drop (True) or pass through.

    Example:

    >>> inputs = keras.Input((8,))
    >>> branch = keras.layers.Dense(8, activation="relu")(inputs)
    >>> outputs = keras.layers.Add()([inputs, DropPath(0.1, seed=0)(branch)])
    >>> model = keras.Model(inputs, outputs)
    >>> tuple(model(keras.ops.ones((2, 8)), training=True).shape)
    (2, 8)
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate.check_rate(rate)
        self.seed = _rate.check_seed(seed)
        self.seed_generator = _rate.ReplicaSeedGenerator(self.seed)
        self.rate_variable = _rate.make_rate_variable(self, self.rate)
        self.supports_masking = True
        self.build_at_init()

    def call(self, inputs, training=False):
        if len(inputs.shape) < 1:
            raise ValueError(
                "DropPath drops whole examples: its input needs a batch "
                "axis (rank >= 1). Received: inputs with shape "
                f"{tuple(inputs.shape)}"
            )
        if not training:
            return inputs
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(
            shape, dtype="float32", seed=self.seed_generator
        )
        keep = ops.cast(ops.greater_equal(noise, self.rate_variable), "float32")
        scale = keep / (1.0 - self.rate_variable)
        return inputs * ops.cast(scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
