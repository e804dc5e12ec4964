"""Tests for `weight_decay_mode` and `cautious_weight_decay`.

Every training is compared with the rule written in NumPy here (float64):
the optimizer's own step from tests/_numpy_reference.py (or written below
for Muon), then the decoupled decay of the mode,

    lr:          w <- w - lr_v * wd * mask * w
    independent: w <- w - (lr_v / eta_max) * wd * mask * w
    corrected:   w <- w - (lr_v * lr_t / eta_max) * wd * mask * w

with `eta_max` the largest learning rate so far, this step included
(no decay while it is 0) and `mask = 1[u * w >= 0]` for cautious decay
(1 otherwise), `u` the step the optimizer subtracts. A Dense(2) on 3
inputs, MSE, batches of 4 in order. Tolerance for float32 training against
float64: rtol 1e-5, atol 1e-6.
"""

import inspect

import keras
import numpy as np
import pytest

from keras_decay import optimizers
from keras_decay import schedules
from tests import _numpy_reference as ref
from tests import _platform

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

RTOL, ATOL = 1e-5, 1e-6
STEPS = 20
MODES = ("lr", "independent", "corrected")
# A per-step decay of about 5e-3 at the peak in each mode.
WD = {"lr": 0.5, "independent": 0.005, "corrected": 0.5}
LR0 = 0.01
# Keras' Muon with `adam_weight_decay` and `rms_rate` (the NumPy Muon
# below); Keras 3.10's first Muon has neither.
HAS_MUON = hasattr(keras.optimizers, "Muon") and "rms_rate" in (
    inspect.signature(keras.optimizers.Muon.__init__).parameters
)
NAMES = ["SGD", "Adam", "AdamW", "Lion"] + (["Muon"] if HAS_MUON else [])


def _constant_np(t):
    return LR0


def _warmup_decay_np(t):
    # Warmup(ExponentialDecay(0.01, 5, 0.5), 5): 0 at step 0, a linear
    # ramp to the decayed value at step 5, then 0.01 * 0.5 ** (t / 5).
    if t < 5:
        return LR0 * 0.5 * t / 5
    return LR0 * 0.5 ** (t / 5)


def _schedule(kind):
    if kind == "constant":
        return LR0, _constant_np
    decay = schedules.ExponentialDecay(LR0, 5, 0.5)
    return schedules.Warmup(decay, 5), _warmup_decay_np


def _model(optimizer, **compile_kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer, "mse", **compile_kwargs)
    return model


def _fit(model, steps=STEPS, x=ref.X, y=ref.Y):
    batches = len(x) // ref.BATCH
    model.fit(
        x,
        y,
        batch_size=ref.BATCH,
        epochs=steps // batches,
        shuffle=False,
        verbose=0,
    )


def _newton_schulz(x, steps=5, a=3.4445, b=-4.7750, c=2.0315):
    """Keras' `zeropower_via_newtonschulz5` for one matrix."""
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


def _muon_step(lr, momentum=0.95, rms_rate=0.2, beta_1=0.9, beta_2=0.999):
    """Keras' Muon (Nesterov) for 2-D variables, its AdamW for the others."""

    def update(t, params, grads, state):
        m = state.setdefault("m", [np.zeros_like(p) for p in params])
        v = state.setdefault("v", [np.zeros_like(p) for p in params])
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if p.ndim == 2:
                m[i] = momentum * m[i] + g
                o = _newton_schulz(g + momentum * m[i])
                scale = np.sqrt(max(p.shape)) * rms_rate
                out.append(p - lr(t) * o * scale)
            else:
                alpha = (
                    lr(t)
                    * np.sqrt(1 - beta_2 ** (t + 1))
                    / (1 - beta_1 ** (t + 1))
                )
                m[i] = m[i] + (g - m[i]) * (1 - beta_1)
                v[i] = v[i] + (g * g - v[i]) * (1 - beta_2)
                out.append(p - m[i] * alpha / (np.sqrt(v[i]) + 1e-7))
        return out

    return update


def _step(name, lr):
    """The optimizer's own step in NumPy, without decay."""
    if name == "SGD":
        return ref.sgd(lr, ref.constant(0.9))
    if name in ("Adam", "AdamW"):
        return ref.adam(lr, ref.constant(0.9))
    if name == "Lion":
        return ref.lion(lr, ref.constant(0.9))
    return _muon_step(lr)


