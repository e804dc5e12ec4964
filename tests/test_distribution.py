"""Distribution on real engines: MirroredStrategy, JAX DataParallel, workers.

`tests/conftest.py` gives every test process two CPU devices (two logical
TensorFlow devices, or two JAX host devices), so the strategies here run for
real in this process.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_decay import WeightDecay
from keras_decay import layers
from keras_decay import optimizers
from keras_decay import schedules
from keras_decay.regularizers import L1Decay

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

BACKEND = keras.backend.backend()
HERE = os.path.dirname(os.path.abspath(__file__))


def _data(m=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(m, 3)).astype("float32")
    return x, y


def _model(optimizer):
    """Regularizers and every dropout layer at rate 0 (deterministic)."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(
                4, 3, kernel_regularizer=WeightDecay(0.05), name="conv"
            ),
            layers.DropBlock2D(0.0, 2, seed=1),
            keras.layers.Flatten(),
            layers.ClassicDropout(0.0, seed=2),
            layers.DropConnectDense(
                5, rate=0.0, seed=3, kernel_regularizer=L1Decay(0.01)
            ),
            keras.layers.Dense(
                3, kernel_regularizer=WeightDecay(0.1, num_examples=32)
            ),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


# --- TensorFlow: MirroredStrategy over two logical CPU devices -------------


def _mirrored():
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.mark.tensorflow_only
def test_mirrored_training_equals_one_device(tmp_path):
    from keras_decay.callbacks import MomentumScheduler
    from keras_decay.callbacks import WeightNormLogger
    from tests._events import read_events

    x, y = _data()
    results = {}
    for name, strategy in (("one", None), ("mirrored", _mirrored())):
        keras.backend.clear_session()  # the same layer names, hence tags
        scope = strategy.scope() if strategy else _null_scope()
        with scope:
            # SGD() has momentum 0.0 and is built under the strategy; the
            # callback gives it the ramp, from 0.0.
            model = _model(optimizers.SGD(learning_rate=0.05))
        log_dir = str(tmp_path / name)
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[
                MomentumScheduler(schedules.LinearRamp(0.0, 0.9, 6)),
                WeightNormLogger(log_dir, norms=("l2", "l1", "max")),
            ],
        )
        results[name] = (model, read_events(log_dir))

    one, one_events = results["one"]
    mirrored, mirrored_events = results["mirrored"]
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2
    for a, b in zip(one.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)

    assert set(one_events) == set(mirrored_events)
    for tag, series in one_events.items():
        if not tag.startswith(("weight_", "update_ratio/", "regularization/")):
            continue
        np.testing.assert_allclose(
            [float(v) for _, v, _ in mirrored_events[tag]],
            [float(v) for _, v, _ in series],
            rtol=1e-5,
            atol=1e-6,
            err_msg=tag,
        )
    # And the last logged norms are NumPy's norms of the final weights.
    for variable in mirrored.trainable_variables:
        *_, (_, last, _) = mirrored_events[f"weight_norm/{variable.path}"]
        np.testing.assert_allclose(
            float(last),
            np.linalg.norm(np.asarray(variable, "float64")),
            rtol=1e-5,
        )


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: layers.ClassicDropout(0.5, seed=11), (1, 64)),
        (lambda: layers.DropBlock2D(0.3, 2, seed=12), (1, 8, 8, 2)),
        (lambda: layers.DropConnectDense(8, rate=0.5, seed=13), (1, 16)),
    ],
    ids=["ClassicDropout", "DropBlock2D", "DropConnectDense"],
)
def test_replicas_draw_different_masks_reproducibly(make, shape):
    import tensorflow as tf

    def draw():
        strategy = _mirrored()
        with strategy.scope():
            layer = make()
            layer.build(shape)
            if hasattr(layer, "kernel"):
                layer.kernel.assign(np.ones(layer.kernel.shape, "float32"))

        @tf.function
        def step():
            return strategy.run(lambda: layer(tf.ones(shape), training=True))

        return [
            np.asarray(r) for r in strategy.experimental_local_results(step())
        ]

    first, second = draw(), draw()
    # Different masks on the two replicas (Keras' Dropout gives equal ones).
    assert not np.array_equal(first[0], first[1])
    # The same seed gives the same masks again, replica by replica.
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # Replica 0 draws what the layer draws on one device.
    keras.backend.clear_session()
    layer = make()
    layer.build(shape)
    if hasattr(layer, "kernel"):
        layer.kernel.assign(np.ones(layer.kernel.shape, "float32"))
    single = np.asarray(layer(tf.ones(shape), training=True))
    np.testing.assert_array_equal(first[0], single)


