"""Tests for `keras_decay.callbacks.WeightNormLogger`.

Every logged number is read back from the event files and compared with a
NumPy computation on the weights captured at the moment of the log.
"""

import errno
import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402

from keras_decay import WeightDecay  # noqa: E402
from keras_decay._keras_compat import sync_jax_state  # noqa: E402
from keras_decay.callbacks import WeightNormLogger  # noqa: E402
from keras_decay.callbacks._weight_norm_logger import _statistics  # noqa: E402
from tests._events import iter_events  # noqa: E402
from tests._events import read_events  # noqa: E402
from tests._events import scalars  # noqa: E402

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

BACKEND = keras.backend.backend()

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
                {v.path: _numpy(v) for v in self.model.trainable_variables},
            )
        )

    def on_train_begin(self, logs=None):
        self.begin = {v.path: _numpy(v) for v in self.model.trainable_variables}
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.every is not None and self.batches % self.every == 0:
            sync_jax_state(self.model)
            self._grab(_numpy(self.model.optimizer.iterations, int))

    def on_epoch_end(self, epoch, logs=None):
        if self.every is None:
            self._grab(epoch)


def _numpy(variable, dtype=np.float64):
    value = np.array(ops.convert_to_numpy(variable), dtype=dtype)
    return value if value.ndim else dtype(value)


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


def np_statistics(w, last):
    """Every per-variable statistic of `w` after `last`, with NumPy."""
    return {
        "weight_norm": np.linalg.norm(w),
        "weight_l1": np.sum(np.abs(w)),
        "weight_max": np.max(np.abs(w)),
        "update_ratio": np_ratio(w, last),
        "sparsity": np.mean(np.abs(w) < 1e-3),
        "nonfinite": 0.0,
    }


def assert_logged(events, name, expected, index=0, step=None):
    """The `index`-th value of each `<prefix>/<name>` tag is as expected."""
    for prefix, want in expected.items():
        got_step, got = scalars(events, f"{prefix}/{name}")[index]
        assert step is None or got_step == step
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def np_ratio(now, last):
    denominator = np.linalg.norm(last)
    if denominator == 0:
        return 0.0
    return np.linalg.norm(now - last) / denominator


@pytest.fixture(params=["in_place", "device_kernels"])
def reduction(request, monkeypatch):
    """Both ways a large variable is reduced: on a CPU, in place by NumPy
    (the default), and by the backend's kernels (as on an accelerator)."""
    in_place = request.param == "in_place"
    monkeypatch.setattr(_statistics, "CPU_IN_PLACE", in_place)
    return request.param


