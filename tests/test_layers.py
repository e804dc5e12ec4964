"""Tests for keras_decay.layers: statistics checked against NumPy."""

import os
import signal
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import keras
import numpy as np
import pytest
from keras import ops

from keras_decay.layers import ClassicDropout
from keras_decay.layers import DropBlock2D
from keras_decay.layers import DropConnectDense
from keras_decay.layers import DropPath
from keras_decay.layers import drop_block_2d
from keras_decay.layers import stochastic_depth_rates
from tests._platform import channels_first_param

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions


def _np(x):
    return ops.convert_to_numpy(x)


def _to_channels_last(y, data_format):
    return y if data_format == "channels_last" else np.moveaxis(y, 1, -1)


def _from_channels_last(x, data_format):
    return x if data_format == "channels_last" else np.moveaxis(x, -1, 1)


def _expected_drop_fraction(rate, height, width, bh, bw):
    """Independent NumPy version of DropBlock's expected dropped fraction."""
    bh, bw = min(bh, height), min(bw, width)
    vh, vw = height - bh + 1, width - bw + 1
    gamma = rate / (bh * bw) * (height * width) / (vh * vw)
    # n[i, j]: number of valid top-left seeds whose block covers (i, j).
    rows = np.array(
        [min(i, vh - 1) - max(0, i - bh + 1) + 1 for i in range(height)]
    )
    cols = np.array(
        [min(j, vw - 1) - max(0, j - bw + 1) + 1 for j in range(width)]
    )
    n = rows[:, None] * cols[None, :]
    return float(np.mean(1.0 - (1.0 - gamma) ** n))


def _is_union_of_blocks(dropped, bh, bw):
    """True iff the 2D boolean map is a union of in-bounds bh x bw blocks."""
    height, width = dropped.shape
    bh, bw = min(bh, height), min(bw, width)
    covered = np.zeros_like(dropped)
    for i in range(height - bh + 1):
        for j in range(width - bw + 1):
            if dropped[i : i + bh, j : j + bw].all():
                covered[i : i + bh, j : j + bw] = True
    return np.array_equal(covered, dropped)


# --------------------------------------------------------------------------
# ClassicDropout


def test_classic_dropout_fraction_and_no_rescale():
    x = np.random.default_rng(0).uniform(1, 2, (200, 500)).astype("float32")
    y = _np(ClassicDropout(0.3, seed=1)(x, training=True))
    dropped = y == 0
    # 100k Bernoulli(0.3) draws: std 0.0014; tolerance 0.01 (~7 std).
    assert abs(dropped.mean() - 0.3) < 0.01
    # Kept units are passed through unscaled.
    np.testing.assert_array_equal(y[~dropped], x[~dropped])
    # Kept mean: E[y] = (1 - rate) * E[x]; tolerance 2% relative.
    np.testing.assert_allclose(y.mean(), 0.7 * x.mean(), rtol=0.02)


def test_classic_dropout_inference_scales_by_keep_probability():
    x = np.random.default_rng(1).normal(size=(3, 7)).astype("float32")
    layer = ClassicDropout(0.25, seed=0)
    np.testing.assert_allclose(_np(layer(x)), 0.75 * x, rtol=1e-6)
    np.testing.assert_allclose(
        _np(layer(x, training=False)), 0.75 * x, rtol=1e-6
    )


def test_classic_dropout_noise_shape_shares_mask():
    x = np.ones((4, 6, 50), "float32")
    y = _np(
        ClassicDropout(0.5, noise_shape=(None, 1, None), seed=3)(
            x, training=True
        )
    )
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
    assert 0.3 < (y == 0).mean() < 0.7