def _with_decay(step, lr, wd, mode, cautious, lr_mult=1.0):
    """`step` followed by the decoupled decay of `mode` (see the top).

    The decay of `w` is computed from `w` before the step, so decay before
    or beside the step is the same rule (the steps here do not read `w`).
    `wd(t, i)` is the decay of parameter `i` (0: not decayed).
    """

    def update(t, params, grads, state):
        eta_max = max(state.get("eta_max", 0.0), lr(t))
        state["eta_max"] = eta_max
        lr_v = lr_mult * lr(t)
        if mode == "lr":
            c = lr_v
        elif eta_max == 0.0:
            c = 0.0
        elif mode == "independent":
            c = lr_v / eta_max
        else:
            c = lr_v * lr(t) / eta_max
        scaled = lambda t: lr_mult * lr(t)  # noqa: E731
        stepped = step(scaled)(t, params, grads, state["inner"])
        out = []
        for i, (p, s) in enumerate(zip(params, stepped)):
            u = p - s  # lr_v * u: the step subtracted
            mask = (u * p >= 0) if cautious else 1.0
            out.append(s - c * wd(t, i) * mask * p)
        return out

    def run(t, params, grads, state):
        state.setdefault("inner", {})
        return update(t, params, grads, state)

    return run


def _reference(name, lr_np, mode, cautious, initial, wd=None, **kwargs):
    wd = WD[mode] if wd is None else wd
    if name == "Muon":
        # weight_decay for the kernel (Muon), adam_weight_decay for the bias.
        per_param = lambda t, i: wd if i == 0 else wd / 2  # noqa: E731
    else:
        per_param = lambda t, i: wd  # noqa: E731
    lr_mult = kwargs.get("lr_mult", 1.0)

    def step(lr):
        return _step(name, lr)

    update = _with_decay(step, lr_np, per_param, mode, cautious, lr_mult)
    return ref.train(update, initial, STEPS)


def _optimizer(name, lr, mode, cautious, **kwargs):
    wd = WD[mode]
    cls = getattr(optimizers, name)
    args = dict(
        weight_decay=wd,
        weight_decay_mode=mode,
        cautious_weight_decay=cautious,
        decay_exclude=None,
        **kwargs,
    )
    if name == "SGD":
        args["momentum"] = 0.9
    if name == "Muon":
        args["adam_weight_decay"] = wd / 2
    return cls(lr, **args)


def _check(model, expected):
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


CASES = [
    (name, mode, kind, False)
    for name in NAMES
    for mode in MODES
    for kind in ("constant", "warmup_decay")
] + [(name, mode, "warmup_decay", True) for name in NAMES for mode in MODES]


@pytest.mark.parametrize("name, mode, kind, cautious", CASES)
def test_mode_matches_numpy(name, mode, kind, cautious):
    lr, lr_np = _schedule(kind)
    model = _model(_optimizer(name, lr, mode, cautious))
    initial = model.get_weights()
    _fit(model)
    expected = _reference(name, lr_np, mode, cautious, initial)
    _check(model, expected)
    # The test can fail: another mode with the same weight decay (at a
    # constant rate, "corrected" is "lr"), or no mask, is far from this.
    other = {"lr": "independent", "independent": "lr"}.get(mode, "independent")
    wrong = _reference(name, lr_np, other, cautious, initial, wd=WD[mode])
    if cautious:
        wrong = _reference(name, lr_np, mode, False, initial)
    assert (
        max(np.abs(g - w).max() for g, w in zip(model.get_weights(), wrong))
        > 100 * ATOL
    )
    if mode == "lr":
        assert model.optimizer.max_learning_rate is None
    else:
        peak = max(lr_np(t) for t in range(STEPS))
        np.testing.assert_allclose(
            float(model.optimizer.max_learning_rate), peak, rtol=1e-6
        )


@pytest.mark.parametrize("mode", ["independent", "corrected"])
def test_lr_mult_scales_the_decay_and_zero_freezes(mode):
    lr, lr_np = _schedule("warmup_decay")
    optimizer = _optimizer("AdamW", lr, mode, False, lr_mult={"dense": 0.5})
    model = _model(optimizer)
    initial = model.get_weights()
    _fit(model)
    expected = _reference("AdamW", lr_np, mode, False, initial, lr_mult=0.5)
    _check(model, expected)
    frozen = _model(_optimizer("SGD", lr, mode, True, lr_mult={"dense": 0}))
    initial = frozen.get_weights()
    _fit(frozen)
    for got, want in zip(frozen.get_weights(), initial):
        np.testing.assert_array_equal(got, want)


