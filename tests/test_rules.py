"""keras_decay.rules: the timescale formulas, by hand and by simulation."""

import math

import keras
import numpy as np
import pytest

from keras_decay.regularizers import ElasticDecay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay
from keras_decay.rules import optimizer_timescale
from keras_decay.rules import scale_weight_decay
from keras_decay.rules import timescale
from keras_decay.rules import weight_decay_for_timescale
from keras_decay.rules import weight_decay_range

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions


def test_decoupled_timescale_is_one_over_lr_times_wd():
    assert timescale(1e-3, 0.1) == pytest.approx(1.0 / (1e-3 * 0.1), 1e-12)
    assert timescale(2e-4, 0.05) == pytest.approx(1e5, rel=1e-12)
    # Momentum does not change decoupled decay.
    assert timescale(1e-3, 0.1, momentum=0.9) == timescale(1e-3, 0.1)


def test_coupled_timescale_has_the_momentum_factor():
    got = timescale(0.1, 5e-4, momentum=0.9, decoupled=False)
    assert got == pytest.approx((1.0 - 0.9) / (0.1 * 5e-4), rel=1e-12)
    assert got == pytest.approx(2000.0, rel=1e-12)
    plain = timescale(0.1, 5e-4, decoupled=False)
    assert plain == pytest.approx(20000.0, rel=1e-12)


def test_decoupled_decay_forgets_by_one_over_e_in_tau_steps():
    lr, wd = 0.01, 0.02
    tau = timescale(lr, wd)
    w = 1.0
    for _ in range(round(tau)):
        w -= lr * wd * w  # w <- w - lr * wd * w, no gradient
    # (1 - 1/tau)**tau = exp(-1) * (1 - 1/(2 tau) + ...): tau = 5000.
    np.testing.assert_allclose(w, math.exp(-1.0), rtol=2e-4)


def test_coupled_l2_under_sgd_momentum_decays_at_the_predicted_rate():
    # Heavy-ball SGD on the penalty alone: v <- mu*v + wd*w; w <- w - lr*v.
    lr, wd, mu = 0.1, 1e-3, 0.9
    tau = timescale(lr, wd, momentum=mu, decoupled=False)
    w, v = 1.0, 0.0
    history = []
    for _ in range(6000):
        v = mu * v + wd * w
        w = w - lr * v
        history.append(w)
    # After the transient the decay is geometric; its rate per step is the
    # dominant root of r**2 - (1 + mu - lr*wd) r + mu, about 1 - 1/tau.
    rate = -math.log(history[-1] / history[-1001]) / 1000.0
    # Second-order term: lr*wd*mu/(1-mu)**2 ~ 1e-2 relative.
    np.testing.assert_allclose(rate, 1.0 / tau, rtol=2e-2)


def test_weight_decay_for_timescale_inverts_timescale():
    assert weight_decay_for_timescale(10_000, 1e-3) == pytest.approx(
        1.0 / (1e-3 * 10_000), rel=1e-12
    )
    got = weight_decay_for_timescale(2000, 0.1, momentum=0.9, decoupled=False)
    assert got == pytest.approx((1.0 - 0.9) / (0.1 * 2000), rel=1e-12)
    for lr, wd, mu, decoupled in [
        (3e-4, 0.05, 0.0, True),
        (0.2, 1e-4, 0.95, False),
    ]:
        tau = timescale(lr, wd, momentum=mu, decoupled=decoupled)
        back = weight_decay_for_timescale(
            tau, lr, momentum=mu, decoupled=decoupled
        )
        assert back == pytest.approx(wd, rel=1e-12)


@pytest.mark.parametrize(
    "momentum, decoupled, factor",
    [(0.0, True, 1.0), (0.9, False, 0.1), (0.9, True, 1.0)],
)
@pytest.mark.parametrize("per_decade", [1, 2, 3])
def test_weight_decay_range_spans_ten_times_to_a_tenth_of_the_run(
    momentum, decoupled, factor, per_decade
):
    steps, lr = 570, 0.1
    got = weight_decay_range(
        steps, lr, momentum=momentum, decoupled=decoupled, per_decade=per_decade
    )
    # tau from 10 * steps down to steps / 10, log-spaced, per_decade a decade.
    tau = np.logspace(
        np.log10(10 * steps), np.log10(steps / 10), 2 * per_decade + 1
    )
    np.testing.assert_allclose(got, factor / (lr * tau), rtol=1e-12)
    assert got == sorted(got) and 0.0 not in got
    taus = [
        timescale(lr, w, momentum=momentum, decoupled=decoupled) for w in got
    ]
    assert taus[0] == pytest.approx(10 * steps, rel=1e-12)
    assert taus[-1] == pytest.approx(steps / 10, rel=1e-12)