# --------------------------------------------------------------------------
# DropBlock2D


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("block_size", [(3, 2), (4, 4), 1, (1, 5)])
def test_drop_block_structure_non_square(data_format, block_size):
    shape = (6, 13, 9, 4)  # (batch, H, W, C), H != W
    x = _from_channels_last(np.ones(shape, "float32"), data_format)
    layer = DropBlock2D(0.25, block_size, data_format=data_format, seed=7)
    y = _to_channels_last(_np(layer(x, training=True)), data_format)
    bh, bw = layer.block_size
    dropped = y == 0
    assert dropped.any() and not dropped.all()
    for n in range(shape[0]):
        for c in range(shape[3]):
            assert _is_union_of_blocks(dropped[n, :, :, c], bh, bw)
    # Survivors are rescaled by 1 / kept fraction: the mean stays 1.
    np.testing.assert_allclose(y[~dropped], 1.0 / (~dropped).mean(), rtol=1e-5)
    np.testing.assert_allclose(y.mean(), 1.0, rtol=1e-5)


# PyTorch: drop_block_2d on a NumPy input fails (`ndarray * Tensor`).
@pytest.mark.backends("tensorflow", "jax")
@pytest.mark.parametrize(
    "rate, size, block", [(0.1, (56, 56), 7), (0.2, (20, 15), (5, 3))]
)
def test_drop_block_dropped_fraction_tracks_rate(rate, size, block):
    bh, bw = (block, block) if isinstance(block, int) else block
    x = np.ones((16, *size, 32), "float32")
    y = _np(drop_block_2d(x, rate, block, "channels_last", seed=11))
    fraction = (y == 0).mean()
    expected = _expected_drop_fraction(rate, *size, bh, bw)
    # 512 independent channel maps; observed spread ~0.003 -> tolerance 0.01.
    assert abs(fraction - expected) < 0.01
    # The paper's gamma keeps the dropped fraction near the rate.
    assert abs(fraction - rate) < 0.2 * rate + 0.01


def test_drop_block_keeps_mean_of_random_input():
    x = np.random.default_rng(2).uniform(0, 1, (8, 24, 16, 16))
    x = x.astype("float32")
    y = _np(DropBlock2D(0.3, (5, 3), seed=5)(x, training=True))
    # Expected activation is kept; sampling error well below 3%.
    np.testing.assert_allclose(y.mean(), x.mean(), rtol=0.03)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("block_size", [(6, 5), (50, 50), (100, 2)])
def test_drop_block_large_blocks_are_finite(data_format, block_size):
    x = _from_channels_last(np.ones((4, 6, 5, 8), "float32"), data_format)
    layer = DropBlock2D(0.5, block_size, data_format=data_format, seed=0)
    y = _to_channels_last(_np(layer(x, training=True)), data_format)
    assert np.isfinite(y).all()
    bh, bw = min(block_size[0], 6), min(block_size[1], 5)
    for n in range(4):
        for c in range(8):
            assert _is_union_of_blocks(y[n, :, :, c] == 0, bh, bw)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_drop_block_everything_dropped_gives_zeros_not_nan(dtype):
    # Block = whole map: gamma = rate = 0.99, so with this seed every
    # channel is dropped; the output must be zeros, not NaN.
    x = ops.ones((1, 4, 3, 2), dtype=dtype)
    y = _np(ops.cast(drop_block_2d(x, 0.99, (4, 3), seed=0), "float32"))
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y, np.zeros_like(y))


# --------------------------------------------------------------------------
# DropConnectDense


def test_drop_connect_masks_kernel_entries_with_inverted_scaling():
    layer = DropConnectDense(40, rate=0.3, seed=4, bias_initializer="ones")
    eye = np.eye(50, dtype="float32")
    out = _np(layer(eye, training=True))  # row k = kernel[k] * mask / 0.7 + b
    kernel = _np(layer.kernel)
    dropped = np.isclose(out, 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        out[~dropped], kernel[~dropped] / 0.7 + 1.0, rtol=1e-5
    )
    # 2000 Bernoulli(0.3) entries: std 0.01 -> tolerance 0.04.
    assert abs(dropped.mean() - 0.3) < 0.04