def _adam_decay_first(lr_np, decay_factor, wd, initial):
    """NumPy AdamW with the decay `w *= 1 - decay_factor(t) * wd` first."""
    step = ref.adam(lr_np, ref.constant(0.9))

    def update(t, params, grads, state):
        params = [p * (1 - decay_factor(t) * wd) for p in params]
        return step(t, params, grads, state)

    return ref.train(update, initial, STEPS)


# The rules of other libraries, for a schedule that starts at its peak
# (their lr_max is the constructor's rate, eta_0 = eta_max here):
# timm AdamW(corrected_weight_decay=True) scales the decay by
# lr_t ** 2 / lr_max; Composer's DecoupledAdamW by lr_t / initial_lr and
# optimi by lr_t / max_lr.
LIBRARY_RULES = {
    "corrected": lambda lr_t: lr_t**2 / LR0,  # timm
    "independent": lambda lr_t: lr_t / LR0,  # Composer, optimi
}


@pytest.mark.parametrize("mode", sorted(LIBRARY_RULES))
def test_mode_equals_the_library_rule(mode):
    lr = schedules.ExponentialDecay(LR0, 5, 0.5)
    lr_np = lambda t: LR0 * 0.5 ** (t / 5)  # noqa: E731
    model = _model(_optimizer("AdamW", lr, mode, False))
    initial = model.get_weights()
    _fit(model)
    rule = LIBRARY_RULES[mode]
    expected = _adam_decay_first(
        lr_np, lambda t: rule(lr_np(t)), WD[mode], initial
    )
    _check(model, expected)


def _apply(optimizer, variable, gradients):
    for g in gradients:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
    return keras.ops.convert_to_numpy(variable)


@pytest.mark.parametrize("name", ["SGD", "Adam", "Lion"])
def test_cautious_mask_is_the_sign_agreement(name):
    # One step from zero slots: SGD's u is g, Adam's m_hat / (sqrt(v_hat) +
    # eps) and Lion's sign(...) both have the sign of g.
    w0 = np.array([1.0, -1.0, 2.0, -2.0, 0.5, -0.5], "float32")
    g = np.array([1.0, 1.0, -1.0, -1.0, 0.3, -0.3], "float32")
    lr, wd = 0.1, 0.5
    expected_mask = np.sign(g) == np.sign(w0)  # [T, F, F, T, T, T]
    results = {}
    for cautious, decay in ((True, wd), (False, None)):
        variable = keras.Variable(w0, name="w")
        optimizer = getattr(optimizers, name)(
            lr,
            weight_decay=decay,
            cautious_weight_decay=cautious,
            decay_exclude=None,
        )
        if cautious:
            optimizer.track_cautious_fraction = True
        results[cautious] = _apply(optimizer, variable, [g])
        # The step counts the entries it decayed: 4 of 6.
        fraction = optimizer.cautious_fraction
        assert fraction == (np.mean(expected_mask) if cautious else None)
    # Decayed entries moved by lr * wd * w0 more than the undecayed step.
    decayed = results[False] - results[True]
    np.testing.assert_allclose(
        decayed, lr * wd * w0 * expected_mask, rtol=1e-6, atol=1e-7
    )


def test_cautious_counting_is_opt_in_and_needs_cautious_decay():
    w0 = np.array([1.0, -1.0, 2.0], "float32")
    g = np.array([1.0, 1.0, -1.0], "float32")
    optimizer = optimizers.SGD(
        0.1, weight_decay=0.5, cautious_weight_decay=True, decay_exclude=None
    )
    assert optimizer.track_cautious_fraction is False
    untracked = _apply(optimizer, keras.Variable(w0, name="w"), [g])
    assert optimizer.cautious_fraction is None  # Not counted: no cost.
    tracked = optimizers.SGD(
        0.1, weight_decay=0.5, cautious_weight_decay=True, decay_exclude=None
    )
    tracked.track_cautious_fraction = True
    same = _apply(tracked, keras.Variable(w0, name="w"), [g])
    np.testing.assert_array_equal(untracked, same)  # Counting changes none.
    assert tracked.cautious_fraction == pytest.approx(1 / 3)
    plain = optimizers.SGD(0.1, weight_decay=0.5)
    with pytest.raises(ValueError, match="needs cautious_weight_decay=True"):
        plain.track_cautious_fraction = True
    with pytest.raises(TypeError, match="track_cautious_fraction"):
        tracked.track_cautious_fraction = "yes"