# d=13108: a 13108 x 5 kernel, more than one host chunk (65,536 entries)
# and more than the size up to which an accelerator's variables are
# fetched to the host.
@pytest.mark.parametrize(
    "d, in_place",
    [(6, True), (13108, True), (13108, False)],
    ids=["small", "large_kernel", "device_kernels"],
)
def test_epoch_logs_match_numpy(tmp_path, monkeypatch, d, in_place):
    monkeypatch.setattr(_statistics, "CPU_IN_PLACE", in_place)
    x, y = make_data(d=d)
    scale = np.sqrt(d / 6.0)  # The same scale of output and loss for any d.
    x, y = x / scale, y / scale
    x[:, :3] = 0.0  # Kernel rows 0-2 then only decay: they stay tiny.
    rate = 0.01
    model = make_model(d=d, regularizer=WeightDecay(rate))
    # Make part of a kernel tiny so that sparsity is neither 0 nor 1.
    kernel = model.layers[0].kernel
    value = ops.convert_to_numpy(kernel).copy()
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
            expected = np_statistics(w, last[path])
            assert_logged(events, path, expected, i, step)
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
        float(sum(ops.convert_to_numpy(v) for v in model.losses)),
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
    expected |= {
        "optimizer/learning_rate",
        "optimizer/momentum",
        "optimizer/weight_decay",  # one key set: 0 without decay
    }
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
    # 4 steps per epoch: the last step of epoch e is 4(e+1) - 1.
    want = [0.01 * 0.5 ** ((4 * (e + 1) - 1) / 3) for e in range(2)]
    np.testing.assert_allclose([v for _, v in lrs], want, rtol=1e-5)
    momentum = scalars(events, "optimizer/momentum")
    assert [s for s, _ in momentum] == [0, 1]
    np.testing.assert_allclose([v for _, v in momentum], 0.8, rtol=1e-6)
    np.testing.assert_allclose(
        [v for _, v in scalars(events, "optimizer/weight_decay")],
        [0.02, 0.02],
        rtol=1e-6,
    )
    # Decoupled decay forgets over tau = 1 / (lr * wd) steps.
    np.testing.assert_allclose(
        [v for _, v in scalars(events, "decay/timescale_steps")],
        [1.0 / (lr * 0.02) for lr in want],
        rtol=1e-5,
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
    weights = [[_numpy(v) for v in model.weights]]
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
        weights.append([_numpy(v) for v in model.weights])
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


def test_group_by_layer_matches_numpy(tmp_path):
    # d=1000: the 1000 x 5 kernel is reduced by the backend's kernel, the
    # bias on the host; the layer's statistics combine both.
    x, y = make_data(d=1000)
    x = x / np.sqrt(1000 / 6.0)
    model = make_model(d=1000)
    kernel = model.layers[0].kernel
    value = _numpy(kernel, np.float32)
    value[:3] = 1e-5  # Sparsity neither 0 nor 1.
    kernel.assign(value)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    logger = WeightNormLogger(
        tmp_path, norms=("l2", "l1", "max"), histograms=True, group_by="layer"
    )
    capture = Capture()
    model.fit(
        x, y, epochs=2, batch_size=16, verbose=0, callbacks=[logger, capture]
    )
    events = read_events(tmp_path)
    layers = {}
    for v in model.trainable_variables:
        layers.setdefault(v.path.rpartition("/")[0], []).append(v.path)
    assert len(layers) == 2
    for tag in events:  # No per-variable tag.
        assert not tag.endswith(("/kernel", "/bias")), tag
    assert {f"weight_norm/{name}" for name in layers} <= set(events)
    last = capture.begin
    for i, (step, weights) in enumerate(capture.snapshots):
        for name, members in layers.items():
            w = np.concatenate([weights[p].ravel() for p in members])
            w_last = np.concatenate([last[p].ravel() for p in members])
            assert_logged(events, name, np_statistics(w, w_last), i, step)
            _, buckets, _ = events[f"weight_histogram/{name}"][i]
            assert buckets[:, 2].sum() == w.size
        last = weights
    sparsity = scalars(events, f"sparsity/{model.layers[0].path}")
    assert 0 < sparsity[0][1] < 1


def test_more_than_2000_tags_warns_once_naming_group_by(tmp_path):
    # 260 Dense(2) layers: 520 variables x 4 statistics + 2 = 2,082 tags;
    # one set per layer is 260 x 4 + 2 = 1,042.
    model = keras.Sequential(
        [keras.Input((2,))] + [keras.layers.Dense(2) for _ in range(260)]
    )
    logger = WeightNormLogger(tmp_path / "a")
    logger.set_model(model)
    with pytest.warns(UserWarning, match='2082 .*group_by="layer" writes 1042'):
        logger.on_train_begin()
    logger.on_train_end()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.on_train_begin()  # Once per logger.
        logger.on_train_end()
        by_layer = WeightNormLogger(tmp_path / "b", group_by="layer")
        by_layer.set_model(model)
        by_layer.on_train_begin()
        by_layer.on_train_end()


def test_bfloat16_variables_match_numpy(tmp_path, reduction):
    # bfloat16 variables, one over the host-reduction size (1000 x 5): the
    # statistics are those of the exact bfloat16 values, in float32.
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((1000,)), keras.layers.Dense(5, dtype="bfloat16")]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    logger = WeightNormLogger(tmp_path, norms=("l2", "l1", "max"))
    logger.set_model(model)
    logger.on_train_begin()
    begin = {v.path: _numpy(v) for v in model.trainable_variables}
    for v in model.trainable_variables:
        v.assign(ops.cast(ops.convert_to_tensor(begin[v.path]) * 1.5, v.dtype))
    logger.on_epoch_end(0)
    logger.on_train_end()
    events = read_events(tmp_path)
    for v in model.trainable_variables:
        expected = np_statistics(_numpy(v), begin[v.path])
        assert_logged(events, v.path, expected, step=0)