def test_drop_connect_expected_output_equals_dense():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6)).astype("float32")
    layer = DropConnectDense(5, rate=0.4, seed=9, bias_initializer="ones")
    draws = np.stack([_np(layer(x, training=True)) for _ in range(400)])
    expected = x @ _np(layer.kernel) + _np(layer.bias)
    stderr = draws.std(axis=0) / np.sqrt(len(draws))
    # Mean of 400 draws within 5 standard errors of the Dense output.
    assert (np.abs(draws.mean(axis=0) - expected) < 5 * stderr + 1e-6).all()
    assert not np.allclose(draws[0], draws[1])  # fresh mask per call


def test_drop_connect_inference_equals_dense_and_keeps_regularizer():
    x = np.random.default_rng(4).normal(size=(3, 6)).astype("float32")
    layer = DropConnectDense(
        4, rate=0.5, activation="relu", kernel_regularizer="l2"
    )
    y = _np(layer(x))
    dense = keras.layers.Dense(4, activation="relu")
    dense.build((None, 6))
    dense.set_weights([_np(layer.kernel), _np(layer.bias)])
    np.testing.assert_allclose(y, _np(dense(x)), rtol=1e-6)
    expected = 0.01 * np.sum(_np(layer.kernel) ** 2)
    np.testing.assert_allclose(_np(layer.losses[0]), expected, rtol=1e-5)


# --------------------------------------------------------------------------
# DropPath and stochastic_depth_rates


def test_drop_path_drops_whole_examples_and_rescales():
    x = np.random.default_rng(8).uniform(1, 2, (4000, 3, 5)).astype("float32")
    y = _np(DropPath(0.3, seed=2)(x, training=True))
    dropped = (y == 0).all(axis=(1, 2))
    # Each example is either all zeros or all of x / (1 - rate).
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.7, rtol=1e-6)
    assert not (y[dropped] != 0).any()
    # 4000 Bernoulli(0.3) draws: std 0.0072; tolerance 0.03 (~4 std).
    assert abs(dropped.mean() - 0.3) < 0.03
    # E[y] = E[x]; the spread of the mean is ~1% here, tolerance 5%.
    np.testing.assert_allclose(y.mean(), x.mean(), rtol=0.05)


def test_drop_path_inference_is_identity():
    x = np.random.default_rng(9).normal(size=(6, 4)).astype("float32")
    layer = DropPath(0.9, seed=1)
    np.testing.assert_array_equal(_np(layer(x)), x)
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)


@pytest.mark.parametrize(
    "num_blocks, max_rate", [(1, 0.5), (4, 0.2), (12, 0.1), (3, 0.0)]
)
def test_stochastic_depth_rates_linear_rule(num_blocks, max_rate):
    rates = stochastic_depth_rates(num_blocks, max_rate)
    # rate_l = max_rate * l / L for l = 1..L (Huang et al., 2016).
    expected = max_rate * np.arange(1, num_blocks + 1) / num_blocks
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=0)
    assert all(type(rate) is float for rate in rates)


def test_drop_path_in_a_residual_block_is_unbiased():
    inputs = keras.Input((8,))
    branch = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Add()([inputs, DropPath(0.5, seed=3)(branch)])
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(10).normal(size=(2000, 8)).astype("float32")
    train = _np(model(x, training=True))
    infer = _np(model(x, training=False))
    # Per example: exactly the input, or input + 2 * branch (rate 0.5).
    branch_out = infer - x
    kept = ~np.isclose(train, x, rtol=0, atol=1e-6).all(axis=1)
    np.testing.assert_allclose(
        train[kept], x[kept] + 2 * branch_out[kept], rtol=1e-5, atol=1e-5
    )
    # 2000 Bernoulli(0.5): std 0.011; tolerance 0.05.
    assert abs(kept.mean() - 0.5) < 0.05


# --------------------------------------------------------------------------
# Contracts shared by the layers


def _make(kind, rate=0.3, seed=1):
    if kind == "classic":
        return ClassicDropout(rate, seed=seed)
    if kind == "block":
        return DropBlock2D(rate, (3, 2), seed=seed)
    if kind == "path":
        return DropPath(rate, seed=seed)
    return DropConnectDense(3, rate, seed=seed)


