"""DropConnect (Wan et al., 2013): a Dense layer with dropped weights."""

import keras
from keras import ops

from keras_decay import _keras_compat
from keras_decay.layers import _rate


@keras.saving.register_keras_serializable(package="keras_decay")
class DropConnectDense(_rate.ScheduledRateLayer, keras.layers.Dense):
    """A `Dense` layer whose kernel entries are dropped at each training step.

    In training, a fresh Bernoulli mask over the kernel is drawn per call and
    the kept entries are rescaled (inverted scaling); at inference the plain
    kernel is used, so the layer equals `keras.layers.Dense`:

    ```python
    training:  outputs = activation(inputs @ (kernel * mask / (1 - rate)) + b)
    inference: outputs = activation(inputs @ kernel + bias)
    # mask ~ Bernoulli(1 - rate), shape of kernel; the bias is not dropped.
    ```

    The mask is shared by the samples of a batch (one mask per step, as in
    the efficient form of Wan et al.); `E[outputs]` before the activation
    equals the Dense output. The rate is kept in `rate_variable` (float32
    scalar) so that `keras_decay.callbacks.DropRateScheduler` can change it
    without retracing. Quantized and LoRA modes of `Dense` are not
    supported in training (the inference path is Dense's own).

    Args:
        units: Positive int. Dimensionality of the output space.
        rate: Float in [0, 1). Probability of dropping each kernel entry.
        seed: Optional int. Random seed. Defaults to `None`.
        **kwargs: Every other argument of `keras.layers.Dense`
            (`activation`, `use_bias`, `kernel_initializer`,
            `kernel_regularizer`, ...).

    Call arguments:
        inputs: Tensor of rank >= 2.
        training: Python bool. Drop kernel entries (True) or not.

    Example:

    >>> layer = DropConnectDense(8, rate=0.3, seed=0, activation="relu")
    >>> tuple(layer(keras.ops.ones((4, 5)), training=True).shape)
    (4, 8)
    """

    def __init__(self, units, rate, seed=None, **kwargs):
        super().__init__(units, **kwargs)
        self.rate = _rate.check_rate(rate)
        self.seed = _rate.check_seed(seed)
        self.seed_generator = _rate.ReplicaSeedGenerator(self.seed)
        # Created before the kernel, so that DropRateScheduler finds it even
        # in a model that is built during the first train step.
        self.rate_variable = _rate.make_rate_variable(self, self.rate)

    def call(self, inputs, training=None):
        if not training:
            return super().call(inputs)
        if self.quantization_mode or self.lora_enabled:
            raise NotImplementedError(
                "DropConnectDense does not support training in quantized or "
                "LoRA mode."
            )
        kernel = self.kernel
        noise = keras.random.uniform(
            ops.shape(kernel), dtype="float32", seed=self.seed_generator
        )
        keep = ops.cast(ops.greater_equal(noise, self.rate_variable), "float32")
        mask = keep / (1.0 - self.rate_variable)
        x = ops.matmul(inputs, kernel * ops.cast(mask, kernel.dtype))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.built:
            store["rate"] = self.rate_variable

    def keras_entries(self, store):
        return _keras_compat.dense_store(store, "rate")

    def load_own_variables(self, store):
        if self.built:
            self.rate_variable.assign(store["rate"])
        # Loads the kernel and bias, then checks the rate.
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
