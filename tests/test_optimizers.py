"""Tests for keras_decay.optimizers: scheduled momentum, beta_1, weight decay.

Every training is compared with Keras' update rule written in NumPy
(float64, tests/_numpy_reference.py) with the schedules written out in the
test: a Dense(2) on 3 inputs, MSE, batches of 4 in order. Tolerance for
float32 training against float64: rtol 1e-5, atol 1e-6 unless stated.
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
TRACES = [0]
TRACED = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="PyTorch runs train_step eagerly: nothing is traced",
)


class CountingModel(keras.Model):
    """Counts Python executions of `train_step` (traces on TF and JAX)."""

    def train_step(self, *args):
        TRACES[0] += 1
        return super().train_step(*args)


def _model(optimizer, jit_compile="auto", cls=CountingModel):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = cls(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    return model


def _fit(model, epochs=2, x=ref.X, y=ref.Y, **kwargs):
    TRACES[0] = 0
    return model.fit(
        x,
        y,
        batch_size=ref.BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        **kwargs,
    )


def _check(model, update, steps, initial, **kwargs):
    expected = ref.train(update, initial, steps, **kwargs)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _initial():
    return _model(keras.optimizers.SGD()).get_weights()


RAMP = schedules.LinearRamp(0.0, 0.9, 5)
RAMP_NP = ref.linear_ramp(0.0, 0.9, 5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_ramp_from_zero_matches_numpy(nesterov):
    model = _model(optimizers.SGD(0.1, momentum=RAMP, nesterov=nesterov))
    initial = model.get_weights()
    _fit(model, epochs=4)
    update = ref.sgd(ref.constant(0.1), RAMP_NP, nesterov=nesterov)
    _check(model, update, 8, initial)
    assert int(model.optimizer.iterations) == 8
    # Slots exist although the ramp starts at 0: kernel and bias.
    assert len(model.optimizer.momentums) == 2


def test_adam_scheduled_beta_1_matches_numpy():
    beta_1 = schedules.LinearRamp(0.5, 0.9, 4)
    model = _model(optimizers.Adam(0.01, beta_1=beta_1))
    initial = model.get_weights()
    _fit(model, epochs=3)
    update = ref.adam(ref.constant(0.01), ref.linear_ramp(0.5, 0.9, 4))
    _check(model, update, 6, initial)


def test_adamw_scheduled_weight_decay_matches_numpy():
    lr = schedules.ExponentialDecay(0.05, 2, 0.5)
    wd = schedules.LinearRamp(0.0, 0.2, 3)
    optimizer = optimizers.AdamW(lr, weight_decay=wd)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model = _model(optimizer)
    initial = model.get_weights()
    _fit(model, epochs=3)
    update = ref.adam(
        lambda t: 0.05 * 0.5 ** (t / 2),
        ref.constant(0.9),
        wd=ref.linear_ramp(0.0, 0.2, 3),
        decayed=(True, False),
    )
    _check(model, update, 6, initial)


def test_lion_scheduled_beta_1_matches_numpy():
    beta_1 = schedules.LinearRamp(0.2, 0.9, 4)
    model = _model(optimizers.Lion(0.01, beta_1=beta_1))
    initial = model.get_weights()
    _fit(model, epochs=3)
    update = ref.lion(ref.constant(0.01), ref.linear_ramp(0.2, 0.9, 4))
    _check(model, update, 6, initial)


def test_sgd_scheduled_weight_decay_and_one_cycle_match_numpy():
    total = 8
    lr = schedules.OneCycle(0.2, total, pct_start=0.5)
    momentum = schedules.OneCycleMomentum(total, pct_start=0.5)
    wd = schedules.LinearRamp(0.1, 0.0, 8)
    model = _model(optimizers.SGD(lr, momentum=momentum, weight_decay=wd))
    initial = model.get_weights()
    _fit(model, epochs=4)
    steps = np.arange(total)
    lr_np = [float(lr(int(t))) for t in steps]  # checked in test_schedules
    mom_np = [float(momentum(int(t))) for t in steps]
    update = ref.sgd(
        lambda t: lr_np[t],
        lambda t: mom_np[t],
        wd=ref.linear_ramp(0.1, 0.0, 8),
        decayed=(True, False),  # decay_exclude="auto": not the bias
    )
    _check(model, update, total, initial)


KERAS_EQUIVALENTS = [
    ("SGD", {"momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"momentum": 0.0}),
    ("RMSprop", {"momentum": 0.5}),
    ("RMSprop", {"momentum": 0.0, "centered": True}),
    ("Adam", {"beta_1": 0.8, "weight_decay": 0.01}),
    ("AdamW", {"beta_1": 0.8}),
    ("Nadam", {"beta_1": 0.8}),
    ("Adamax", {"beta_1": 0.8}),
    ("Lion", {"beta_1": 0.8}),
] + (
    [("Muon", {"weight_decay": 0.01, "adam_weight_decay": 0.02})]
    # Keras' Muon with `adam_weight_decay` (not Keras 3.10's first one).
    if hasattr(keras.optimizers, "Muon")
    and "adam_weight_decay"
    in inspect.signature(keras.optimizers.Muon.__init__).parameters
    else []
)


@pytest.mark.parametrize("name, kwargs", KERAS_EQUIVALENTS)
def test_float_hyperparameters_train_as_keras(name, kwargs):
    # decay_exclude=None: Keras' rule (every variable decayed).
    ours = _model(getattr(optimizers, name)(0.01, decay_exclude=None, **kwargs))
    theirs = _model(getattr(keras.optimizers, name)(0.01, **kwargs))
    _fit(ours)
    _fit(theirs)
    # Same rule; on PyTorch Keras' own classes run torch._foreach kernels.
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    config = ours.optimizer.get_config()
    groups = {"decay_exclude": None, "decay_mult": None, "lr_mult": None}
    groups["decay_groups"] = config["decay_groups"]
    groups |= {"weight_decay_mode": "lr", "cautious_weight_decay": False}
    assert config == theirs.optimizer.get_config() | groups | {
        "name": config["name"]
    }


def test_schedule_values_outside_the_range_are_clipped():
    # 0.5 -> 1.5 over 2 steps: momentum 0.5, 1.0, then clipped to 1.0.
    momentum = schedules.LinearRamp(0.5, 1.5, 2)
    model = _model(optimizers.SGD(0.05, momentum=momentum))
    initial = model.get_weights()
    _fit(model, epochs=2)
    clipped = lambda t: min(0.5 + t / 2, 1.0)  # noqa: E731
    _check(model, ref.sgd(ref.constant(0.05), clipped), 4, initial)
    values = model.optimizer.current_hyperparameters(step=7)
    assert values["momentum"] == 1.0
    wd = optimizers.AdamW(weight_decay=schedules.Warmup(RAMP, 2, 0.0))
    assert wd.current_hyperparameters(step=0)["weight_decay"] == 0.0


def test_setting_a_float_takes_effect_without_retrace():
    model = _model(optimizers.SGD(0.1, momentum=0.9))
    initial = model.get_weights()
    _fit(model, epochs=1)
    traces = TRACES[0]
    model.optimizer.momentum = 0.2
    model.fit(ref.X, ref.Y, batch_size=4, shuffle=False, verbose=0)
    update = ref.sgd(ref.constant(0.1), lambda t: 0.9 if t < 2 else 0.2)
    _check(model, update, 4, initial)
    if keras.backend.backend() != "torch":  # torch traces nothing
        assert TRACES[0] == traces  # no new trace for the second fit
    assert model.optimizer.get_config()["momentum"] == pytest.approx(0.2)


@TRACED
def test_one_trace_per_fit():
    model = _model(optimizers.SGD(0.1, momentum=RAMP, weight_decay=RAMP))
    # Built first: TensorFlow traces twice a function that creates the
    # optimizer's variables (Keras' own optimizers too).
    model.optimizer.build(model.trainable_variables)
    _fit(model, epochs=3)
    assert TRACES[0] == 1
    _fit(model, epochs=1)
    assert TRACES[0] == 0


@TRACED
def test_jit_compile_matches_numpy():
    model = _model(optimizers.SGD(0.1, momentum=RAMP), jit_compile=True)
    model.optimizer.build(model.trainable_variables)
    initial = model.get_weights()
    _fit(model, epochs=3)
    _check(model, ref.sgd(ref.constant(0.1), RAMP_NP), 6, initial)
    assert TRACES[0] == 1


def test_gradient_accumulation_matches_numpy():
    # The schedules see the micro-step count, as Keras' learning rate does.
    lr = schedules.LinearRamp(0.2, 0.05, 8)
    model = _model(
        optimizers.SGD(lr, momentum=RAMP, gradient_accumulation_steps=2)
    )
    initial = model.get_weights()
    _fit(model, epochs=4)
    update = ref.sgd(ref.linear_ramp(0.2, 0.05, 8), RAMP_NP)
    _check(model, update, 8, initial, accumulate=2)
    assert int(model.optimizer.iterations) == 4


def test_mixed_precision_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    # A small initial scale: Keras' 2 ** 15 overflows float16 at the first
    # step on PyTorch, and the LossScaleOptimizer skips it.
    optimizer = keras.optimizers.LossScaleOptimizer(
        optimizers.SGD(0.1, momentum=RAMP, weight_decay=0.01),
        initial_scale=4.0,
    )
    model = _model(optimizer)
    initial = model.get_weights()
    _fit(model, epochs=2)
    assert int(model.optimizer.iterations) == 4
    # float16 forward pass: compared with float64 at rtol 2e-3.
    expected = ref.train(
        ref.sgd(
            ref.constant(0.1),
            RAMP_NP,
            wd=ref.constant(0.01),
            decayed=(True, False),  # decay_exclude="auto": not the bias
        ),
        initial,
        4,
    )
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    values = optimizers.current_hyperparameters(model.optimizer)
    assert values["momentum"] == pytest.approx(0.9 * 4 / 5, rel=1e-6)


MIRRORED_SCRIPT = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from keras_decay import optimizers, schedules
from tests import _numpy_reference as ref
from tests import _platform
ramp = schedules.LinearRamp(0.0, 0.9, 5)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizers.SGD(0.1, momentum=ramp, weight_decay=ramp), "mse")
initial = model.get_weights()
model.fit(ref.X, ref.Y, batch_size=4, epochs=3, shuffle=False, verbose=0)
ramp_np = ref.linear_ramp(0.0, 0.9, 5)
want = ref.train(
    ref.sgd(ref.constant(0.1), ramp_np, wd=ramp_np, decayed=(True, False)),
    initial, 6)
_platform.print_mirrored_result(strategy, model, want)
"""


