"""keras_decay.regularizers against NumPy formulas written here."""

import keras
import numpy as np
import pytest

from keras_decay.regularizers import ElasticDecay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

RTOL = 1e-6  # float32 arithmetic on small tensors


def _kernel(shape=(3, 4), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# --- penalties --------------------------------------------------------------


@pytest.mark.parametrize("num_examples", [None, 1, 50])
def test_weight_decay_penalty_is_half_rate_sum_of_squares(num_examples):
    w = _kernel()
    n = 1 if num_examples is None else num_examples
    expected = 0.3 / (2 * n) * np.sum(w.astype("float64") ** 2)
    got = WeightDecay(0.3, num_examples=num_examples)(keras.ops.array(w))
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)


@pytest.mark.parametrize("num_examples", [None, 7])
def test_l1_decay_penalty_is_rate_sum_of_abs(num_examples):
    w = _kernel()
    n = 1 if num_examples is None else num_examples
    expected = 0.2 / n * np.sum(np.abs(w.astype("float64")))
    got = L1Decay(0.2, num_examples=num_examples)(keras.ops.array(w))
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)


def test_elastic_decay_is_sum_of_l1_and_weight_decay():
    w = _kernel().astype("float64")
    n = 10
    expected = 0.01 / n * np.sum(np.abs(w)) + 0.4 / (2 * n) * np.sum(w**2)
    got = ElasticDecay(l1=0.01, l2=0.4, num_examples=n)(
        keras.ops.array(w.astype("float32"))
    )
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)


def test_weight_decay_equals_keras_l2_with_half_the_coefficient():
    w = keras.ops.array(_kernel())
    ours = float(WeightDecay(0.02)(w))
    keras_l2 = float(keras.regularizers.L2(0.01)(w))
    np.testing.assert_allclose(ours, keras_l2, rtol=RTOL)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "regularizer",
    [WeightDecay(1.0), L1Decay(1.0), ElasticDecay(1.0, 1.0)],
    ids=["l2", "l1", "elastic"],
)
def test_penalty_reduced_in_float32_for_narrow_variables(dtype, regularizer):
    # 300**2 * 10_000 = 9e8 overflows float16 (max 65504) many times over.
    w = keras.ops.full((100, 100), 300.0, dtype=dtype)
    got = regularizer(w)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    w64 = np.full((100, 100), 300.0)
    expected = {
        WeightDecay: 0.5 * np.sum(w64**2),
        L1Decay: np.sum(np.abs(w64)),
        ElasticDecay: np.sum(np.abs(w64)) + 0.5 * np.sum(w64**2),
    }[type(regularizer)]
    assert np.isfinite(float(got))
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)


def test_keras_l2_overflows_where_weight_decay_does_not():
    # The reason for the float32 reduction: Keras' own L2 gives inf here.
    w = keras.ops.full((100, 100), 300.0, dtype="float16")
    assert not np.isfinite(float(keras.regularizers.L2(0.5)(w)))
    assert np.isfinite(float(WeightDecay(1.0)(w)))


# --- one SGD step, computed by hand -----------------------------------------


def _dense_model(w, b, regularizer, jit_compile=False, optimizer=None):
    model = keras.Sequential(
        [
            keras.Input((w.shape[0],)),
            keras.layers.Dense(
                w.shape[1],
                kernel_regularizer=regularizer,
                kernel_initializer=keras.initializers.Constant(w),
                bias_initializer=keras.initializers.Constant(b),
            ),
        ]
    )
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.1),
        loss="mse",
        jit_compile=jit_compile,
    )
    return model


def _mse_grads(x, y, w, b):
    """Gradients of Keras' MSE (mean over outputs, then over the batch)."""
    x, y, w, b = (a.astype("float64") for a in (x, y, w, b))
    m, k = y.shape
    residual = x @ w + b - y
    d_out = 2.0 * residual / (m * k)  # = (1/m) sum_x dC_x/dout
    return x.T @ d_out, d_out.sum(axis=0)


def _batch(m=8, d=3, k=2, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d)).astype("float32")
    y = rng.normal(size=(m, k)).astype("float32")
    w = rng.normal(size=(d, k)).astype("float32")
    b = rng.normal(size=(k,)).astype("float32")
    return x, y, w, b


@pytest.mark.parametrize("jit_compile", [False, True])
def test_sgd_step_with_nielsen_weight_decay(jit_compile):
    eta, lam, n = 0.1, 5.0, 1000
    x, y, w, b = _batch()
    model = _dense_model(w, b, WeightDecay(lam, num_examples=n), jit_compile)
    model.train_on_batch(x, y)

    grad_w, grad_b = _mse_grads(x, y, w, b)
    # Nielsen: w <- (1 - eta*lam/n) w - (eta/m) sum dC_x/dw; b: no decay.
    expected_w = (1 - eta * lam / n) * w - eta * grad_w
    expected_b = b - eta * grad_b
    got_w, got_b = model.layers[0].get_weights()
    np.testing.assert_allclose(got_w, expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, expected_b, rtol=1e-5, atol=1e-6)


