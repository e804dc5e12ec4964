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


def print_mirrored_result(strategy, model, want):
    """The last line of a `check_mirrored` script: what it compares."""
    import json

    got = [w.tolist() for w in model.get_weights()]
    replicas = strategy.num_replicas_in_sync
    want = [w.tolist() for w in want]
    print(json.dumps({"replicas": replicas, "got": got, "want": want}))


def check_mirrored(script, rtol, atol):
    """Runs a MirroredStrategy `script` in a process of its own.

    A second MirroredStrategy in the test process (tests/test_distribution.py
    makes one) fails in Keras 3.15's collective ops. The script ends with
    `print_mirrored_result`; its weights must equal the NumPy ones it
    computed, on 2 replicas.
    """
    import json
    import os
    import subprocess
    import sys

    import numpy as np

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=root),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    for got, want in zip(result["got"], result["want"]):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