def _input(kind):
    shape = {"block": (2, 9, 7, 3), "path": (40, 3)}.get(kind, (5, 8))
    return np.random.default_rng(5).uniform(1, 2, shape).astype("float32")


KINDS = ["classic", "block", "connect", "path"]


@pytest.mark.parametrize("kind", KINDS)
def test_rate_zero_is_identity_in_training(kind):
    x = _input(kind)
    layer = _make(kind, rate=0.0)
    y = _np(layer(x, training=True))
    np.testing.assert_array_equal(y, _np(layer(x, training=False)))
    if kind != "connect":
        np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("kind", ["block", "connect", "path"])
def test_inference_is_deterministic_identity_path(kind):
    x = _input(kind)
    layer = _make(kind)
    y = _np(layer(x, training=False))
    np.testing.assert_array_equal(y, _np(layer(x, training=False)))
    if kind != "connect":
        np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("kind", KINDS)
def test_seed_reproducible(kind):
    x = _input(kind)
    a, b, c = _make(kind, seed=3), _make(kind, seed=3), _make(kind, seed=4)
    if kind == "connect":
        for layer in (a, b, c):
            layer.build(x.shape)
        b.set_weights(a.get_weights())
        c.set_weights(a.get_weights())
    ya, yb, yc = (_np(layer(x, training=True)) for layer in (a, b, c))
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    # The generator advances: a second call draws a new mask.
    assert not np.array_equal(ya, _np(a(x, training=True)))


@pytest.mark.parametrize("kind", KINDS)
def test_rate_variable_is_read_at_call(kind):
    x = _input(kind)
    layer = _make(kind, rate=0.0)
    layer(x)  # builds DropConnectDense
    layer.rate_variable.assign(0.5)
    if kind == "connect":
        out = _np(layer(np.eye(8, dtype="float32"), training=True))
        frac = (out == _np(layer.bias)).mean()
    else:
        frac = (_np(layer(x, training=True)) == 0).mean()
    assert frac > 0.2
    assert layer.get_config()["rate"] == 0.0


def test_drop_block_wrong_rank_raises():
    with pytest.raises(ValueError, match=r"Received: inputs.shape=\(2, 5, 3\)"):
        DropBlock2D(0.1, 2)(np.ones((2, 5, 3), "float32"), training=True)


def _cnn(data_format="channels_last"):
    shape = (10, 8, 3) if data_format == "channels_last" else (3, 10, 8)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(4, 3, data_format=data_format),
            DropBlock2D(0.2, (3, 2), data_format=data_format, seed=1),
            DropPath(0.25, seed=4),
            ClassicDropout(0.3, seed=2),
            keras.layers.Flatten(),
            DropConnectDense(3, 0.4, seed=3, kernel_regularizer="l2"),
        ]
    )


@pytest.mark.parametrize(
    "data_format", ["channels_last", channels_first_param()]
)
def test_save_load_sequential_cnn(tmp_path, data_format):
    model = _cnn(data_format)
    for layer in model.layers[1:]:
        if hasattr(layer, "rate_variable"):
            layer.rate_variable.assign(0.15)  # a scheduled value
    path = str(tmp_path / "cnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True
    x = np.random.default_rng(6).normal(size=(2, *model.input_shape[1:]))
    np.testing.assert_array_equal(
        _np(model(x, training=False)), _np(loaded(x, training=False))
    )
    for old, new in zip(model.layers, loaded.layers):
        assert type(old) is type(new)
        assert old.get_config() == new.get_config()
        if hasattr(old, "rate_variable"):
            assert float(_np(new.rate_variable)) == pytest.approx(0.15)
            assert new.get_config()["rate"] == old.get_config()["rate"]


@pytest.mark.parametrize(
    "policy, jit",
    [
        ("float32", True),
        ("mixed_float16", False),
        ("mixed_bfloat16", False),
        ("mixed_float16", True),
    ],
)
def test_fit_under_jit_and_mixed_precision(policy, jit):
    keras.config.set_dtype_policy(policy)
    model = _cnn()
    model.compile("adam", "mse", jit_compile=jit)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 10, 8, 3)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    pred = model.predict(x, verbose=0)
    assert np.isfinite(pred).all()
    for layer in model.layers:
        if hasattr(layer, "rate_variable"):
            assert layer.rate_variable.dtype == "float32"
    # Training-mode outputs in the compute dtype.
    out = model(x, training=True)
    assert np.isfinite(_np(ops.cast(out, "float32"))).all()