def test_sgd_step_with_l1_decay_leaves_zero_weight_at_zero_gradient():
    eta, lam, n = 0.1, 2.0, 100
    x, y, w, b = _batch()
    w[0, 0] = 0.0
    model = _dense_model(w, b, L1Decay(lam, num_examples=n))
    model.train_on_batch(x, y)

    grad_w, grad_b = _mse_grads(x, y, w, b)
    # w <- w - (eta*lam/n) sgn(w) - eta dC0/dw, with sgn(0) = 0.
    expected_w = w - eta * lam / n * np.sign(w) - eta * grad_w
    got_w, got_b = model.layers[0].get_weights()
    np.testing.assert_allclose(got_w, expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, b - eta * grad_b, rtol=1e-5, atol=1e-6)
    # The zero weight moved by the data gradient alone.
    np.testing.assert_allclose(
        got_w[0, 0], -eta * grad_w[0, 0], rtol=1e-5, atol=1e-7
    )


def test_loss_reported_by_fit_includes_the_penalty():
    x, y, w, b = _batch()
    model = _dense_model(w, b, WeightDecay(0.5))
    loss = model.evaluate(x, y, verbose=0)
    residual = x.astype("float64") @ w + b - y
    expected = np.mean(residual**2) + 0.25 * np.sum(w.astype("float64") ** 2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


# --- coupled (ours) versus Keras' decoupled `weight_decay` ------------------


def _train(model, x, y, steps):
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.layers[0].get_weights()


def _decoupled_sgd(lam, momentum=0.0):
    optimizer = keras.optimizers.SGD(
        learning_rate=0.1, momentum=momentum, weight_decay=lam
    )
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


def test_equal_to_keras_decoupled_weight_decay_without_momentum():
    lam = 0.3
    x, y, w, b = _batch()
    ours = _train(_dense_model(w, b, WeightDecay(lam)), x, y, steps=3)
    keras_wd = _train(
        _dense_model(w, b, None, optimizer=_decoupled_sgd(lam)), x, y, steps=3
    )
    for a, c in zip(ours, keras_wd):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def test_differs_from_keras_decoupled_weight_decay_with_momentum():
    eta, lam, mu, steps = 0.1, 0.3, 0.9, 3
    x, y, w, b = _batch()
    coupled = _train(
        _dense_model(
            w,
            b,
            WeightDecay(lam),
            optimizer=keras.optimizers.SGD(learning_rate=eta, momentum=mu),
        ),
        x,
        y,
        steps,
    )
    decoupled = _train(
        _dense_model(w, b, None, optimizer=_decoupled_sgd(lam, mu)),
        x,
        y,
        steps,
    )

    # NumPy: PyTorch-style coupled decay (v <- mu v - eta (g + lam w)) and
    # Keras' decoupled one (g taken at w; then w <- w - eta lam w,
    # v <- mu v - eta g, w <- w + v).
    wc, bc, vwc, vbc = w.astype("float64"), b.astype("float64"), 0.0, 0.0
    wd, bd, vwd, vbd = w.astype("float64"), b.astype("float64"), 0.0, 0.0
    for _ in range(steps):
        gw, gb = _mse_grads(x, y, wc, bc)
        vwc = mu * vwc - eta * (gw + lam * wc)
        vbc = mu * vbc - eta * gb
        wc, bc = wc + vwc, bc + vbc
        gw, gb = _mse_grads(x, y, wd, bd)
        wd = wd - eta * lam * wd
        vwd = mu * vwd - eta * gw
        vbd = mu * vbd - eta * gb
        wd, bd = wd + vwd, bd + vbd

    np.testing.assert_allclose(coupled[0], wc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(decoupled[0], wd, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(coupled[0] - decoupled[0])) > 1e-3


# --- mixed precision --------------------------------------------------------


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit_penalty_matches_float32(policy):
    x, y, w, b = _batch()
    keras.config.set_dtype_policy(policy)
    model = _dense_model(w, b, WeightDecay(0.5))
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    kernel = model.layers[0].kernel
    assert keras.backend.standardize_dtype(kernel.dtype) == "float32"
    (penalty,) = model.losses
    expected = 0.25 * np.sum(np.asarray(kernel, dtype="float64") ** 2)
    assert np.isfinite(float(penalty))
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-3)


# Config round trips, `.keras` files and bad-input cases: see
# tests/test_contracts.py.


def test_integral_float_num_examples_is_accepted_as_int():
    assert WeightDecay(0.1, num_examples=60000.0).num_examples == 60000
    assert isinstance(WeightDecay(0.1, num_examples=60000.0).num_examples, int)