# --- JAX: keras.distribution.DataParallel over two host devices -------------


@pytest.mark.skipif(BACKEND != "jax", reason="needs the JAX backend")
def test_jax_data_parallel_equals_one_device():
    import jax

    devices = jax.devices("cpu")
    assert len(devices) >= 2, "set XLA_FLAGS=--xla_force_host_platform_..."
    x, y = _data()
    lr = schedules.Warmup(schedules.ExponentialDecay(0.05, 4, 0.5), 2)

    def train(distribution):
        keras.distribution.set_distribution(distribution)
        try:
            model = _model(keras.optimizers.SGD(learning_rate=lr))
            model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
            return [np.asarray(w) for w in model.get_weights()]
        finally:
            keras.distribution.set_distribution(None)

    one = train(None)
    parallel = train(keras.distribution.DataParallel(devices=devices[:2]))
    for a, b in zip(one, parallel):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# --- TensorFlow: MultiWorkerMirroredStrategy, two processes on localhost ----


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KnownKerasBug(Exception):
    """keras-team/keras#20585 still reproduces."""


@pytest.mark.tensorflow_only
@pytest.mark.xfail(
    raises=KnownKerasBug,
    strict=True,
    reason="keras-team/keras#20585: MultiWorkerMirroredStrategy + fit fails "
    "in Keras 3 (ValueError converting PerReplica); XPASS means it is fixed",
)
def test_multi_worker_fit_and_only_the_chief_writes(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    script = os.path.join(HERE, "_multi_worker_fit.py")
    workers = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        env["PYTHONPATH"] = os.path.dirname(HERE)
        workers.append(
            subprocess.Popen(
                [sys.executable, script, "tf", str(tmp_path / f"logs{index}")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for worker in workers:
        try:
            out, _ = worker.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            pytest.fail("multi-worker fit did not finish in 120 s")
        outputs.append((worker.returncode, out))
    for returncode, out in outputs:
        if returncode != 0 and "PerReplica" in out:
            raise KnownKerasBug(out[-500:])
        assert returncode == 0, out[-2000:]
    # Only the chief (worker 0) writes TensorBoard files.
    assert os.listdir(tmp_path / "logs0")
    assert not os.path.exists(tmp_path / "logs1")


# --- JAX: two processes of JAX's distributed runtime on localhost ----------


def _run_jax_workers(tmp_path, num_processes):
    """Runs the workers of `_multi_worker_fit.py`; returns their weights."""
    port = _free_port() if num_processes > 1 else 0
    script = os.path.join(HERE, "_multi_worker_fit.py")
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="")
    env["PYTHONPATH"] = os.path.dirname(HERE)
    workers = []
    for index in range(num_processes):
        args = [str(port), str(index), str(num_processes)]
        args += [str(tmp_path / f"logs{num_processes}_{index}")]
        args += [str(tmp_path / f"weights{num_processes}_{index}.npz")]
        workers.append(
            subprocess.Popen(
                [sys.executable, script, "jax", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for worker in workers:
        try:
            out, _ = worker.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            pytest.fail("a JAX worker did not finish in 240 s")
        assert worker.returncode == 0, out[-3000:]
    return [
        dict(np.load(tmp_path / f"weights{num_processes}_{i}.npz"))
        for i in range(num_processes)
    ]


@pytest.mark.backends("jax")  # It starts JAX processes: one pass is enough.
def test_jax_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    from tests._events import read_events

    first, second = _run_jax_workers(tmp_path, 2)
    [single] = _run_jax_workers(tmp_path, 1)
    assert set(first) == set(second) == set(single)
    for path in first:
        # Both processes hold the same replicated weights...
        np.testing.assert_array_equal(first[path], second[path])
        # ... equal to one process on the full batch, dropout included:
        # the dropout layers draw one mask for the global batch (each
        # process applies its rows of it), as one process would.
        np.testing.assert_allclose(
            first[path], single[path], rtol=1e-5, atol=1e-6, err_msg=path
        )
    # Only process 0 writes TensorBoard events; it logs what it holds.
    assert not os.path.exists(tmp_path / "logs2_1")
    events = read_events(tmp_path / "logs2_0")
    assert [step for step, _, _ in events["weight_norm/global"]] == [2, 4, 6]
    *_, (_, last, _) = events["weight_norm/global"]
    want = np.sqrt(
        sum(np.sum(w.astype(np.float64) ** 2) for w in first.values())
    )
    np.testing.assert_allclose(float(last), want, rtol=1e-5)