def test_lion_constraint_obeys_the_box_bound(tmp_path):
    # Lion, eta = 0.02, lambda = 0.5: timescale 100 steps. Weights drawn
    # outside the box (lambda * max|w_0| = 3.5), fresh random data each
    # step so that gradient signs keep changing; 600 steps, a log every 50.
    eta, lam, steps = 0.02, 0.5, 600
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    rng = np.random.default_rng(3)
    kernel = rng.uniform(-3.0, 3.0, size=(8, 16)).astype("float32") / lam
    kernel[2, 5] = 3.5 / lam
    model.layers[0].kernel.assign(kernel)
    model.compile(keras.optimizers.Lion(eta, weight_decay=lam), "mse")
    x = rng.normal(size=(steps * 8, 8)).astype("float32")
    y = rng.normal(size=(steps * 8, 16)).astype("float32")
    logger = WeightNormLogger(tmp_path, update_freq=50)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[logger])
    events = read_events(tmp_path)
    path = model.layers[0].kernel.path
    logged = scalars(events, f"constraint/{path}")
    assert [s for s, _ in logged] == list(range(50, steps + 1, 50))
    start = lam * np.max(np.abs(kernel))
    np.testing.assert_allclose(start, 3.5)
    for step, value in logged:
        bound = 1 + max(start - 1, 0) * (1 - eta * lam) ** step
        assert value <= bound * (1 + 1e-5), (step, value, bound)
    assert logged[0][1] > 1.5  # Outside the box at first...
    assert logged[-1][1] <= 1.0  # ...inside after 6 timescales.
    # The bias starts at 0, inside the box: it never leaves it.
    bias = scalars(events, f"constraint/{model.layers[0].bias.path}")
    assert all(value <= 1.0 for _, value in bias)
    np.testing.assert_allclose(
        logged[-1][1],
        lam * np.max(np.abs(_numpy(model.layers[0].kernel))),
        rtol=RTOL,
    )


def test_nonfinite_stops_training(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    target = model.layers[1].kernel

    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                value = ops.convert_to_numpy(target).copy()
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


def test_nonfinite_variable_has_every_statistic_nan(tmp_path, reduction):
    # A 1000 x 5 kernel (more than HOST_SIZE entries) holds a NaN, a
    # 5-entry bias (reduced on the host) only an Inf: on every backend every
    # statistic of both says NaN, the counts are exact, the rest is finite.
    model = make_model(d=1000)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    kernel, bias = model.layers[0].kernel, model.layers[0].bias
    logger = WeightNormLogger(
        tmp_path, norms=("l2", "l1", "max"), stop_on_nonfinite=False
    )
    logger.set_model(model)
    logger.on_train_begin()
    value = _numpy(kernel, np.float32)
    value[3, 2] = np.nan
    kernel.assign(value)
    bias.assign(np.array([1.0, -np.inf, 0.0, np.inf, 2.0], "float32"))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        logger.on_epoch_end(0)
    logger.on_train_end()
    events = read_events(tmp_path)
    columns = ["weight_norm", "weight_l1", "weight_max"]
    columns += ["update_ratio", "sparsity"]
    for variable, count in [(kernel, 1.0), (bias, 2.0)]:
        for column in columns:
            [(step, got)] = scalars(events, f"{column}/{variable.path}")
            assert step == 0 and np.isnan(got), (column, variable.path, got)
        assert scalars(events, f"nonfinite/{variable.path}") == [(0, count)]
    assert np.isnan(scalars(events, "weight_norm/global")[0][1])
    w = _numpy(model.layers[1].kernel)
    [(_, got)] = scalars(events, f"weight_max/{model.layers[1].kernel.path}")
    np.testing.assert_allclose(got, np.max(np.abs(w)), rtol=RTOL)
    assert sorted(logger.nonfinite_variables) == sorted(
        [kernel.path, bias.path]
    )


def test_unwritable_log_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [_numpy(v) for v in model.weights]
    with pytest.raises(OSError, match="cannot write TensorBoard logs"):
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[WeightNormLogger(blocker / "logs")],
        )
    assert _numpy(model.optimizer.iterations, int) == 0
    for b, v in zip(before, model.weights):
        np.testing.assert_array_equal(b, _numpy(v))


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
        for event in iter_events(path):
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
        "group_by": "variable",
        "rotation": False,
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
        ({"log_dir": ""}, ValueError, "log_dir=''"),
        ({"group_by": "model"}, ValueError, "group_by='model'"),
        ({"group_by": None}, ValueError, "group_by=None"),
        ({"rotation": 1}, TypeError, "rotation=1"),
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


# The writer is the same on every backend; one pass starts the server (JAX:
# events written without TensorFlow).
@pytest.mark.backends("jax")
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
        deadline = time.monotonic() + 120
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