class _WithBuild:
    """Mixed into a layer class: a subclass with its own `build`."""

    def build(self, input_shape):
        self.extra = self.add_weight(shape=(), initializer="ones")


@pytest.mark.parametrize("kind", ["classic", "block", "path"])
def test_subclass_build_runs(kind):
    subclass = type("Sub", (_WithBuild, type(_make(kind))), {})
    args = (0.2, 2) if kind == "block" else (0.2,)
    layer = subclass(*args, seed=1)
    assert not layer.built
    layer(_input(kind), training=True)
    assert layer.built
    assert float(_np(layer.extra)) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_rate_in_weights_file_is_rejected(kind, tmp_path):
    model = keras.Sequential([keras.Input(_input(kind).shape[1:]), _make(kind)])
    path = str(tmp_path / "tampered.weights.h5")
    model.save_weights(path)
    with h5py.File(path, "r+") as f:
        scalars = []
        f.visititems(
            lambda name, obj: (
                scalars.append(obj)
                if isinstance(obj, h5py.Dataset) and obj.shape == ()
                else None
            )
        )
        (rate,) = scalars  # the rate is the layer's only scalar
        rate[()] = 1.5
    with pytest.raises(ValueError, match=r"Received: rate_variable=1\.5\n"):
        model.load_weights(path)


def test_seed_state_is_saved_with_the_weights(tmp_path):
    model = _cnn()
    x = np.random.default_rng(11).normal(size=(2, 10, 8, 3))
    model(x, training=True)  # advances every generator
    path = str(tmp_path / "cnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        _np(model(x, training=True)), _np(loaded(x, training=True))
    )


def _run_resume_script(mode, backup_dir, out_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root
    script = os.path.join(root, "tests", "_resume_dropout.py")
    return subprocess.run(
        [sys.executable, script, mode, str(backup_dir), str(out_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_resume_after_sigkill_is_exact_with_dropout_active(tmp_path):
    backup = tmp_path / "backup"
    killed = _run_resume_script("kill", backup, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run_resume_script("resume", backup, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = {}
    for mode in ("uninterrupted", "resume", "resume_fresh_seeds"):
        with np.load(tmp_path / f"{mode}.npz") as weights:
            runs[mode] = [weights[f"arr_{i}"] for i in range(len(weights))]
    for a, b in zip(runs["resume"], runs["uninterrupted"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Without the saved seed states the resumed masks differ (the check
    # above can fail): weights move by far more than the tolerance.
    gap = max(
        np.abs(a - b).max()
        for a, b in zip(runs["resume_fresh_seeds"], runs["uninterrupted"])
    )
    assert gap > 1e-3


@pytest.mark.tensorflow_only
def test_drop_path_replicas_draw_different_masks():
    import tensorflow as tf

    # The two logical CPUs made in tests/conftest.py.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    shape = (64, 3)
    with strategy.scope():
        layer = DropPath(0.5, seed=21)

    @tf.function
    def step():
        return strategy.run(lambda: layer(tf.ones(shape), training=True))

    first, second = (
        np.asarray(r) for r in strategy.experimental_local_results(step())
    )
    # 64 examples per replica: equal masks have probability 2**-64.
    assert not np.array_equal(first, second)
    # Replica 0 draws what the layer draws on one device.
    keras.backend.clear_session()
    single = np.asarray(DropPath(0.5, seed=21)(tf.ones(shape), training=True))
    np.testing.assert_array_equal(first, single)


def test_drop_path_needs_a_batch_axis():
    layer = DropPath(0.5, seed=1)
    with pytest.raises(ValueError, match=r"rank >= 1.*shape \(\)"):
        layer(keras.ops.ones(()), training=True)
