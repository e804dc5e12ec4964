"""Shared test set-up: quiet TensorFlow, two CPU devices, a clean session.

Two CPU devices are made before any backend starts, so that distribution
tests run on a real engine in this process: two logical CPU devices for
`tf.distribute.MirroredStrategy`, two host devices for JAX's
`keras.distribution.DataParallel`. Everything else runs on the first device,
as it would without them.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import keras  # noqa: E402
import pytest  # noqa: E402

NUM_CPU_DEVICES = 2

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_CPU_DEVICES
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tensorflow_only: needs the TensorFlow backend"
    )
    config.addinivalue_line("markers", "jax_only: needs the JAX backend")
    config.addinivalue_line(
        "markers",
        "backends(*names): runs only on these Keras backends "
        "(tensorflow, jax, torch); the test says why next to the marker",
    )
    config.addinivalue_line(
        "markers",
        "jit_compile: fits with jit_compile=True; skipped on PyTorch, where "
        "that is torch.compile (minutes of C++ compilation on CPU)",
    )


_ONLY = {"tensorflow_only": "tensorflow", "jax_only": "jax"}


def _compiles_with_torch(item):
    """Whether the test fits with `jit_compile=True` (marker or parameter)."""
    if "jit_compile" in item.keywords:
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(params.get(name) is True for name in ("jit", "jit_compile"))


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    for item in items:
        for marker, needed in _ONLY.items():
            if marker in item.keywords and backend != needed:
                item.add_marker(
                    pytest.mark.skip(reason=f"needs the {needed} backend")
                )
        if backend == "torch" and _compiles_with_torch(item):
            item.add_marker(
                pytest.mark.skip(
                    reason="jit_compile=True is torch.compile on PyTorch "
                    "(minutes of C++ compilation on CPU); the eager step "
                    "is tested"
                )
            )
        marker = item.get_closest_marker("backends")
        if marker is not None and backend not in marker.args:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"runs on {', '.join(marker.args)}, not on {backend}"
                )
            )


@pytest.fixture(autouse=True)
def _clear_keras_session():
    # No forced garbage collection: it costs ~0.4 s a test, and Python
    # collects on its own.
    keras.backend.clear_session(free_memory=False)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