def test_weight_decay_range_checks_its_arguments():
    with pytest.raises(ValueError, match=r"Received: steps=0"):
        weight_decay_range(0, 0.1)
    with pytest.raises(TypeError, match=r"Received: per_decade=1.5"):
        weight_decay_range(10, 0.1, per_decade=1.5)
    with pytest.raises(ValueError, match=r"Received: learning_rate=-0.1"):
        weight_decay_range(10, -0.1)


def test_scale_weight_decay_keeps_tau_a_fixed_fraction_of_training():
    got = scale_weight_decay(
        0.05, from_lr=1e-3, to_lr=4e-3, from_steps=100_000, to_steps=50_000
    )
    # By hand: 0.05 * (1e-3 / 4e-3) * (100000 / 50000) = 0.025.
    assert got == pytest.approx(0.025, rel=1e-12)
    before = timescale(1e-3, 0.05) / 100_000
    after = timescale(4e-3, got) / 50_000
    assert after == pytest.approx(before, rel=1e-12)
    # Only the learning rate changes: lr * wd is kept.
    only_lr = scale_weight_decay(5e-4, from_lr=0.1, to_lr=0.4)
    assert only_lr * 0.4 == pytest.approx(5e-4 * 0.1, rel=1e-12)
    assert scale_weight_decay(0.0, from_lr=0.1, to_lr=0.2) == 0.0


def _model_with(regularizer):
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name="d", kernel_regularizer=regularizer),
        ]
    )


def test_optimizer_timescale_of_keras_adamw_equals_one_adamw_step():
    opt = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.2)
    w = keras.Variable(np.full((2, 2), 3.0, "float32"))
    opt.build([w])
    # Zero gradient: Adam's own step is 0, only the decoupled decay moves w.
    opt.apply([keras.ops.zeros((2, 2))], [w])
    shrink_per_step = 1.0 - float(w.numpy()[0, 0]) / 3.0
    tau = optimizer_timescale(opt)
    np.testing.assert_allclose(1.0 / tau, shrink_per_step, rtol=1e-5)
    np.testing.assert_allclose(tau, 1.0 / (0.01 * 0.2), rtol=1e-6)


def test_optimizer_timescale_reads_schedules_at_the_current_step():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    opt = keras.optimizers.SGD(schedule, weight_decay=0.01)
    opt.iterations.assign(20)
    expected = 1.0 / (0.1 * 0.5**2 * 0.01)
    np.testing.assert_allclose(optimizer_timescale(opt), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "regularizer, coefficient",
    [
        (WeightDecay(5e-4), 5e-4),
        (WeightDecay(5.0, num_examples=1000), 5.0 / 1000),
        (ElasticDecay(l1=1e-3, l2=2e-4), 2e-4),
        (keras.regularizers.L2(1e-4), 2e-4),
        (keras.regularizers.L1L2(l1=0.0, l2=3e-4), 6e-4),
    ],
)
def test_optimizer_timescale_of_coupled_l2_under_sgd(regularizer, coefficient):
    model = _model_with(regularizer)
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    expected = (1.0 - 0.9) / (0.1 * coefficient)
    got = optimizer_timescale(opt, model)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # The same formula as `timescale`.
    np.testing.assert_allclose(
        got,
        timescale(0.1, coefficient, momentum=0.9, decoupled=False),
        rtol=1e-6,
    )


def test_optimizer_timescale_adds_decoupled_and_coupled_decay():
    model = _model_with(WeightDecay(1e-3))
    opt = keras.optimizers.SGD(0.05, momentum=0.5, weight_decay=2e-3)
    expected = 1.0 / (0.05 * (2e-3 + 1e-3 / (1.0 - 0.5)))
    np.testing.assert_allclose(
        optimizer_timescale(opt, model), expected, rtol=1e-6
    )