@pytest.mark.backends("tensorflow", "jax")  # PyTorch runs eagerly: its
# update step would read the float-like momentum below and fail.
def test_optimizer_attribute_objects_are_read(tmp_path):
    x, y = make_data()
    model = make_model()
    optimizer = keras.optimizers.SGD(0.05, momentum=0.5)
    model.compile(optimizer, "mse")
    model.fit(x, y, epochs=1, verbose=0)
    # After the train function is traced, swap the attributes for objects
    # of other kinds: the logger reads their current value at each log.
    optimizer.momentum = _FloatLike(0.25)
    optimizer.weight_decay = keras.Variable(0.125)
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


class _Reader(keras.callbacks.Callback):
    """After each batch, the steps already on disk (the logger runs first)."""

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self.on_disk = []

    def on_train_batch_end(self, batch, logs=None):
        events = read_events(self.log_dir)
        self.on_disk.append(
            [s for s, _ in scalars(events, "weight_norm/global")]
            if "weight_norm/global" in events
            else []
        )


def test_each_log_is_on_disk_before_the_next_step(tmp_path):
    x, y = make_data(n=48)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    reader = _Reader(tmp_path)
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[WeightNormLogger(tmp_path, update_freq=1), reader],
    )
    # Read while `fit` runs, before `on_train_end` closes the file.
    assert reader.on_disk == [[1], [1, 2], [1, 2, 3]]


class _BreakRunFolder(keras.callbacks.Callback):
    """Replaces the run folder with a file for batches 2-3 (0-based)."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_train_batch_begin(self, batch, logs=None):
        import shutil

        if batch == 2:
            shutil.rmtree(self.run_dir)
            with open(self.run_dir, "w") as f:
                f.write("not a folder")
        if batch == 4:
            os.remove(self.run_dir)


def test_write_failure_warns_once_and_logging_resumes(tmp_path):
    x, y = make_data(n=96)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    run_dir = str(tmp_path / "train")
    with pytest.warns(RuntimeWarning) as caught:
        history = model.fit(
            x,
            y,
            batch_size=16,
            epochs=1,
            verbose=0,
            callbacks=[
                _BreakRunFolder(run_dir),
                WeightNormLogger(tmp_path, update_freq=1),
            ],
        )
    messages = [str(w.message) for w in caught]
    failures = [m for m in messages if "could not write" in m]
    assert len(failures) == 1, messages
    assert "WeightNormLogger" in failures[0] and run_dir in failures[0]
    assert len(history.history["loss"]) == 1
    # Steps 3 and 4 were lost; 5 and 6 went to a new file in the new folder.
    steps = [s for s, _ in scalars(read_events(tmp_path), "weight_norm/global")]
    assert steps == [5, 6]
    assert _numpy(model.optimizer.iterations, int) == 6


class _FullDiskFile:
    """A real file on disk whose writes fail as on a full disk."""

    def __init__(self, path):
        self.file = open(path, "wb")

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    flush = write

    def close(self):
        self.file.close()


# "dev_full": the file is /dev/full; "file_on_disk": the event file is
# created, as on a real full disk, and each write to it fails.
@pytest.mark.parametrize("where", ["dev_full", "file_on_disk"])
def test_disk_full_warns_once_and_training_goes_on(
    tmp_path, monkeypatch, where
):
    if where == "dev_full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    from keras_decay.callbacks._weight_norm_logger import _writer

    real_open = _writer._open_file
    full = {"on": False}

    def open_file(path):  # Every write or flush fails with ENOSPC.
        if not full["on"]:
            return real_open(path)
        if where == "dev_full":
            return open("/dev/full", "wb")
        return _FullDiskFile(path)

    monkeypatch.setattr(_writer, "_open_file", open_file)
    logger = WeightNormLogger(tmp_path, update_freq=1)

    class FillDisk(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                full["on"] = True
                os.remove(logger.event_file)  # The logger opens a new file.
            if batch == 4:
                full["on"] = False

    x, y = make_data(n=96)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    with pytest.warns(RuntimeWarning, match="No space left") as caught:
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=1,
            verbose=0,
            callbacks=[FillDisk(), logger],
        )
    assert len([w for w in caught if "could not write" in str(w.message)]) == 1
    steps = [s for s, _ in scalars(read_events(tmp_path), "weight_norm/global")]
    assert steps == [5, 6]  # 1 was in the removed file, 2-4 hit ENOSPC.
    # Each of the 3 failed logs opened a new file: none is left behind.
    files = glob.glob(os.path.join(tmp_path, "train", "events.*"))
    assert len(files) == 1, files


_HOLD_RUN_FOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("w", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
writer = module.EventWriter(sys.argv[2], "other")
writer.open()
print("ready", flush=True)
sys.stdin.read()
"""


