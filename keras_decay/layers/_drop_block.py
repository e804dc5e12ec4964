"""DropBlock (Ghiasi et al., 2018): structured dropout for feature maps."""

import keras
from keras import ops

from keras_decay import _validation
from keras_decay.layers import _rate

_DATA_FORMATS = ("channels_last", "channels_first")
# The kept fraction is floored here before it is inverted, so that the
# rescale factor (at most 1 / _MIN_KEPT) stays finite even in float16.
_MIN_KEPT = 1e-4


def drop_block_2d(inputs, rate, block_size, data_format=None, seed=None):
    """Drops contiguous blocks of a 4D feature map, per channel (training).

    Block seeds are drawn only where a whole block fits (the "valid region",
    `(H - bh + 1) x (W - bw + 1)` top-left corners, `bh x bw` the block
    clipped to the feature map), each with probability `gamma` chosen as in
    Ghiasi et al. (2018), eq. (1), with that valid-region correction:

    ```python
    gamma = rate / (bh * bw) * (H * W) / ((H - bh + 1) * (W - bw + 1))
    dropped = max_pool(seeds, (bh, bw))   # each seed grows into a block
    outputs = inputs * (1 - dropped) / mean(1 - dropped)
    ```

    The rescaling by the batch's kept fraction (the paper's
    `count(M) / count_ones(M)`) keeps the activation's sum. The expected
    dropped fraction is `mean_ij(1 - (1 - gamma) ** n_ij)`, `n_ij` the
    number of valid seeds whose block covers pixel `(i, j)`: a little below
    `rate` because blocks overlap (0.095 for `rate=0.1` with 7x7 blocks on
    56x56 maps; 0.18 for `rate=0.2` with 5x3 blocks on 20x15). A block as
    large as the feature map drops whole channels (like `SpatialDropout2D`);
    the output is finite even when everything is dropped (all zeros). The
    kept fraction is floored at 1e-4 before inverting it, so the scale
    stays finite in float16.

    Args:
        inputs: 4D tensor with static height and width.
        rate: Float in [0, 1), or a float scalar tensor or variable (read,
            not traced as a constant; its value is not checked): target
            dropped fraction.
        block_size: Int or `(height, width)` tuple of ints >= 1.
        data_format: `"channels_last"` (`(batch, H, W, C)`) or
            `"channels_first"` (`(batch, C, H, W)`). Defaults to
            `keras.config.image_data_format()`.
        seed: Int, `keras.random.SeedGenerator` or `None`. Defaults to
            `None`.

    Returns:
        A tensor of the inputs' shape and dtype.

    Example:

    >>> x = keras.ops.ones((2, 8, 6, 3))
    >>> y = drop_block_2d(x, 0.2, (3, 2), seed=1)
    >>> tuple(y.shape)
    (2, 8, 6, 3)
    """
    data_format = _check_data_format(data_format)
    block_h, block_w = _check_block_size(block_size)
    if not isinstance(rate, keras.Variable) and not ops.is_tensor(rate):
        rate = _rate.check_rate(rate)
    if len(inputs.shape) != 4:
        raise ValueError(
            "Invalid value received for argument `inputs`. Expected a 4D "
            f"tensor. Received: inputs.shape={tuple(inputs.shape)}"
        )
    if data_format == "channels_last":
        height, width = inputs.shape[1], inputs.shape[2]
    else:
        height, width = inputs.shape[2], inputs.shape[3]
    if height is None or width is None:
        raise ValueError(
            "Invalid value received for argument `inputs`. Expected static "
            "height and width (DropBlock needs them to compute gamma). "
            f"Received: inputs.shape={tuple(inputs.shape)}"
        )
    block_h, block_w = min(block_h, height), min(block_w, width)
    valid_h, valid_w = height - block_h + 1, width - block_w + 1
    gamma_factor = (height * width) / (block_h * block_w * valid_h * valid_w)
    gamma = ops.cast(rate, "float32") * gamma_factor

    shape = ops.shape(inputs)
    if data_format == "channels_last":
        seed_shape = (shape[0], valid_h, valid_w, shape[3])
    else:
        # One channels-last "image" per (sample, channel): no transpose.
        seed_shape = (shape[0] * shape[1], valid_h, valid_w, 1)
    noise = keras.random.uniform(seed_shape, dtype="float32", seed=seed)
    seeds = ops.cast(ops.less(noise, gamma), "float32")
    dropped = _grow_blocks(seeds, block_h, block_w)
    if data_format == "channels_first":
        dropped = ops.reshape(dropped, (shape[0], shape[1], height, width))
    keep = 1.0 - dropped
    # total / kept rather than 1 / mean(keep): counts of ones are exact in
    # float32, so nothing dropped gives a scale of exactly 1 (identity).
    total = ops.cast(ops.size(keep), "float32")
    kept = ops.maximum(ops.sum(keep), _MIN_KEPT * total)
    mask = ops.stop_gradient(keep * (total / kept))
    return ops.multiply(inputs, ops.cast(mask, inputs.dtype))


