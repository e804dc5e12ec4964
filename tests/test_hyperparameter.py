"""Tests for MomentumScheduler / WeightDecayScheduler on Keras optimizers.

Every training is compared with Keras' update rule written in NumPy
(float64, tests/_numpy_reference.py): a Dense(2) layer on 3 inputs, MSE,
batches of 4 in order. rtol 1e-5, atol 1e-6 (float32 against float64).
"""

import keras
import numpy as np
import pytest

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


def test_momentum_ramp_on_keras_sgd_matches_numpy():
    model = _model(keras.optimizers.SGD(0.1))  # momentum=0.0: no slots
    initial = model.get_weights()
    history = _fit(model, epochs=3, callbacks=[MomentumScheduler(RAMP)])
    _check(model, ref.sgd(ref.constant(0.1), RAMP_NP), 6, initial)
    # The last value used (step 5) is logged and stays in the optimizer.
    assert history.history["momentum"] == pytest.approx(
        [0.9 * 1 / 5, 0.9 * 3 / 5, 0.9], rel=1e-6
    )
    assert type(model.optimizer) is optimizers.SGD
    assert model.optimizer.get_config()["momentum"] == pytest.approx(0.9)


def test_both_schedules_on_keras_optimizers_match_numpy():
    wd = ExponentialDecay(0.2, 2, 0.5)
    model = _model(keras.optimizers.Adam(0.01))
    initial = model.get_weights()
    callbacks = [
        MomentumScheduler(LinearRamp(0.5, 0.9, 4)),
        WeightDecayScheduler(wd),
    ]
    _fit(model, epochs=3, callbacks=callbacks)
    update = ref.adam(
        ref.constant(0.01),
        ref.linear_ramp(0.5, 0.9, 4),
        wd=lambda t: 0.2 * 0.5 ** (t / 2),
    )
    _check(model, update, 6, initial)


def test_rmsprop_momentum_matches_keras_with_that_momentum():
    # With the ramp held at 0.5, the callback trains as Keras' RMSprop(0.5).
    model = _model(keras.optimizers.RMSprop(0.01))
    _fit(model, callbacks=[MomentumScheduler(LinearRamp(0.5, 0.5, 1))])
    keras_model = _model(keras.optimizers.RMSprop(0.01, momentum=0.5))
    _fit(keras_model)
    for a, b in zip(model.get_weights(), keras_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@TRACED
def test_one_trace_per_fit_and_none_after():
    model = _model(keras.optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_variables)
    callbacks = [MomentumScheduler(RAMP), WeightDecayScheduler(RAMP)]
    _fit(model, epochs=3, callbacks=callbacks)
    assert TRACES[0] == 1  # one retrace for the optimizer taken over
    _fit(model, epochs=1, callbacks=callbacks)
    assert TRACES[0] == 0
    _fit(model, epochs=1)
    assert TRACES[0] == 0


@TRACED
def test_jit_compile_matches_numpy():
    model = _model(keras.optimizers.SGD(0.1), jit_compile=True)
    initial = model.get_weights()
    _fit(model, epochs=3, callbacks=[MomentumScheduler(RAMP)])
    _check(model, ref.sgd(ref.constant(0.1), RAMP_NP), 6, initial)


def test_interrupted_fit_leaves_a_plain_serializable_optimizer(tmp_path):
    model = _model(keras.optimizers.SGD(0.1), cls=keras.Model)
    initial = model.get_weights()
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(
            model, epochs=3, callbacks=[MomentumScheduler(RAMP), _Interrupt(3)]
        )
    # The momentum of step 2 was the last one used; it stays, constant.
    assert model.optimizer.get_config()["momentum"] == pytest.approx(0.36)
    path = str(tmp_path / "interrupted.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert int(loaded.optimizer.iterations) == 3
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Later fits without the callback: momentum 0.36 from step 3 on.
    data = dict(x=ref.X[ref.BATCH :], y=ref.Y[ref.BATCH :], epochs=1)
    _fit(model, **data)
    _fit(model, epochs=1)
    _fit(loaded, **data)
    _fit(loaded, epochs=1)
    momentum = lambda t: RAMP_NP(t) if t < 3 else RAMP_NP(2)  # noqa: E731
    _check(model, ref.sgd(ref.constant(0.1), momentum), 6, initial)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_out_of_range_values_raise_before_the_batch():
    model = _model(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"momentum=1\.1.* at step 1"):
        _fit(model, callbacks=[MomentumScheduler(LinearRamp(0.9, 1.3, 2))])
    assert int(model.optimizer.iterations) == 1
    model = _model(keras.optimizers.SGD(0.1))
    negative = lambda step: -0.1  # noqa: E731
    with pytest.raises(ValueError, match=r"weight_decay=-0\.1 at step 0"):
        _fit(model, callbacks=[WeightDecayScheduler(negative)])
    assert int(model.optimizer.iterations) == 0


def test_clear_errors_for_optimizers_it_cannot_take_over():
    class Custom(keras.optimizers.SGD):
        pass

    model = _model(Custom(0.1))
    with pytest.raises(TypeError, match="Received: optimizer=Custom"):
        _fit(model, callbacks=[MomentumScheduler(RAMP)])
    model = _model(optimizers.SGD(0.1, momentum=RAMP))
    with pytest.raises(ValueError, match="already schedules `momentum`"):
        _fit(model, callbacks=[MomentumScheduler(RAMP)])