def test_second_process_on_the_run_folder_is_detected(tmp_path):
    import keras_decay.callbacks._weight_norm_logger._writer as writer_module

    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _HOLD_RUN_FOLDER,
            writer_module.__file__,
            str(tmp_path / "train"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "ready"
        x, y = make_data()
        model = make_model()
        model.compile(keras.optimizers.SGD(0.05), "mse")
        with pytest.warns(RuntimeWarning, match="already writing") as caught:
            model.fit(
                x,
                y,
                epochs=1,
                verbose=0,
                callbacks=[WeightNormLogger(tmp_path)],
            )
        assert f"process {other.pid}" in str(caught[0].message)
    finally:
        other.communicate("", timeout=30)
    runs = sorted(os.listdir(tmp_path))
    [distinct] = [r for r in runs if r != "train"]
    assert distinct.startswith("train-") and distinct.endswith(str(os.getpid()))
    assert "weight_norm/global" in read_events(tmp_path, distinct)
    assert "weight_norm/global" not in read_events(tmp_path)


def test_logs_the_values_the_logged_step_used(tmp_path):
    x, y = make_data(n=64)
    model = make_model()
    # The learning rate of step t is 0.1 / (1 + t).
    schedule = keras.optimizers.schedules.InverseTimeDecay(0.1, 1, 1.0)
    optimizer = keras.optimizers.SGD(schedule, weight_decay=0.5)
    model.compile(optimizer, "mse")
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[
            WeightNormLogger(tmp_path / "batch", update_freq=2),
            WeightNormLogger(tmp_path / "epoch"),
        ],
    )
    batch = scalars(read_events(tmp_path / "batch"), "optimizer/learning_rate")
    # Logged at iterations 2, 4, 6, 8: the step just taken was iterations-1.
    assert [s for s, _ in batch] == [2, 4, 6, 8]
    np.testing.assert_allclose(
        [v for _, v in batch], [0.1 / s for s in (2, 4, 6, 8)], rtol=1e-6
    )
    # The timescale of the same step: tau = 1 / (lr * wd).
    tau = scalars(read_events(tmp_path / "batch"), "decay/timescale_steps")
    assert [s for s, _ in tau] == [2, 4, 6, 8]
    np.testing.assert_allclose(
        [v for _, v in tau], [s / (0.1 * 0.5) for s in (2, 4, 6, 8)], rtol=1e-5
    )
    epoch = scalars(read_events(tmp_path / "epoch"), "optimizer/learning_rate")
    np.testing.assert_allclose(
        [v for _, v in epoch], [0.1 / 4, 0.1 / 8], rtol=1e-6
    )
    assert "optimizer/momentum" in read_events(tmp_path / "epoch")


_NO_TENSORFLOW = """
import sys
import keras
import numpy as np
from keras_decay.callbacks import WeightNormLogger
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
model.compile(keras.optimizers.SGD(0.1), "mse")
logger = WeightNormLogger(
    sys.argv[1], update_freq=1, histograms=True, hparams={"units": 2}
)
model.fit(np.ones((8, 3)), np.ones((8, 2)), verbose=0, callbacks=[logger])
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
print("ok")
"""


