"""Tests for `keras_decay.callbacks.WeightNormLogger`.

Every logged number is read back from the event files and compared with a
NumPy computation on the weights captured at the moment of the log.
"""

import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_decay import WeightDecay  # noqa: E402
from keras_decay.callbacks import WeightNormLogger  # noqa: E402
from tests._events import read_events  # noqa: E402
from tests._events import scalars  # noqa: E402

# TensorFlow backend only: the logger writes TensorBoard summaries.
pytestmark = pytest.mark.tensorflow_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-5
ATOL = 1e-6


class Capture(keras.callbacks.Callback):
    """Records {path: ndarray} at train begin and at each log point."""

    def __init__(self, every=None):
        super().__init__()
        self.every = every
        self.snapshots = []  # (step, {path: value})

    def _grab(self, step):
        self.snapshots.append(
            (
                step,
                {
                    v.path: np.array(v.numpy(), dtype=np.float64)
                    for v in self.model.trainable_variables
                },
            )
        )

    def on_train_begin(self, logs=None):
        self.begin = {
            v.path: np.array(v.numpy(), dtype=np.float64)
            for v in self.model.trainable_variables
        }
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.every is not None and self.batches % self.every == 0:
            self._grab(int(self.model.optimizer.iterations.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        if self.every is None:
            self._grab(epoch)


def make_data(n=64, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1))).astype("float32")
    return x, y


def make_model(d=6, regularizer=None):
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(5, kernel_regularizer=regularizer),
            keras.layers.Dense(1),
        ]
    )


def np_ratio(now, last):
    denominator = np.linalg.norm(last)
    if denominator == 0:
        return 0.0
    return np.linalg.norm(now - last) / denominator


def test_epoch_logs_match_numpy(tmp_path):
    x, y = make_data()
    x[:, :3] = 0.0  # Kernel rows 0-2 then only decay: they stay tiny.
    rate = 0.01
    model = make_model(regularizer=WeightDecay(rate))
    # Make part of a kernel tiny so that sparsity is neither 0 nor 1.
    kernel = model.layers[0].kernel
    value = kernel.numpy()
    value[:3] = 1e-5
    kernel.assign(value)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.5), "mse")
    logger = WeightNormLogger(tmp_path, norms=("l2", "l1", "max"))
    capture = Capture()
    model.fit(
        x, y, epochs=3, batch_size=16, verbose=0, callbacks=[logger, capture]
    )
    events = read_events(tmp_path)
    last = capture.begin
    assert [s for s, _ in capture.snapshots] == [0, 1, 2]
    for i, (step, weights) in enumerate(capture.snapshots):
        for path, w in weights.items():
            expected = {
                "weight_norm": np.linalg.norm(w),
                "weight_l1": np.sum(np.abs(w)),
                "weight_max": np.max(np.abs(w)),
                "update_ratio": np_ratio(w, last[path]),
                "sparsity": np.mean(np.abs(w) < 1e-3),
                "nonfinite": 0.0,
            }
            for prefix, want in expected.items():
                got_step, got = scalars(events, f"{prefix}/{path}")[i]
                assert got_step == step
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        global_norm = np.sqrt(sum(np.sum(w**2) for w in weights.values()))
        kernel_path = model.layers[0].kernel.path
        penalty = rate / 2 * np.sum(weights[kernel_path] ** 2)
        for tag, want in [
            ("weight_norm/global", global_norm),
            ("regularization/loss", penalty),
            ("optimizer/learning_rate", 0.01),
            ("optimizer/momentum", 0.5),
        ]:
            got_step, got = scalars(events, tag)[i]
            assert got_step == step
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        last = weights
    sparsity = scalars(events, f"sparsity/{kernel_path}")
    assert 0 < sparsity[0][1] < 1
    # regularization/loss is what model.losses sums to at the last log.
    np.testing.assert_allclose(
        scalars(events, "regularization/loss")[-1][1],
        float(sum(model.losses)),
        rtol=RTOL,
    )


def test_exact_tag_set_and_shared_log_dir(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=32,
        verbose=0,
        callbacks=[
            WeightNormLogger(tmp_path),
            keras.callbacks.TensorBoard(tmp_path, write_graph=False),
        ],
    )
    paths = [v.path for v in model.trainable_variables]
    expected = {"weight_norm/global", "regularization/loss"}
    expected |= {"optimizer/learning_rate", "optimizer/momentum"}
    for prefix in ("weight_norm", "update_ratio", "sparsity", "nonfinite"):
        expected |= {f"{prefix}/{p}" for p in paths}
    keras_tags = {"epoch_loss", "epoch_learning_rate"}
    assert set(read_events(tmp_path)) == expected | keras_tags