def _grow_blocks(seeds, block_h, block_w):
    """Turns top-left seeds `(N, H-bh+1, W-bw+1, C)` into blocks `(N,H,W,C)`.

    Pixel `(i, j)` is dropped iff a seed lies in rows `[i-bh+1, i]` and
    columns `[j-bw+1, j]`: a zero padding of `bh-1` (`bw-1`) on both sides
    and a stride-1 "valid" max pool, done separably (rows, then columns).
    """
    if block_h > 1:
        seeds = ops.pad(
            seeds, ((0, 0), (block_h - 1, block_h - 1), (0, 0), (0, 0))
        )
        seeds = ops.max_pool(seeds, (block_h, 1), strides=1, padding="valid")
    if block_w > 1:
        seeds = ops.pad(
            seeds, ((0, 0), (0, 0), (block_w - 1, block_w - 1), (0, 0))
        )
        seeds = ops.max_pool(seeds, (1, block_w), strides=1, padding="valid")
    return seeds


def _check_data_format(data_format):
    if data_format is None:
        return keras.config.image_data_format()
    return _validation.check_choice(data_format, "data_format", _DATA_FORMATS)


def _check_block_size(block_size):
    expected = "a positive integer or a tuple of 2 positive integers"
    if isinstance(block_size, (tuple, list)):
        if len(block_size) != 2:
            _validation.fail(ValueError, "block_size", expected, block_size)
        pair = tuple(block_size)
    else:
        pair = (block_size, block_size)
    try:
        return tuple(
            _validation.check_positive_int(b, "block_size") for b in pair
        )
    except TypeError:
        _validation.fail(TypeError, "block_size", expected, block_size)
    except ValueError:
        _validation.fail(ValueError, "block_size", expected, block_size)


@keras.saving.register_keras_serializable(package="keras_decay")
class DropBlock2D(_rate.ScheduledRateLayer, keras.layers.Layer):
    """DropBlock (Ghiasi et al., 2018): drops contiguous regions per channel.

    In training, calls `drop_block_2d` (see it for the exact formula):
    `block_size` regions are zeroed independently in each channel, with
    seeds drawn in the valid region at the paper's `gamma`, and the
    survivors rescaled by the batch's kept fraction so that the expected
    activation is kept. Identity at inference and when the rate is 0.
    Works in `channels_last` and `channels_first`, on non-square maps and
    blocks; a block larger than the map is clipped to it (then whole
    channels are dropped), never giving NaN.

    The rate is kept in `rate_variable` (float32 scalar), which
    `keras_decay.callbacks.DropRateScheduler` assigns during training
    without retracing (the paper ramps it linearly from 0); `rate` is the
    constructor's value.

    Args:
        rate: Float in [0, 1). Target fraction of units dropped.
        block_size: Int or `(height, width)` tuple of ints >= 1.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        seed: Optional int. Random seed. Defaults to `None`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`).

    Call arguments:
        inputs: 4D tensor with static height and width.
        training: Python bool. Drop blocks (True) or pass through.

    Example:

    >>> layer = DropBlock2D(0.1, block_size=(3, 5), seed=0)
    >>> x = keras.ops.ones((2, 16, 12, 4))
    >>> tuple(layer(x, training=True).shape)
    (2, 16, 12, 4)
    """

    def __init__(self, rate, block_size, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate.check_rate(rate)
        self.block_size = _check_block_size(block_size)
        self.data_format = _check_data_format(data_format)
        self.seed = _rate.check_seed(seed)
        self.seed_generator = _rate.ReplicaSeedGenerator(self.seed)
        self.rate_variable = _rate.make_rate_variable(self, self.rate)
        self.build_at_init()

    def call(self, inputs, training=False):
        _rate.check_input_rank(self, inputs.shape, 4)
        if not training:
            return inputs
        return drop_block_2d(
            inputs,
            self.rate_variable,
            self.block_size,
            data_format=self.data_format,
            seed=self.seed_generator,
        )

    def compute_output_shape(self, input_shape):
        _rate.check_input_rank(self, input_shape, 4)
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rate": self.rate,
                "block_size": self.block_size,
                "data_format": self.data_format,
                "seed": self.seed,
            }
        )
        return config