@pytest.mark.backends("jax", "torch")  # TensorFlow's own pass imports it.
def test_writes_events_without_importing_tensorflow(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", _NO_TENSORFLOW, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = read_events(tmp_path)
    assert "_hparams_/session_start_info" in events
    assert len(events["weight_norm/global"]) == 1
    [(_, buckets, plugin)] = events["weight_histogram/sequential/dense/kernel"]
    assert plugin == "histograms" and buckets[:, 2].sum() == 6


def test_numpy_scalars_are_accepted_as_hparams():
    logger = WeightNormLogger(
        hparams={"flag": np.True_, "units": np.int64(3), "lr": np.float32(0.5)}
    )
    assert logger.hparams == {"flag": True, "units": 3, "lr": 0.5}
    assert type(logger.hparams["flag"]) is bool
    assert type(logger.hparams["units"]) is int


# -- rotation=True ----------------------------------------------------------


def np_mean_angle(w, previous):
    """Mean over output units (last axis) of arccos(clip(cos)), float64."""
    w = np.reshape(np.asarray(w, np.float64), (-1, np.shape(w)[-1]))
    p = np.reshape(np.asarray(previous, np.float64), w.shape)
    cos = np.sum(w * p, 0) / (
        np.linalg.norm(w, axis=0) * np.linalg.norm(p, axis=0)
    )
    return np.mean(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_unit_angles_of_a_hand_made_rotation():
    from keras_decay.callbacks._weight_norm_logger import _rotation

    # Unit j of `p` is unit j of `w` turned by theta[j] in the plane of two
    # orthonormal vectors, then scaled: its angle is theta[j] exactly.
    rng = np.random.default_rng(0)
    theta = np.array([1e-4, 3e-3, 0.3, 1.5, 3.0])
    w = np.zeros((6, len(theta)))
    p = np.zeros_like(w)
    for j, t in enumerate(theta):
        (e1, e2) = np.linalg.qr(rng.normal(size=(6, 2)))[0].T
        w[:, j] = 2.0 * e1
        p[:, j] = 0.5 * (np.cos(t) * e1 + np.sin(t) * e2)
    w = w.reshape(2, 3, len(theta))  # ndim 3: the last axis is the unit.
    p = p.reshape(w.shape)
    chords, norms = _rotation._unit_chords(
        ops.convert_to_tensor(w, "float32"), ops.convert_to_tensor(p, "float32")
    )
    angles = _rotation.unit_angles(ops.convert_to_numpy(chords))
    # float32 inputs: about 1e-7 of a radian, small angles included.
    np.testing.assert_allclose(angles, theta, rtol=1e-4, atol=3e-7)
    np.testing.assert_allclose(ops.convert_to_numpy(norms), 1.0, rtol=1e-6)
    assert np.isclose(np_mean_angle(w, p), theta.mean(), rtol=1e-12)


class CaptureSteps(keras.callbacks.Callback):
    """Records the trainable weights before the first step and after each."""

    def on_train_begin(self, logs=None):
        self.after = [
            {v.path: _numpy(v) for v in self.model.trainable_variables}
        ]

    def on_train_batch_end(self, batch, logs=None):
        sync_jax_state(self.model)
        self.after.append(
            {v.path: _numpy(v) for v in self.model.trainable_variables}
        )


@pytest.mark.parametrize("update_freq", [2, "epoch"])
def test_rotation_is_the_angle_of_the_logged_step(tmp_path, update_freq):
    # 4 steps an epoch, 2 epochs; logs at steps 2, 4, 6, 8 or at the epoch
    # ends (steps 4 and 8): each is the angle between the weights after
    # that step and after the one before.
    x, y = make_data(n=64)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.5), "mse")
    logger = WeightNormLogger(tmp_path, update_freq=update_freq, rotation=True)
    capture = CaptureSteps()
    model.fit(
        x, y, batch_size=16, epochs=2, verbose=0, callbacks=[logger, capture]
    )
    events = read_events(tmp_path)
    steps = [2, 4, 6, 8] if update_freq == 2 else [4, 8]
    kernels = [v.path for v in model.trainable_variables if v.ndim > 1]
    for path in kernels:
        logged = scalars(events, f"rotation/{path}")
        assert len(logged) == len(steps)
        for (_, got), t in zip(logged, steps):
            want = np_mean_angle(
                capture.after[t][path], capture.after[t - 1][path]
            )
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    assert not [t for t in events if t.startswith("rotation") and "bias" in t]
    # No decay: no equilibrium.
    assert not [t for t in events if t.startswith("rotation_equilibrium")]


def test_rotation_group_by_layer_is_the_mean_over_its_units(tmp_path):
    # A SimpleRNN holds two matrices: a 4 x 3 kernel and a 3 x 3 recurrent
    # kernel; the layer's angle is the mean over their 6 units.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2, 4)).astype("float32")
    y = rng.normal(size=(32, 3)).astype("float32")
    keras.utils.set_random_seed(1)
    layer = keras.layers.SimpleRNN(3)
    model = keras.Sequential([keras.Input((2, 4)), layer])
    model.compile(keras.optimizers.AdamW(0.01, weight_decay=0.1), "mse")
    logger = WeightNormLogger(
        tmp_path, update_freq=2, rotation=True, group_by="layer"
    )
    capture = CaptureSteps()
    model.fit(x, y, batch_size=16, verbose=0, callbacks=[logger, capture])
    events = read_events(tmp_path)
    name = layer.cell.kernel.path.rpartition("/")[0]  # The cell's path.
    ((_, got),) = scalars(events, f"rotation/{name}")
    angles = []
    for v in (layer.cell.kernel, layer.cell.recurrent_kernel):
        now, before = capture.after[2][v.path], capture.after[1][v.path]
        angles.append(np_mean_angle(now, before) * now.shape[-1])
    np.testing.assert_allclose(got, sum(angles) / 6, rtol=1e-4, atol=1e-7)
    ((_, predicted),) = scalars(events, f"rotation_equilibrium/{name}")
    np.testing.assert_allclose(
        predicted, np.sqrt(2 * 0.01 * 0.1 * 0.1 / 1.9), rtol=1e-5
    )