@pytest.mark.parametrize("name", ["SGD", "Adam", "Lion"])
@pytest.mark.parametrize("mode", MODES)
def test_an_update_that_always_opposes_the_sign_never_decays(name, mode):
    w0 = np.array([0.5, 1.0, -0.5, -2.0], "float32")
    # g = -sign(w): u has the sign of g in all three, so the step moves w
    # away from zero and u * w < 0 at every step.
    g = -np.sign(w0)
    runs = {}
    for decay in (0.5, None):
        variable = keras.Variable(w0, name="w")
        optimizer = getattr(optimizers, name)(
            0.01,
            weight_decay=decay,
            weight_decay_mode=mode,
            cautious_weight_decay=True,
            decay_exclude=None,
        )
        runs[decay] = _apply(optimizer, variable, [g] * 10)
    np.testing.assert_array_equal(runs[0.5], runs[None])
    assert np.all(np.abs(runs[0.5]) > np.abs(w0))


def test_a_step_at_learning_rate_zero_does_not_decay():
    lr = schedules.LinearRamp(0.0, 0.01, 5)
    w0 = np.array([1.0, -1.0], "float32")
    for mode in ("independent", "corrected"):
        variable = keras.Variable(w0, name="w")
        optimizer = optimizers.SGD(
            lr, weight_decay=0.5, weight_decay_mode=mode, decay_exclude=None
        )
        got = _apply(optimizer, variable, [np.zeros(2, "float32")])
        np.testing.assert_array_equal(got, w0)
        assert float(optimizer.max_learning_rate) == 0.0


