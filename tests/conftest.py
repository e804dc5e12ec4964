"""Shared test set-up: quiet TensorFlow, two CPU devices, a clean session.

Two CPU devices are made before any backend starts, so that distribution
tests run on a real engine in this process: two logical CPU devices for
`tf.distribute.MirroredStrategy`, two host devices for JAX's
`keras.distribution.DataParallel`. Everything else runs on the first device,
as it would without them.

The suite runs in `pytest-xdist` workers (`-n auto` in setup.cfg: one worker
a core, at most four). Each worker gets its share of the cores as its
thread count (TensorFlow, XLA, OpenMP): uncapped, two workers on two cores
each start a thread per core and run slower than one worker. `pytest -n 0`
runs in this process with every core.
"""

import os

MAX_WORKERS = 4


def _cap_threads_per_worker():
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if count is None:
        return
    threads = str(max(1, (os.cpu_count() or 1) // int(count)))
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    if threads == "1":
        _add_xla_flag("--xla_cpu_multi_thread_eigen=false")


def _add_xla_flag(flag):
    flags = os.environ.get("XLA_FLAGS", "").split()
    name = flag.split("=")[0]
    if not any(f.split("=")[0] == name for f in flags):
        os.environ["XLA_FLAGS"] = " ".join(flags + [flag])


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_add_xla_flag("--xla_force_host_platform_device_count=2")
_cap_threads_per_worker()

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
        "backend_independent: checks code that does not depend on the Keras "
        "backend (option parsing, the sweep engine, the plan and report); "
        "runs once, in the TensorFlow pass",
    )
    config.addinivalue_line(
        "markers",
        "min_versions: also run by the minimum-versions leg of .ci/run "
        "(the oldest TensorFlow and Keras that setup.cfg declares): what "
        "depends on their versions",
    )
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


_ONLY = {
    "tensorflow_only": "tensorflow",
    "jax_only": "jax",
    "backend_independent": "tensorflow",
}


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker a core, and one more in the TensorFlow pass,
    whose backend-independent sweep tests mostly wait on their worker
    processes and servers (2 cores, 2026-12-03: 227 s against 249 s; the
    JAX pass is no faster with a third worker); at most `MAX_WORKERS`
    (each imports a backend: about 1 GiB of memory)."""
    workers = os.cpu_count() or 1
    if keras.backend.backend() == "tensorflow":
        workers += 1
    return min(workers, MAX_WORKERS)


def _compiles_with_torch(item):
    """Whether the test fits with `jit_compile=True` (marker or parameter)."""
    if "jit_compile" in item.keywords:
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(params.get(name) is True for name in ("jit", "jit_compile"))


# The costliest files first (per-file totals of `--durations=0` on the
# TensorFlow and JAX passes, 2 cores, 2026-12-03): xdist's `loadfile`
# hands out whole files in collection order (`--no-loadscope-reorder` in
# setup.cfg; its default order is by test count), so a long file that
# starts last is the pass's tail. The rest keep pytest's order.
SLOW_FIRST = (
    "test_sweep.py",
    "test_contracts.py",
    "test_layers.py",
    "test_optimizer_modes.py",
    "test_weight_norm_logger.py",
    "test_compare.py",
    "test_distribution.py",
    "test_optimizers.py",
    "test_hyperparameter.py",
    "test_package.py",
)


def _cost_rank(item):
    name = os.path.basename(str(item.path))
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_cost_rank)  # Stable: a file's tests keep their order.
    backend = keras.backend.backend()
    for item in items:
        for marker, needed in _ONLY.items():
            if marker in item.keywords and backend != needed:
                reason = (
                    "backend-independent: runs once, in the TensorFlow pass"
                    if marker == "backend_independent"
                    else f"needs the {needed} backend"
                )
                item.add_marker(pytest.mark.skip(reason=reason))
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