def test_adam_schedule_and_weight_decay(tmp_path):
    x, y = make_data()
    model = make_model()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 3, 0.5)
    model.compile(
        keras.optimizers.Adam(schedule, beta_1=0.8, weight_decay=0.02), "mse"
    )
    model.fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[WeightNormLogger(tmp_path)],
    )
    events = read_events(tmp_path)
    lrs = scalars(events, "optimizer/learning_rate")
    # 4 steps per epoch: the rate after epoch e is 0.01 * 0.5**(4(e+1)/3).
    want = [0.01 * 0.5 ** (4 * (e + 1) / 3) for e in range(2)]
    np.testing.assert_allclose([v for _, v in lrs], want, rtol=1e-5)
    momentum = scalars(events, "optimizer/momentum")
    assert [s for s, _ in momentum] == [0, 1]
    np.testing.assert_allclose([v for _, v in momentum], 0.8, rtol=1e-6)
    np.testing.assert_allclose(
        [v for _, v in scalars(events, "optimizer/weight_decay")],
        [0.02, 0.02],
        rtol=1e-6,
    )


def test_integer_update_freq_uses_iterations(tmp_path):
    x, y = make_data(n=80)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    logger = WeightNormLogger(tmp_path, update_freq=3)
    capture = Capture(every=3)
    model.fit(
        x, y, epochs=2, batch_size=16, verbose=0, callbacks=[logger, capture]
    )
    events = read_events(tmp_path)
    # 5 batches per epoch, 10 in all: logs after batches 3, 6, 9.
    assert [s for s, _ in capture.snapshots] == [3, 6, 9]
    last = capture.begin
    for i, (step, weights) in enumerate(capture.snapshots):
        for path, w in weights.items():
            got_step, got = scalars(events, f"weight_norm/{path}")[i]
            assert got_step == step
            np.testing.assert_allclose(
                got, np.linalg.norm(w), rtol=RTOL, atol=ATOL
            )
            _, ratio = scalars(events, f"update_ratio/{path}")[i]
            np.testing.assert_allclose(
                ratio, np_ratio(w, last[path]), rtol=1e-4, atol=ATOL
            )
        last = weights
    assert len(events["weight_norm/global"]) == 3