@pytest.mark.parametrize(
    "name, mode, cautious",
    [
        ("AdamW", "independent", False),
        ("SGD", "corrected", True),
        ("Lion", "independent", True),
    ]
    + ([("Muon", "corrected", False)] if HAS_MUON else []),
)
def test_save_at_batch_7_and_resume(tmp_path, name, mode, cautious):
    lr, _ = _schedule("warmup_decay")
    repeats = STEPS * ref.BATCH // len(ref.X)
    x, y = np.tile(ref.X, (repeats, 1)), np.tile(ref.Y, (repeats, 1))
    full = _model(_optimizer(name, lr, mode, cautious))
    full.fit(x, y, batch_size=ref.BATCH, shuffle=False, verbose=0)
    part = _model(_optimizer(name, lr, mode, cautious))
    cut = 7 * ref.BATCH
    part.fit(x[:cut], y[:cut], batch_size=ref.BATCH, shuffle=False, verbose=0)
    path = str(tmp_path / "m.keras")
    part.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.optimizer.get_config() == part.optimizer.get_config()
    # eta_max at batch 7: the warm-up's peak, restored (a fresh 0 would
    # undo the schedule's shape in the resumed decay).
    assert float(loaded.optimizer.max_learning_rate) == float(
        part.optimizer.max_learning_rate
    )
    assert float(loaded.optimizer.max_learning_rate) > 0.0
    loaded.fit(x[cut:], y[cut:], batch_size=ref.BATCH, shuffle=False, verbose=0)
    assert int(loaded.optimizer.iterations) == STEPS
    for a, b in zip(loaded.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lr_mode_is_the_default_and_adds_no_variable():
    default = _model(optimizers.AdamW(LR0, weight_decay=0.1))
    explicit = _model(
        optimizers.AdamW(
            LR0,
            weight_decay=0.1,
            weight_decay_mode="lr",
            cautious_weight_decay=False,
        )
    )
    for model in (default, explicit):
        _fit(model)
    for a, b in zip(default.get_weights(), explicit.get_weights()):
        np.testing.assert_array_equal(a, b)
    names = [v.name for v in default.optimizer.variables]
    assert names == [v.name for v in explicit.optimizer.variables]
    assert "max_learning_rate" not in names
    assert default.optimizer.weight_decay_mode == "lr"
    assert default.optimizer.cautious_weight_decay is False


def test_config_round_trip():
    optimizer = optimizers.SGD(
        0.1,
        weight_decay=0.01,
        weight_decay_mode="corrected",
        cautious_weight_decay=True,
    )
    config = optimizer.get_config()
    assert config["weight_decay_mode"] == "corrected"
    assert config["cautious_weight_decay"] is True
    again = optimizers.SGD.from_config(config)
    assert again.get_config() == config
    # A config saved before the modes existed loads in "lr" mode.
    del config["weight_decay_mode"], config["cautious_weight_decay"]
    old = optimizers.SGD.from_config(config)
    assert old.weight_decay_mode == "lr"
    assert old.cautious_weight_decay is False


@pytest.mark.parametrize("name", NAMES + ["RMSprop", "Nadam", "Adamax"])
def test_bad_mode_and_cautious_arguments(name):
    cls = getattr(optimizers, name)
    with pytest.raises(ValueError) as error:
        cls(weight_decay_mode="decoupled")
    assert str(error.value) == (
        "Invalid value received for argument `weight_decay_mode`. Expected "
        "one of {'lr', 'independent', 'corrected'}. Received: "
        "weight_decay_mode='decoupled'"
    )
    with pytest.raises(TypeError, match=r"cautious_weight_decay='yes'"):
        cls(cautious_weight_decay="yes")


ON_TORCH = keras.backend.backend() == "torch"


@pytest.mark.skipif(
    ON_TORCH,
    reason="Keras refuses steps_per_execution > 1 and XLA on PyTorch",
)
@pytest.mark.parametrize(
    "name, mode, cautious",
    [("AdamW", "corrected", True), ("SGD", "independent", False)],
)
def test_jit_compile_and_steps_per_execution_match_numpy(name, mode, cautious):
    lr, lr_np = _schedule("warmup_decay")
    model = _model(
        _optimizer(name, lr, mode, cautious),
        jit_compile=True,
        steps_per_execution=3,
    )
    initial = model.get_weights()
    _fit(model)
    _check(model, _reference(name, lr_np, mode, cautious, initial))


def test_loss_scale_optimizer_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    lr, lr_np = _schedule("warmup_decay")
    optimizer = keras.optimizers.LossScaleOptimizer(
        _optimizer("AdamW", lr, "independent", True), initial_scale=4.0
    )
    model = _model(optimizer)
    initial = model.get_weights()
    _fit(model)
    assert int(model.optimizer.iterations) == STEPS
    expected = _reference("AdamW", lr_np, "independent", True, initial)
    # float16 forward pass: compared with float64 at rtol 2e-3.
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    peak = max(_warmup_decay_np(t) for t in range(STEPS))
    inner = model.optimizer.inner_optimizer
    np.testing.assert_allclose(float(inner.max_learning_rate), peak, 1e-6)


MIRRORED_SCRIPT = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tests import test_optimizer_modes as t
from tests import _platform
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
lr, lr_np = t._schedule("warmup_decay")
with strategy.scope():
    model = t._model(t._optimizer("SGD", lr, "corrected", True))
initial = model.get_weights()
t._fit(model)
want = t._reference("SGD", lr_np, "corrected", True, initial)
_platform.print_mirrored_result(strategy, model, want)
"""


@pytest.mark.tensorflow_only
def test_mirrored_strategy_matches_numpy():
    _platform.check_mirrored(MIRRORED_SCRIPT, RTOL, ATOL)


@pytest.mark.jax_only
def test_jax_data_parallel_matches_numpy():
    import jax

    assert len(jax.devices()) == 2
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices())
    )
    lr, lr_np = _schedule("warmup_decay")
    try:
        model = _model(_optimizer("Adam", lr, "independent", True))
        initial = model.get_weights()
        _fit(model)
    finally:
        keras.distribution.set_distribution(None)
    _check(model, _reference("Adam", lr_np, "independent", True, initial))


@pytest.mark.skipif(not HAS_MUON, reason="Keras' Muon with rms_rate")
def test_from_keras_converts_muon():
    theirs = keras.optimizers.Muon(0.01, weight_decay=0.02, momentum=0.9)
    ours = optimizers.from_keras(theirs)
    assert type(ours) is optimizers.Muon
    config = ours.get_config()
    assert config["decay_exclude"] is None
    for key, value in theirs.get_config().items():
        if key != "name":
            assert config[key] == value, key
