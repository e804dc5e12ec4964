"""Tests for MomentumScheduler / WeightDecayScheduler and `from_keras`.

The callbacks hand their schedule to a `keras_decay.optimizers` optimizer,
which evaluates it inside each step. Every training is compared with Keras'
update rule written in NumPy (float64, tests/_numpy_reference.py): a
Dense(2) layer on 3 inputs, MSE, batches of 4 in order. rtol 1e-5, atol
1e-6 (float32 against float64) unless stated.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_decay import optimizers
from keras_decay.callbacks import MomentumScheduler
from keras_decay.callbacks import WeightDecayScheduler
from keras_decay.schedules import ExponentialDecay
from keras_decay.schedules import LinearRamp
from tests import _numpy_reference as ref
from tests.test_optimizers import TRACED
from tests.test_optimizers import TRACES
from tests.test_optimizers import _check
from tests.test_optimizers import _fit
from tests.test_optimizers import _model

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

RAMP = LinearRamp(0.0, 0.9, 5)
RAMP_NP = ref.linear_ramp(0.0, 0.9, 5)


class _Interrupt(keras.callbacks.Callback):
    """Raises after the given global step (1-based count of batches)."""

    def __init__(self, after_step):
        super().__init__()
        self.after_step = after_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.after_step:
            raise RuntimeError("interrupted")


class _Constant(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, value):
        self.value = value

    def __call__(self, step):
        return ops.full_like(ops.cast(step, "float32"), self.value)

    def get_config(self):
        return {"value": self.value}


def test_momentum_ramp_matches_numpy_and_stays_with_the_optimizer():
    model = _model(optimizers.SGD(0.1))  # a float momentum, built at fit
    initial = model.get_weights()
    scheduler = MomentumScheduler(RAMP)
    history = _fit(model, epochs=3, callbacks=[scheduler])
    _check(model, ref.sgd(ref.constant(0.1), RAMP_NP), 6, initial)
    # The value the last step of each epoch used (steps 1, 3, 5).
    assert history.history["momentum"] == pytest.approx(
        [0.9 * 1 / 5, 0.9 * 3 / 5, 0.9], rel=1e-6
    )
    # The optimizer owns the schedule now: its class and config say so.
    assert type(model.optimizer) is optimizers.SGD
    config = model.optimizer.get_config()
    assert config["momentum"]["class_name"] == "LinearRamp"
    # Built with the float first, it keeps that variable (saved by
    # position), for a float set later.
    assert config["hyperparameter_variables"] == ["momentum"]


def test_both_schedules_on_a_converted_keras_adam_match_numpy():
    wd = ExponentialDecay(0.2, 2, 0.5)
    model = _model(optimizers.from_keras(keras.optimizers.Adam(0.01)))
    initial = model.get_weights()
    callbacks = [
        MomentumScheduler(LinearRamp(0.5, 0.9, 4)),
        WeightDecayScheduler(wd),
    ]
    _fit(model, epochs=3, callbacks=callbacks)
    update = ref.adam(  # from_keras keeps Keras' rule: the bias decays too
        ref.constant(0.01),
        ref.linear_ramp(0.5, 0.9, 4),
        wd=lambda t: 0.2 * 0.5 ** (t / 2),
    )
    _check(model, update, 6, initial)


def test_rmsprop_momentum_matches_keras_with_that_momentum():
    # With the ramp held at 0.5, the callback trains as Keras' RMSprop(0.5).
    model = _model(optimizers.RMSprop(0.01, decay_exclude=None))
    _fit(model, callbacks=[MomentumScheduler(LinearRamp(0.5, 0.5, 1))])
    keras_model = _model(keras.optimizers.RMSprop(0.01, momentum=0.5))
    _fit(keras_model)
    for a, b in zip(model.get_weights(), keras_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _probe_model(steps_per_execution=1, jit_compile=False):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(8, name="dense")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizers.AdamW(0.01),
        "mse",
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


@pytest.mark.parametrize(
    ("steps_per_execution", "jit_compile"),
    [
        # PyTorch: Keras refuses steps_per_execution > 1.
        pytest.param(4, False, marks=pytest.mark.backends("tensorflow", "jax")),
        pytest.param(1, True, marks=pytest.mark.jit_compile),
        pytest.param(4, True, marks=pytest.mark.jit_compile),
    ],
)
def test_every_execution_path_gives_the_per_step_schedule(
    steps_per_execution, jit_compile
):
    """The issue's probe: 2 epochs of 8 steps, both schedules moving each
    step; a host-assigned value would be a staircase every 4 steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.normal(size=(32, 8)).astype("float32")

    def train(model):
        callbacks = [
            MomentumScheduler(LinearRamp(0.5, 0.95, 12)),
            WeightDecayScheduler(ExponentialDecay(1.0, 3, 0.5)),
        ]
        model.fit(
            x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
            callbacks=callbacks,
        )  # fmt: skip
        return model.get_weights()

    reference = train(_probe_model())
    got = train(_probe_model(steps_per_execution, jit_compile))
    for a, b in zip(got, reference):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@TRACED