def test_one_epoch_fits_continue_update_ratio(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    logger = WeightNormLogger(tmp_path)
    weights = [[v.numpy().astype(np.float64) for v in model.weights]]
    for epoch in range(2):
        model.fit(
            x,
            y,
            initial_epoch=epoch,
            epochs=epoch + 1,
            batch_size=16,
            verbose=0,
            callbacks=[logger],
        )
        weights.append([v.numpy().astype(np.float64) for v in model.weights])
    events = read_events(tmp_path)
    for i, v in enumerate(model.weights):
        ratios = scalars(events, f"update_ratio/{v.path}")
        assert [s for s, _ in ratios] == [0, 1]
        want = [np_ratio(weights[e + 1][i], weights[e][i]) for e in range(2)]
        np.testing.assert_allclose(
            [r for _, r in ratios], want, rtol=1e-4, atol=ATOL
        )


def test_histograms(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    capture = Capture()
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[WeightNormLogger(tmp_path, histograms=True), capture],
    )
    events = read_events(tmp_path)
    weights = capture.snapshots[0][1]
    for path, w in weights.items():
        [(step, buckets, plugin)] = events[f"weight_histogram/{path}"]
        assert step == 0 and plugin == "histograms"
        assert buckets.shape == (30, 3)
        assert buckets[:, 2].sum() == w.size
        if w.min() == w.max():
            continue
        np.testing.assert_allclose(buckets[0, 0], w.min(), rtol=1e-6)
        np.testing.assert_allclose(buckets[-1, 1], w.max(), rtol=1e-6)
        counts, _ = np.histogram(w, bins=30, range=(w.min(), w.max()))
        # Entries on a bucket edge may fall either side in float32.
        np.testing.assert_allclose(buckets[:, 2], counts, atol=1)


def test_nonfinite_stops_training(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    target = model.layers[1].kernel

    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                value = target.numpy()
                value[0, 0] = np.nan
                value[1, 0] = np.inf
                target.assign(value)

    with pytest.warns(RuntimeWarning, match=re.escape(target.path)):
        history = model.fit(
            x,
            y,
            epochs=5,
            batch_size=32,
            verbose=0,
            callbacks=[Poison(), WeightNormLogger(tmp_path)],
        )
    assert len(history.history["loss"]) == 2
    events = read_events(tmp_path)
    assert scalars(events, f"nonfinite/{target.path}") == [(0, 0.0), (1, 2.0)]
    other = model.layers[0].kernel.path
    assert scalars(events, f"nonfinite/{other}")[-1] == (1, 0.0)


def test_nonfinite_without_stop_continues(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.layers[0].bias.assign(np.full(5, np.nan, "float32"))
    logger = WeightNormLogger(tmp_path, stop_on_nonfinite=False)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        history = model.fit(
            x, y, epochs=2, batch_size=32, verbose=0, callbacks=[logger]
        )
    assert len(history.history["loss"]) == 2
    # The NaN spreads to the other variables during training.
    assert model.layers[0].bias.path in logger.nonfinite_variables


def test_unwritable_log_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(OSError, match="cannot write TensorBoard logs"):
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[WeightNormLogger(blocker / "logs")],
        )
    assert int(model.optimizer.iterations.numpy()) == 0
    for b, v in zip(before, model.weights):
        np.testing.assert_array_equal(b, v.numpy())


def test_hparams_written_once(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    hparams = {"decay": 5e-4, "dropout": True, "optimizer": "sgd", "units": 5}
    logger = WeightNormLogger(tmp_path, hparams=hparams)
    for _ in range(2):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    events = read_events(tmp_path)
    [(_, _, plugin)] = events["_hparams_/session_start_info"]
    assert plugin == "hparams"
    found = []
    for path in glob.glob(os.path.join(tmp_path, "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    found.append(data.session_start_info.hparams)
    [stored] = found
    assert stored["decay"].number_value == pytest.approx(5e-4)
    assert stored["dropout"].bool_value is True
    assert stored["optimizer"].string_value == "sgd"
    assert stored["units"].number_value == 5


def test_config_round_trip_and_validation():
    logger = WeightNormLogger(
        "d", update_freq=10, norms=["max", "l2"], hparams={"a": 1}
    )
    config = logger.get_config()
    assert config == {
        "log_dir": "d",
        "update_freq": 10,
        "norms": ["l2", "max"],
        "histograms": False,
        "hparams": {"a": 1},
        "stop_on_nonfinite": True,
    }
    assert json.loads(json.dumps(config)) == config
    assert WeightNormLogger.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(logger)
    )
    assert isinstance(restored, WeightNormLogger)
    assert restored.get_config() == config
    cases = [
        ({"update_freq": 0}, ValueError, "update_freq=0"),
        ({"update_freq": "step"}, ValueError, "update_freq='step'"),
        ({"update_freq": 2.5}, TypeError, "update_freq=2.5"),
        ({"norms": "l2"}, TypeError, "norms='l2'"),
        ({"norms": ()}, ValueError, "norms=()"),
        ({"norms": ("l3",)}, ValueError, "norms=('l3',)"),
        ({"histograms": 1}, TypeError, "histograms=1"),
        ({"hparams": {"a": [1]}}, TypeError, "hparams="),
        ({"hparams": [("a", 1)]}, TypeError, "hparams="),
        ({"stop_on_nonfinite": None}, TypeError, "stop_on_nonfinite=None"),
        ({"log_dir": 3}, TypeError, "log_dir=3"),
    ]
    for kwargs, error, received in cases:
        with pytest.raises(error, match=re.escape(f"Received: {received}")):
            WeightNormLogger(**kwargs)


def _tensorboard_executable():
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if not os.path.exists(exe):
        pytest.skip("no tensorboard executable next to the Python interpreter")
    return exe


def _get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def test_tensorboard_server_serves_logged_scalars(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[WeightNormLogger(tmp_path)],
    )
    logged = scalars(read_events(tmp_path), "weight_norm/global")
    server = subprocess.Popen(
        [
            _tensorboard_executable(),
            "--logdir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            match = re.search(r"(http://127\.0\.0\.1:\d+)/?", line)
            if match:
                url = match.group(1)
        assert url, "tensorboard did not print its URL"
        tags, deadline = {}, time.monotonic() + 60
        while time.monotonic() < deadline:
            tags = _get_json(url + "/data/plugin/scalars/tags")
            if "weight_norm/global" in tags.get("train", {}):
                break
            time.sleep(0.5)
        assert "weight_norm/global" in tags["train"]
        query = urllib.parse.urlencode(
            {"run": "train", "tag": "weight_norm/global"}
        )
        rows = _get_json(url + "/data/plugin/scalars/scalars?" + query)
        assert [int(step) for _, step, _ in rows] == [s for s, _ in logged]
        np.testing.assert_allclose(
            [value for _, _, value in rows],
            [v for _, v in logged],
            rtol=1e-6,
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


class _FloatLike:
    """A hyperparameter object that only converts through `float()`."""

    def __init__(self, value):
        self.value = value

    def __float__(self):
        return self.value


def test_optimizer_attribute_objects_are_read(tmp_path):
    x, y = make_data()
    model = make_model()
    optimizer = keras.optimizers.SGD(0.05, momentum=0.5)
    model.compile(optimizer, "mse")
    model.fit(x, y, epochs=1, verbose=0)
    # After the train function is traced, swap the attributes for objects
    # of other kinds: the logger reads their current value at each log.
    optimizer.momentum = _FloatLike(0.25)
    optimizer.weight_decay = tf.Variable(0.125)
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=32,
        verbose=0,
        callbacks=[WeightNormLogger(tmp_path)],
    )
    events = read_events(tmp_path)
    assert scalars(events, "optimizer/momentum") == [(0, 0.25)]
    assert scalars(events, "optimizer/weight_decay") == [(0, 0.125)]
