"""What this machine's backend supports, probed rather than assumed."""

import keras
import pytest


def conv_channels_first_supported():
    """Whether this backend's CPU kernels run a `channels_first` Conv2D.

    TensorFlow's CPU Conv2D supports NCHW only through oneDNN, which
    TensorFlow enables by default on Intel CPUs alone (an AMD EPYC raises
    `UnimplementedError`). A probe decides, not the CPU vendor.
    """
    if keras.backend.backend() != "tensorflow":
        return True
    import numpy as np

    layer = keras.layers.Conv2D(1, 1, data_format="channels_first")
    try:
        layer(np.zeros((1, 1, 2, 2), "float32"))
    except Exception as error:  # tf.errors.UnimplementedError
        if "NHWC" in str(error) or "Unimplemented" in type(error).__name__:
            return False
        raise
    return True


def channels_first_param():
    """`"channels_first"` as a parameter, skipped where Conv2D lacks it."""
    return pytest.param(
        "channels_first",
        marks=pytest.mark.skipif(
            not conv_channels_first_supported(),
            reason="this CPU's TensorFlow Conv2D has no NCHW kernel "
            "(oneDNN is enabled on Intel only)",
        ),
    )