def _formula_cases():
    from keras_decay import optimizers as kd

    adamw = np.sqrt(2 * 0.01 * 0.1 * (1 - 0.9) / (1 + 0.9))
    # Independent mode at a constant rate: c = lr / eta_max = 1.
    independent = np.sqrt(2 * 0.001 * (1 - 0.9) / (1 + 0.9))
    # SGD, momentum 0.9, decoupled 1e-3 on both kernels, coupled L2 on the
    # first (keras.regularizers.L2(1e-3): gradient 2e-3 * w).
    sgd_first = np.sqrt(2 * (0.1 * 1e-3 * 0.1 + 0.1 * 2e-3) / 1.9)
    sgd_second = np.sqrt(2 * (0.1 * 1e-3 * 0.1) / 1.9)
    spread = (1 - 0.9) ** 2 + 0.9**2 * (1 - 0.99) / (1 + 0.99)
    lion = np.sqrt(np.pi / 2) * np.sqrt(2 * 1e-3 * 0.5) * np.sqrt(spread)
    l2 = keras.regularizers.L2(1e-3)
    return {
        "keras AdamW": (
            lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
            None,
            [adamw, adamw],
        ),
        "AdamW independent": (
            lambda: kd.AdamW(
                0.01, weight_decay=0.001, weight_decay_mode="independent"
            ),
            None,
            [independent, independent],
        ),
        "SGD decoupled and L2": (
            lambda: kd.SGD(0.1, momentum=0.9, weight_decay=1e-3),
            l2,
            [sgd_first, sgd_second],
        ),
        "Lion": (
            lambda: keras.optimizers.Lion(1e-3, weight_decay=0.5),
            None,
            [lion, lion],
        ),
        # No formula: Nadam; Adam's coupled L2 (and no decay at all on the
        # second kernel); Nesterov momentum.
        "Nadam": (
            lambda: keras.optimizers.Nadam(0.01, weight_decay=0.1),
            None,
            [None, None],
        ),
        "Adam with L2": (lambda: keras.optimizers.Adam(0.01), l2, [None, None]),
        "SGD Nesterov": (
            lambda: keras.optimizers.SGD(
                0.1, momentum=0.9, nesterov=True, weight_decay=1e-3
            ),
            None,
            [None, None],
        ),
    }


@pytest.mark.parametrize("case", list(_formula_cases()))
def test_rotation_equilibrium_formulas(tmp_path, case):
    make_optimizer, regularizer, expected = _formula_cases()[case]
    x, y = make_data(n=32)
    model = make_model(regularizer=regularizer)
    model.compile(make_optimizer(), "mse")
    logger = WeightNormLogger(tmp_path, update_freq=1, rotation=True)
    model.fit(x, y, batch_size=16, verbose=0, callbacks=[logger])
    events = read_events(tmp_path)
    for layer, want in zip(model.layers, expected):
        assert f"rotation/{layer.kernel.path}" in events
        tag = f"rotation_equilibrium/{layer.kernel.path}"
        if want is None:
            assert tag not in events
        else:
            got = [v for _, v in scalars(events, tag)]
            np.testing.assert_allclose(got, [want, want], rtol=1e-5)


def test_rotation_refuses_steps_per_execution_and_warns_on_a_gap(tmp_path):
    x, y = make_data(n=32)
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), "mse", steps_per_execution=2)
    logger = WeightNormLogger(tmp_path, update_freq=1, rotation=True)
    with pytest.raises(ValueError, match="steps_per_execution=2"):
        model.fit(x, y, batch_size=8, verbose=0, callbacks=[logger])
    # Gradient accumulation: a batch that applies no update is not a step.
    model = make_model()
    optimizer = keras.optimizers.SGD(0.1, gradient_accumulation_steps=2)
    model.compile(optimizer, "mse")
    logger = WeightNormLogger(tmp_path / "acc", update_freq=1, rotation=True)
    with pytest.warns(RuntimeWarning, match="rotation/ left out"):
        model.fit(x, y, batch_size=8, verbose=0, callbacks=[logger])
    events = read_events(tmp_path / "acc")
    path = model.layers[0].kernel.path
    # Logged after the batches that applied an update (iterations 1, 2).
    assert [s for s, _ in scalars(events, f"rotation/{path}")] == [1, 2]
    assert len(scalars(events, f"weight_norm/{path}")) == 4