def test_optimizer_timescale_takes_the_largest_coefficient():
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, kernel_regularizer=WeightDecay(1e-4)),
            keras.layers.Dense(2, kernel_regularizer=WeightDecay(3e-4)),
        ]
    )
    opt = keras.optimizers.SGD(0.1)
    np.testing.assert_allclose(
        optimizer_timescale(opt, model), 1.0 / (0.1 * 3e-4), rtol=1e-6
    )


def test_optimizer_timescale_is_none_without_a_timescale():
    assert optimizer_timescale(keras.optimizers.Adam(1e-3)) is None
    assert optimizer_timescale(keras.optimizers.SGD(0.1)) is None
    # L1 has no exponential timescale.
    assert (
        optimizer_timescale(keras.optimizers.SGD(0.1), _model_with(L1Decay(1)))
        is None
    )
    # Coupled L2 under an adaptive optimizer is divided by sqrt(v).
    model = _model_with(WeightDecay(1e-3))
    assert optimizer_timescale(keras.optimizers.Adam(1e-3), model) is None
    # ... but its decoupled decay counts.
    adamw = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
    np.testing.assert_allclose(
        optimizer_timescale(adamw, model), 1.0 / (1e-3 * 0.1), rtol=1e-6
    )


def test_optimizer_timescale_looks_through_loss_scale_optimizer():
    inner = keras.optimizers.AdamW(2e-3, weight_decay=0.05)
    opt = keras.optimizers.LossScaleOptimizer(inner)
    np.testing.assert_allclose(
        optimizer_timescale(opt), 1.0 / (2e-3 * 0.05), rtol=1e-6
    )


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: timescale(0.0, 0.1), ValueError, "learning_rate=0.0"),
        (lambda: timescale(-1e-3, 0.1), ValueError, "learning_rate=-0.001"),
        (lambda: timescale("big", 0.1), TypeError, "learning_rate='big'"),
        (lambda: timescale(math.inf, 0.1), ValueError, "learning_rate=inf"),
        (lambda: timescale(True, 0.1), TypeError, "learning_rate=True"),
        (lambda: timescale(1e-3, 0.0), ValueError, "weight_decay=0.0"),
        (lambda: timescale(1e-3, math.nan), ValueError, "weight_decay=nan"),
        (lambda: timescale(1e-3, None), TypeError, "weight_decay=None"),
        (
            lambda: timescale(1e-3, 0.1, momentum=1.0),
            ValueError,
            "momentum=1.0",
        ),
        (
            lambda: timescale(1e-3, 0.1, momentum=-0.1),
            ValueError,
            "momentum=-0.1",
        ),
        (
            lambda: timescale(1e-3, 0.1, decoupled="yes"),
            TypeError,
            "decoupled='yes'",
        ),
        (
            lambda: weight_decay_for_timescale(0, 1e-3),
            ValueError,
            "tau_steps=0.0",
        ),
        (
            lambda: weight_decay_for_timescale(100, -1.0),
            ValueError,
            "learning_rate=-1.0",
        ),
        (
            lambda: weight_decay_for_timescale(100, 0.1, momentum=2.0),
            ValueError,
            "momentum=2.0",
        ),
        (
            lambda: scale_weight_decay(-0.1, from_lr=0.1, to_lr=0.2),
            ValueError,
            "weight_decay=-0.1",
        ),
        (
            lambda: scale_weight_decay(0.1, from_lr=0.0, to_lr=0.2),
            ValueError,
            "from_lr=0.0",
        ),
        (
            lambda: scale_weight_decay(0.1, from_lr=0.1, to_lr="x"),
            TypeError,
            "to_lr='x'",
        ),
        (
            lambda: scale_weight_decay(
                0.1, from_lr=0.1, to_lr=0.2, from_steps=100
            ),
            ValueError,
            "to_steps=None",
        ),
        (
            lambda: scale_weight_decay(
                0.1, from_lr=0.1, to_lr=0.2, to_steps=100
            ),
            ValueError,
            "from_steps=None",
        ),
        (
            lambda: scale_weight_decay(
                0.1, from_lr=0.1, to_lr=0.2, from_steps=0, to_steps=10
            ),
            ValueError,
            "from_steps=0.0",
        ),
        (lambda: optimizer_timescale("adam"), TypeError, "optimizer='adam'"),
        (
            lambda: optimizer_timescale(keras.optimizers.SGD(), model=3),
            TypeError,
            "model=3",
        ),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=f"Received: {message}$"):
        call()


