"""keras_decay.conventions.convert, checked through the penalties it equates."""

import keras
import numpy as np
import pytest

from keras_decay.conventions import CONVENTIONS
from keras_decay.conventions import convert
from keras_decay.regularizers import WeightDecay

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions


def _penalty(regularizer, w):
    return float(regularizer(keras.ops.array(w)))


# Equal penalties for every w means equal gradients: the same regularization.


def test_keras_l2_and_weight_decay_give_the_same_penalty():
    w = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    l2 = convert(5e-4, "weight_decay", "keras_l2")
    np.testing.assert_allclose(l2, 2.5e-4, rtol=1e-15)
    np.testing.assert_allclose(
        _penalty(keras.regularizers.L2(l2), w),
        _penalty(WeightDecay(5e-4), w),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _penalty(WeightDecay(5e-4), w),
        5e-4 / 2 * np.sum(w.astype("float64") ** 2),
        rtol=1e-6,
    )


def test_nielsen_and_weight_decay_give_the_same_penalty():
    w = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    n = 50000
    wd = convert(5.0, "nielsen", "weight_decay", num_examples=n)
    np.testing.assert_allclose(wd, 5.0 / n, rtol=1e-15)
    np.testing.assert_allclose(
        _penalty(WeightDecay(5.0, num_examples=n), w),
        _penalty(WeightDecay(wd), w),
        rtol=1e-6,
    )


@pytest.mark.parametrize("source", CONVENTIONS)
@pytest.mark.parametrize("target", CONVENTIONS)
def test_round_trip_is_identity(source, target):
    n = 1000 if "nielsen" in (source, target) else None
    there = convert(0.3, source, target, num_examples=n)
    back = convert(there, target, source, num_examples=n)
    np.testing.assert_allclose(back, 0.3, rtol=1e-15)


def test_table_of_values():
    # gradient coefficient wd = 2 * l2 = lam / n
    assert convert(1e-4, "keras_l2", "weight_decay") == pytest.approx(2e-4)
    assert convert(1e-4, "keras_l2", "nielsen", num_examples=100) == (
        pytest.approx(2e-2)
    )
    assert convert(3.0, "nielsen", "keras_l2", num_examples=10) == (
        pytest.approx(0.15)
    )


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (
            (-1.0, "keras_l2", "nielsen"),
            {"num_examples": 3},
            ValueError,
            "Received: value=-1.0",
        ),
        (
            ("x", "keras_l2", "weight_decay"),
            {},
            TypeError,
            "Received: value='x'",
        ),
        (
            (1.0, "pytorch", "keras_l2"),
            {},
            ValueError,
            "Received: source='pytorch'",
        ),
        ((1.0, "keras_l2", "L2"), {}, ValueError, "Received: target='L2'"),
        (
            (1.0, "keras_l2", "nielsen"),
            {},
            ValueError,
            "Received: num_examples=None",
        ),
        (
            (1.0, "keras_l2", "weight_decay"),
            {"num_examples": 10},
            ValueError,
            "Received: num_examples=10",
        ),
        (
            (1.0, "nielsen", "keras_l2"),
            {"num_examples": 0},
            ValueError,
            "Received: num_examples=0",
        ),
    ],
)
def test_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message + "$"):
        convert(*args, **kwargs)


# Decoupled conventions: equal when the optimizers decay alike.


def _decayed(mode, weight_decay, steps=6):
    """A weight after `steps` zero-gradient SGD steps (only decay moves it)."""
    from keras_decay import optimizers
    from keras_decay import schedules

    lr = schedules.ExponentialDecay(1e-3, 2, 0.5)  # starts at its peak
    w = keras.Variable(np.full((3,), 2.0, "float32"))
    optimizer = optimizers.SGD(
        lr,
        weight_decay=weight_decay,
        weight_decay_mode=mode,
        decay_exclude=None,
    )
    for _ in range(steps):
        optimizer.apply([keras.ops.zeros((3,))], [w])
    return keras.ops.convert_to_numpy(w)


def test_independent_and_lr_decay_alike():
    wd_lr = convert(1e-4, "independent", "lr", max_learning_rate=1e-3)
    np.testing.assert_allclose(wd_lr, 0.1, rtol=1e-15)
    independent = _decayed("independent", 0.5)
    lr = _decayed(
        "lr", convert(0.5, "independent", "lr", max_learning_rate=1e-3)
    )
    np.testing.assert_allclose(independent, lr, rtol=1e-6)
    # NumPy: prod(1 - lr_t / 1e-3 * 0.5), lr_t = 1e-3 * 0.5 ** (t / 2).
    factors = [1 - 0.5 ** (t / 2) * 0.5 for t in range(6)]
    np.testing.assert_allclose(independent, 2.0 * np.prod(factors), rtol=1e-6)


@pytest.mark.parametrize(
    "source, target", [("lr", "independent"), ("independent", "lr")]
)
def test_decoupled_round_trip_is_identity(source, target):
    there = convert(0.3, source, target, max_learning_rate=0.02)
    back = convert(there, target, source, max_learning_rate=0.02)
    np.testing.assert_allclose(back, 0.3, rtol=1e-15)
    assert convert(0.3, "corrected", "corrected") == 0.3


@pytest.mark.parametrize(
    "source, target, kwargs, received",
    [
        ("corrected", "lr", {"max_learning_rate": 1e-3}, "target='lr'"),
        ("lr", "corrected", {"max_learning_rate": 1e-3}, "source='lr'"),
        ("lr", "keras_l2", {}, "target='keras_l2'"),
        ("lr", "independent", {}, "max_learning_rate=None"),
        (
            "keras_l2",
            "weight_decay",
            {"max_learning_rate": 1e-3},
            "max_learning_rate=0.001",
        ),
        (
            "lr",
            "independent",
            {"max_learning_rate": 0.0},
            "max_learning_rate=0.0",
        ),
        (
            "lr",
            "independent",
            {"max_learning_rate": 1e-3, "num_examples": 10},
            "num_examples=10",
        ),
    ],
)
def test_bad_decoupled_arguments(source, target, kwargs, received):
    with pytest.raises(ValueError, match=f"Received: {received}$"):
        convert(0.1, source, target, **kwargs)