@pytest.mark.tensorflow_only
def test_mirrored_strategy_matches_numpy():
    _platform.check_mirrored(MIRRORED_SCRIPT, RTOL, ATOL)


@pytest.mark.jax_only
def test_jax_data_parallel_matches_numpy():
    import jax

    distribution = keras.distribution.DataParallel(devices=jax.devices())
    assert len(jax.devices()) == 2
    keras.distribution.set_distribution(distribution)
    try:
        model = _model(optimizers.Adam(0.01, beta_1=RAMP, weight_decay=RAMP))
        initial = model.get_weights()
        _fit(model, epochs=3)
    finally:
        keras.distribution.set_distribution(None)
    update = ref.adam(
        ref.constant(0.01), RAMP_NP, wd=RAMP_NP, decayed=(True, False)
    )
    _check(model, update, 6, initial)


def test_keras_file_keeps_schedules_slots_and_step(tmp_path):
    optimizer = optimizers.SGD(
        schedules.OneCycle(0.1, 20),
        momentum=schedules.OneCycleMomentum(20),
        weight_decay=1e-3,
    )
    model = _model(optimizer, cls=keras.Model)
    _fit(model, epochs=1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.optimizer) is optimizers.SGD
    assert loaded.optimizer.get_config() == optimizer.get_config()
    assert int(loaded.optimizer.iterations) == 2
    for a, b in zip(loaded.optimizer.variables, optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for m in (model, loaded):
        m.fit(ref.X, ref.Y, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_current_hyperparameters():
    lr = schedules.ExponentialDecay(0.1, 10, 0.5)
    optimizer = optimizers.Adam(lr, beta_1=RAMP, weight_decay=0.01)
    values = optimizer.current_hyperparameters(step=10)
    # One key set: Adam's beta_1 is the momentum coefficient.
    assert set(values) == {"learning_rate", "momentum", "weight_decay"}
    assert values["learning_rate"] == pytest.approx(0.05, rel=1e-6)
    assert values["momentum"] == pytest.approx(0.9, rel=1e-6)
    assert values["weight_decay"] == pytest.approx(0.01, rel=1e-6)
    assert optimizer.current_hyperparameters()["momentum"] == 0.0  # step 0
    # The same keys and values for Keras' own optimizers.
    for stock, want in [
        (
            keras.optimizers.SGD(0.1, momentum=0.5),
            {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.0},
        ),
        (
            keras.optimizers.Adam(lr, beta_1=0.7, weight_decay=0.01),
            {"learning_rate": 0.05, "momentum": 0.7, "weight_decay": 0.01},
        ),
        (
            keras.optimizers.Adagrad(0.1),
            {"learning_rate": 0.1, "weight_decay": 0.0},
        ),
    ]:
        got = optimizers.current_hyperparameters(stock, step=10)
        assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    "step, error", [(-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_current_hyperparameters_step_is_a_non_negative_int(step, error):
    optimizer = optimizers.SGD(0.1)
    with pytest.raises(error, match=f"Received: step={step!r}"):
        optimizers.current_hyperparameters(optimizer, step)


def test_one_range_one_message_and_floats_the_variable_can_hold():
    # Lion's beta_1 excludes 0 (Keras' own check): the message says so.
    with pytest.raises(ValueError, match=r"in \(0.0, 1.0\].*beta_1=0.0"):
        optimizers.Lion(beta_1=0.0)
    optimizers.Lion(beta_1=1.0)
    optimizers.SGD(momentum=0.0)  # SGD's range includes 0
    with pytest.raises(ValueError, match=r"at most .*weight_decay=1e\+300"):
        optimizers.AdamW(weight_decay=1e300)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: momentum=1.5"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(TypeError, match=r"Received: beta_1='x'"):
        optimizers.Adam(beta_1="x")
    with pytest.raises(ValueError, match=r"Received: weight_decay=-0.1"):
        optimizers.AdamW(weight_decay=-0.1)
    with pytest.raises(TypeError, match="Received: momentum=<function"):
        optimizers.SGD(momentum=lambda: 0.9)
    scheduled = optimizers.SGD(momentum=RAMP)
    with pytest.raises(TypeError, match="created with a schedule"):
        scheduled.momentum = 0.5
    model = _model(optimizers.SGD(momentum=0.5))
    model.optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match=r"Received: momentum=2.0"):
        model.optimizer.momentum = 2.0
    with pytest.raises(TypeError, match="Received: momentum=None"):
        model.optimizer.momentum = None
    # A schedule is taken (the scheduler callbacks use this setter); the
    # variable stays, and takes a float again.
    model.optimizer.momentum = RAMP
    model.optimizer.momentum = 0.25
    assert float(model.optimizer.momentum) == 0.25


@pytest.mark.parametrize(
    "name", [n for n in optimizers.__all__ if n[0].isupper()]
)
def test_signature_is_keras_arguments_then_ours(name):
    # `inspect.signature`, `help()` and the API reference show the real
    # arguments, not the `*args, **kwargs` the keras_decay bases pass on.
    cls = getattr(optimizers, name)
    keras_class = getattr(keras.optimizers, name)
    ours = inspect.signature(cls).parameters
    theirs = inspect.signature(keras_class.__init__).parameters
    expected = [n for n in theirs if n not in ("self", "kwargs")]
    expected += ["decay_exclude", "decay_mult", "lr_mult"]
    expected += ["weight_decay_mode", "cautious_weight_decay", "kwargs"]
    assert list(ours) == expected
    for n in expected[:-6]:
        assert ours[n].default == theirs[n].default
    assert ours["decay_exclude"].default == "auto"
    assert ours["decay_exclude"].kind is inspect.Parameter.KEYWORD_ONLY
    # The signature binds what the constructor takes.
    inspect.signature(cls).bind(1e-3, weight_decay=0.1, decay_mult={"a": 2})


def test_subclass_with_its_own_init_keeps_its_signature():
    class Custom(optimizers.SGD):
        def __init__(self, rate):
            super().__init__(learning_rate=rate)

    assert list(inspect.signature(Custom).parameters) == ["rate"]