def test_one_trace_per_fit_and_none_after():
    model = _model(optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_variables)
    callbacks = [MomentumScheduler(RAMP), WeightDecayScheduler(RAMP)]
    _fit(model, epochs=3, callbacks=callbacks)
    assert TRACES[0] == 1
    _fit(model, epochs=1, callbacks=callbacks)  # the same schedules
    assert TRACES[0] == 0
    _fit(model, epochs=1)
    assert TRACES[0] == 0


@pytest.mark.jit_compile
def test_jit_compile_matches_numpy():
    model = _model(optimizers.SGD(0.1), jit_compile=True)
    initial = model.get_weights()
    _fit(model, epochs=3, callbacks=[MomentumScheduler(RAMP)])
    _check(model, ref.sgd(ref.constant(0.1), RAMP_NP), 6, initial)


def test_interrupted_fit_leaves_the_schedule_in_a_saved_optimizer(tmp_path):
    model = _model(optimizers.SGD(0.1), cls=keras.Model)
    initial = model.get_weights()
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(
            model, epochs=3, callbacks=[MomentumScheduler(RAMP), _Interrupt(3)]
        )
    # The optimizer holds the schedule, interrupted or not; saved with it.
    assert model.optimizer.get_config()["momentum"]["class_name"] == (
        "LinearRamp"
    )
    path = str(tmp_path / "interrupted.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert int(loaded.optimizer.iterations) == 3
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Later fits without the callback go on along the schedule, in memory
    # and from the file alike.
    data = dict(x=ref.X[ref.BATCH :], y=ref.Y[ref.BATCH :], epochs=1)
    _fit(model, **data)
    _fit(model, epochs=1)
    _fit(loaded, **data)
    _fit(loaded, epochs=1)
    _check(model, ref.sgd(ref.constant(0.1), RAMP_NP), 6, initial)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_float_set_after_the_fit_ends_the_schedule(tmp_path):
    model = _model(optimizers.SGD(0.1), cls=keras.Model)
    initial = model.get_weights()
    _fit(model, epochs=1, callbacks=[MomentumScheduler(RAMP)])  # steps 0, 1
    model.optimizer.momentum = 0.36
    model.make_train_function(force=True)
    _fit(model, epochs=2)  # steps 2..5 at 0.36
    momentum = lambda t: RAMP_NP(t) if t < 2 else 0.36  # noqa: E731
    _check(model, ref.sgd(ref.constant(0.1), momentum), 6, initial)
    assert model.optimizer.get_config()["momentum"] == 0.36
    assert "hyperparameter_variables" not in model.optimizer.get_config()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_callback_replaces_a_schedule_given_to_the_optimizer():
    model = _model(optimizers.SGD(0.1, momentum=RAMP))
    initial = model.get_weights()
    _fit(model, callbacks=[MomentumScheduler(LinearRamp(0.5, 0.5, 1))])
    _check(model, ref.sgd(ref.constant(0.1), ref.constant(0.5)), 4, initial)


def test_out_of_range_values_raise_before_the_first_step():
    model = _model(optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"momentum=1\.1.* at step 1"):
        _fit(model, callbacks=[MomentumScheduler(LinearRamp(0.9, 1.3, 2))])
    assert int(model.optimizer.iterations) == 0
    model = _model(optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"weight_decay=-0\.1 at step 0"):
        _fit(model, callbacks=[WeightDecayScheduler(_Constant(-0.1))])
    assert int(model.optimizer.iterations) == 0
    # Only the steps this fit takes count: 2 epochs of 2 steps, 0..3.
    model = _model(optimizers.SGD(0.1))
    late = LinearRamp(0.0, 1.5, 6)  # 0.75 at step 3, 1.25 at step 5
    _fit(model, callbacks=[MomentumScheduler(late)])
    assert int(model.optimizer.iterations) == 4


def test_a_keras_optimizer_is_a_type_error_that_names_the_fix():
    class Custom(keras.optimizers.SGD):
        pass

    for optimizer in (keras.optimizers.SGD(0.1), Custom(0.1)):
        model = _model(optimizer)
        with pytest.raises(TypeError, match="from_keras") as info:
            _fit(model, callbacks=[MomentumScheduler(RAMP)])
        name = type(optimizer).__name__
        assert str(info.value).endswith(f"Received: optimizer={name}")
        assert int(model.optimizer.iterations) == 0
        assert type(model.optimizer) is type(optimizer)  # unchanged
        assert model.optimizer.momentum == 0.0  # still a float


def test_a_plain_function_is_refused_with_the_reason():
    with pytest.raises(TypeError, match="LearningRateSchedule") as info:
        MomentumScheduler(lambda step: 0.9)
    assert "Received: schedule=<function" in str(info.value)


# --- from_keras ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.optimizers.SGD(0.05, momentum=0.8, weight_decay=0.1),
        lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
        lambda: keras.optimizers.Adam(0.01, beta_1=0.8, weight_decay=0.05),
        lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
        lambda: keras.optimizers.Nadam(0.01, weight_decay=0.05),
        lambda: keras.optimizers.Adamax(0.01, weight_decay=0.05),
        lambda: keras.optimizers.Lion(0.001, beta_1=0.8, weight_decay=0.05),
    ],
    ids=["SGD", "RMSprop", "Adam", "AdamW", "Nadam", "Adamax", "Lion"],
)
def test_from_keras_keeps_the_configuration_and_the_training(make):
    stock = make()
    converted = optimizers.from_keras(stock)
    name = type(stock).__name__
    assert type(converted) is getattr(optimizers, name)
    config = converted.get_config()
    assert config.pop("decay_exclude") is None  # Keras' rule
    assert config.pop("decay_mult") is None and config.pop("lr_mult") is None
    assert config.pop("weight_decay_mode") == "lr"  # Keras' rule
    assert config.pop("cautious_weight_decay") is False
    assert config == stock.get_config()
    keras_model, model = _model(make()), _model(converted)
    _fit(keras_model, epochs=3)
    _fit(model, epochs=3)
    # float32 in another order of operations (on PyTorch Keras' own classes
    # use fused torch._foreach updates): 3.5e-6 relative seen for Nadam.
    for a, b in zip(model.get_weights(), keras_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_from_keras_converts_a_loss_scale_optimizer_and_refuses_others():
    wrapped = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1), initial_scale=64.0
    )
    converted = optimizers.from_keras(wrapped)
    assert isinstance(converted, keras.optimizers.LossScaleOptimizer)
    assert type(converted.inner_optimizer) is optimizers.SGD
    assert converted.get_config()["initial_scale"] == 64.0

    class Custom(keras.optimizers.SGD):
        pass

    with pytest.raises(TypeError, match="Received: optimizer=Custom"):
        optimizers.from_keras(Custom())
    with pytest.raises(TypeError, match="Received: optimizer=Adagrad"):
        optimizers.from_keras(keras.optimizers.Adagrad())
    ours = optimizers.Adam(0.1, beta_1=RAMP)
    copy = optimizers.from_keras(ours)
    assert copy is not ours and copy.get_config() == ours.get_config()