def test_optimizer_timescale_of_keras_decay_optimizers_with_schedules():
    from keras_decay import optimizers
    from keras_decay.schedules import LinearRamp

    adamw = optimizers.AdamW(1e-3, weight_decay=LinearRamp(0.0, 0.1, 10))
    adamw.iterations.assign(5)  # weight decay 0.05 at step 5
    np.testing.assert_allclose(
        optimizer_timescale(adamw), 1.0 / (1e-3 * 0.05), rtol=1e-6
    )
    adamw.iterations.assign(0)  # weight decay 0: no timescale
    assert optimizer_timescale(adamw) is None
    sgd = optimizers.SGD(0.1, momentum=LinearRamp(0.0, 0.8, 4))
    sgd.iterations.assign(2)  # momentum 0.4
    model = _model_with(WeightDecay(1e-3))
    np.testing.assert_allclose(
        optimizer_timescale(sgd, model), (1 - 0.4) / (0.1 * 1e-3), rtol=1e-6
    )


@pytest.mark.parametrize(
    "mode, coefficient",
    [("independent", 0.4 / 0.8), ("corrected", 0.4 * 0.4 / 0.8)],
)
def test_timescale_of_each_mode_forgets_by_one_over_e(mode, coefficient):
    # lr 0.4 half-way down from a peak of 0.8: c = lr / lr_max or
    # lr ** 2 / lr_max, tau = 1 / (c * wd).
    tau = timescale(0.4, 2e-3, weight_decay_mode=mode, max_learning_rate=0.8)
    assert tau == pytest.approx(1.0 / (coefficient * 2e-3), rel=1e-12)
    w = 1.0
    for _ in range(round(tau)):
        w -= coefficient * 2e-3 * w
    np.testing.assert_allclose(w, math.exp(-1.0), rtol=1e-3)


@pytest.mark.parametrize("mode", ["lr", "independent", "corrected"])
def test_optimizer_timescale_of_each_mode_equals_one_step(mode):
    from keras_decay import optimizers
    from keras_decay import schedules

    lr = schedules.ExponentialDecay(0.01, 2, 0.5)
    opt = optimizers.AdamW(
        lr, weight_decay=0.2, weight_decay_mode=mode, decay_exclude=None
    )
    w = keras.Variable(np.full((2, 2), 3.0, "float32"))
    for _ in range(3):
        before = float(keras.ops.convert_to_numpy(w)[0, 0])
        tau = optimizer_timescale(opt)  # of the step about to be taken
        opt.apply([keras.ops.zeros((2, 2))], [w])
        after = float(keras.ops.convert_to_numpy(w)[0, 0])
        np.testing.assert_allclose(1.0 / tau, 1.0 - after / before, rtol=1e-4)
    # Step 3: lr_t = 0.01 * 0.5 ** 1.5, lr_max = 0.01.
    lr_t = 0.01 * 0.5**1.5
    c = {"lr": lr_t, "independent": lr_t / 0.01, "corrected": lr_t**2 / 0.01}
    np.testing.assert_allclose(
        optimizer_timescale(opt), 1.0 / (c[mode] * 0.2), rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"weight_decay_mode": "independent"},
            "Received: max_learning_rate=None",
        ),
        (
            {"weight_decay_mode": "corrected", "max_learning_rate": 1e-4},
            "Received: max_learning_rate=0.0001",
        ),
        ({"max_learning_rate": 1e-2}, "Received: max_learning_rate=0.01"),
        (
            {
                "weight_decay_mode": "independent",
                "max_learning_rate": 1e-2,
                "decoupled": False,
            },
            "Received: weight_decay_mode='independent'",
        ),
        ({"weight_decay_mode": "fully"}, "Received: weight_decay_mode='fully'"),
    ],
)
def test_timescale_bad_mode_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message + "$"):
        timescale(1e-3, 0.1, **kwargs)