def test_adamw_reaches_the_rotational_equilibrium(tmp_path):
    # Kosson et al. 2024: a scale-invariant first layer (Dense without bias,
    # then LayerNormalization without center and scale) under AdamW, eta =
    # 1e-2, lambda = 0.1 (tau = 1,000 steps), on fresh random samples with
    # random targets (nothing to memorise: the gradient stays noise). The
    # first kernel starts small. Logged per step over the first 50 steps,
    # every 10 steps over the last timescale (steps 3,000-4,000).
    eta, lam, batch, d = 1e-2, 0.1, 32, 64
    keras.utils.set_random_seed(0)
    first = keras.layers.Dense(64, use_bias=False)
    model = keras.Sequential(
        [
            keras.Input((d,)),
            first,
            keras.layers.LayerNormalization(center=False, scale=False),
            keras.layers.ReLU(),
            keras.layers.Dense(1),
        ]
    )
    first.kernel.assign(0.01 * _numpy(first.kernel, np.float32))
    model.compile(keras.optimizers.AdamW(eta, weight_decay=lam), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000 * batch, d)).astype("float32")
    y = rng.normal(size=(4000 * batch, 1)).astype("float32")
    fit = dict(batch_size=batch, epochs=1, verbose=0, shuffle=False)
    parts = [(0, 50, 1), (50, 3000, None), (3000, 4000, 10)]
    for begin, end, every in parts:
        callbacks = []
        if every is not None:
            callbacks = [
                WeightNormLogger(tmp_path, update_freq=every, rotation=True)
            ]
        rows = slice(begin * batch, end * batch)
        model.fit(x[rows], y[rows], callbacks=callbacks, **fit)
    events = read_events(tmp_path)
    angles = scalars(events, f"rotation/{first.kernel.path}")
    predicted = scalars(events, f"rotation_equilibrium/{first.kernel.path}")
    steps = np.array([s for s, _ in angles])
    angle = np.array([v for _, v in angles])
    assert list(steps) == list(range(1, 51)) + list(range(3010, 4001, 10))
    want = np.sqrt(2 * eta * lam * (1 - 0.9) / (1 + 0.9))
    np.testing.assert_allclose([v for _, v in predicted], want, rtol=1e-5)
    assert np.mean(angle[steps <= 50]) / want > 2.0
    np.testing.assert_allclose(np.mean(angle[steps > 3000]), want, rtol=0.15)


# -- cautious weight decay --------------------------------------------------


@pytest.mark.parametrize(
    "cautious, warm", [(True, False), (True, True), (False, False)]
)
def test_cautious_fraction_matches_numpy(tmp_path, cautious, warm):
    from keras_decay import optimizers

    # A linear model without bias, MSE, plain SGD: u = g, the mean-squared
    # error's gradient 2 / (batch * outputs) * x.T @ (x @ w - y); decayed
    # where g * w >= 0 (w: the weight before the step).
    x, y = make_data(n=32, d=6)
    y = np.concatenate([y, -2.0 * y], axis=1)
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(2, use_bias=False)]
    )
    optimizer = optimizers.SGD(
        0.05, weight_decay=0.5, cautious_weight_decay=cautious
    )
    model.compile(optimizer, "mse")
    if warm:  # A step traced without counting: the logger rebuilds it.
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        assert optimizer.cautious_fraction is None
    logger = WeightNormLogger(tmp_path, update_freq=1)
    capture = CaptureSteps()
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[logger, capture],
    )
    events = read_events(tmp_path)
    if not cautious:
        assert "decay/cautious_fraction" not in events
        return
    path = model.layers[0].kernel.path
    logged = scalars(events, "decay/cautious_fraction")
    first = 3 if warm else 1  # One epoch (2 steps) before the logged fit.
    assert [s for s, _ in logged] == list(range(first, first + 4))
    assert optimizer.track_cautious_fraction
    fractions = []
    for t, (_, got) in enumerate(logged):
        w = capture.after[t][path]
        rows = slice((t % 2) * 16, (t % 2 + 1) * 16)
        xb, yb = x[rows].astype(np.float64), y[rows]
        g = 2.0 / (16 * 2) * xb.T @ (xb @ w - yb)
        assert np.min(np.abs(g * w)) > 1e-6  # No sign near a tie.
        fractions.append(np.mean(g * w >= 0))
        np.testing.assert_allclose(got, fractions[-1], rtol=1e-7)
    assert 0 < min(fractions) and max(fractions) < 1
