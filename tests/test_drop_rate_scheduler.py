"""Tests for keras_decay.callbacks.DropRateScheduler."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from keras import ops

from keras_decay.callbacks import DropRateScheduler
from keras_decay.layers import ClassicDropout
from keras_decay.layers import DropBlock2D
from keras_decay.layers import DropConnectDense

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

BACKEND = keras.backend.backend()

RAMP_STEPS = 6
END_RATE = 0.3


def _ramp():
    # PolynomialDecay with power 1 from 0 is a linear ramp, then constant.
    return keras.optimizers.schedules.PolynomialDecay(
        0.0, RAMP_STEPS, end_learning_rate=END_RATE, power=1.0
    )


def _ramp_numpy(step):
    return END_RATE * np.minimum(step, RAMP_STEPS) / RAMP_STEPS


class _TraceCounter(keras.layers.Layer):
    """Identity layer counting Python executions of `call` (= traces)."""

    traces = 0

    def call(self, x):
        type(self).traces += 1
        return x


class _Recorder(keras.callbacks.Callback):
    """Records each layer's rate variable and the loss after every batch."""

    def __init__(self, names):
        super().__init__()
        self.names = names
        self.rates = []
        self.losses = []
        self.traces = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(
            [
                float(
                    ops.convert_to_numpy(self.model.get_layer(n).rate_variable)
                )
                for n in self.names
            ]
        )
        self.losses.append((batch, float(logs["loss"])))
        self.traces.append(_TraceCounter.traces)


def _probe_model(units=400):
    """ClassicDropout on ones, summed by a frozen all-ones kernel.

    The output is the number of kept units, `units * (1 - rate)` on average,
    so the per-batch loss shows the rate used inside the compiled step.
    """
    _TraceCounter.traces = 0
    return keras.Sequential(
        [
            keras.Input((units,)),
            _TraceCounter(),
            ClassicDropout(0.0, seed=1, name="classic"),
            keras.layers.Dense(
                1, use_bias=False, kernel_initializer="ones", name="sum"
            ),
        ]
    )


def _per_batch_losses(records, batch_count):
    """Undoes Keras' running mean of the loss within each epoch."""
    losses = []
    for i, (batch, mean) in enumerate(records):
        previous = records[i - 1][1] if batch > 0 else 0.0
        losses.append(mean * (batch + 1) - previous * batch)
    return np.array(losses)


@pytest.mark.parametrize(
    "jit",
    [
        False,
        # On PyTorch `jit_compile=True` is `torch.compile` (minutes of C++
        # compilation on CPU); the eager step is tested there.
        pytest.param(True, marks=pytest.mark.backends("tensorflow", "jax")),
    ],
)
def test_rate_follows_schedule_inside_fit_without_retracing(jit):
    units, batches, epochs = 400, 4, 3
    model = _probe_model(units)
    model.compile(
        keras.optimizers.SGD(learning_rate=0.0),
        loss=lambda y_true, y_pred: ops.mean(y_pred, axis=-1),
        jit_compile=jit,
    )
    traces_before_fit = _TraceCounter.traces
    recorder = _Recorder(["classic"])
    x = np.ones((batches * 2, units), "float32")
    y = np.zeros((batches * 2, 1), "float32")
    history = model.fit(
        x,
        y,
        batch_size=2,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[DropRateScheduler(_ramp()), recorder],
    )
    steps = np.arange(batches * epochs)
    np.testing.assert_allclose(
        np.array(recorder.rates)[:, 0], _ramp_numpy(steps), rtol=1e-6
    )
    np.testing.assert_allclose(
        history.history["drop_rate"],
        _ramp_numpy(steps[batches - 1 :: batches]),
        rtol=1e-6,
    )
    # The compiled step used each new rate: kept count ~ units * (1 - rate),
    # binomial std over 2 samples at most sqrt(2*400*0.25)/2 = 7.1; allow 5x.
    kept = _per_batch_losses(recorder.losses, batches)
    expected = units * (1.0 - _ramp_numpy(steps))
    assert np.all(np.abs(kept - expected) < 5 * 7.1)
    assert kept[0] == units  # rate 0 at step 0: nothing dropped
    # A compiled train step is not retraced when the rate changes (JAX and
    # PyTorch run `jit_compile=False` eagerly: a call per step).
    if BACKEND == "tensorflow" or jit:
        # TensorFlow traces once; JAX once more at the second step (the
        # state's placement changes after the first): none after that, while
        # the rate changes at every step.
        assert recorder.traces[1:] == [recorder.traces[-1]] * (
            len(recorder.traces) - 1
        )
        assert recorder.traces[-1] - traces_before_fit <= 2


def _three_layer_model():
    return keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            DropBlock2D(0.05, 2, seed=1, name="block"),
            ClassicDropout(0.05, seed=2, name="classic"),
            keras.layers.Flatten(),
            DropConnectDense(2, 0.05, seed=3, name="connect"),
        ]
    )


def _fit(model, callback, recorder=None, epochs=1):
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *model.input_shape[1:])).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    callbacks = [callback] + ([recorder] if recorder else [])
    model.fit(x, y, batch_size=2, epochs=epochs, verbose=0, callbacks=callbacks)


def test_drives_all_layers_by_default_and_only_named_ones_otherwise():
    names = ["block", "classic", "connect"]
    model = _three_layer_model()
    recorder = _Recorder(names)
    _fit(model, DropRateScheduler(_ramp()), recorder)
    expected = _ramp_numpy(np.arange(4))[:, None].repeat(3, axis=1)
    np.testing.assert_allclose(recorder.rates, expected, rtol=1e-6)

    model = _three_layer_model()
    recorder = _Recorder(names)
    _fit(model, DropRateScheduler(_ramp(), layers=["connect"]), recorder)
    rates = np.array(recorder.rates)
    np.testing.assert_allclose(
        rates[:, 2], _ramp_numpy(np.arange(4)), rtol=1e-6
    )
    np.testing.assert_allclose(rates[:, :2], 0.05, rtol=1e-6)
    # The constructor's rate stays in the config.
    assert model.get_layer("connect").get_config()["rate"] == 0.05


def test_finds_layers_in_nested_models():
    inner = keras.Sequential(
        [keras.Input((4,)), ClassicDropout(0.1, name="inner_drop")]
    )
    model = keras.Sequential(
        [keras.Input((4,)), inner, keras.layers.Dense(2)], name="outer"
    )
    recorder = _Recorder([])
    model.compile("sgd", "mse")
    callback = DropRateScheduler(_ramp())
    model.fit(
        np.ones((4, 4)),
        np.ones((4, 2)),
        batch_size=2,
        epochs=2,
        verbose=0,
        callbacks=[callback, recorder],
    )
    rate = ops.convert_to_numpy(inner.get_layer("inner_drop").rate_variable)
    np.testing.assert_allclose(rate, _ramp_numpy(3), rtol=1e-6)


def test_resumes_from_optimizer_iterations():
    model = _three_layer_model()
    model.compile("sgd", "mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(4)
    recorder = _Recorder(["classic"])
    x = np.zeros((4, 6, 5, 2), "float32")
    model.fit(
        x,
        np.zeros((4, 2)),
        batch_size=2,
        verbose=0,
        callbacks=[DropRateScheduler(_ramp()), recorder],
    )
    np.testing.assert_allclose(
        np.array(recorder.rates)[:, 0], _ramp_numpy(np.array([4, 5])), rtol=1e-6
    )


def test_model_without_dropout_layers_raises():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(
        ValueError, match="found no layer with a `rate_variable`"
    ):
        _fit_plain(model, DropRateScheduler(_ramp()))


def test_missing_named_layer_raises():
    with pytest.raises(ValueError, match=r"not found: \['nope'\]"):
        _fit(_three_layer_model(), DropRateScheduler(_ramp(), ["nope"]))


def test_schedule_out_of_range_raises():
    too_high = keras.optimizers.schedules.PolynomialDecay(
        1.5, 10, end_learning_rate=0.0
    )
    model = _three_layer_model()
    with pytest.raises(ValueError, match="Received: rate=1.5"):
        _fit(model, DropRateScheduler(too_high))
    # The layers keep their previous (valid) rate.
    rate = ops.convert_to_numpy(model.get_layer("classic").rate_variable)
    np.testing.assert_allclose(rate, 0.05, rtol=1e-6)


def test_a_schedule_leaving_the_range_later_raises_before_the_first_step():
    # 0 at step 0, 1.0 at step 2 (of the 4 this fit takes): refused at once.
    late = keras.optimizers.schedules.PolynomialDecay(
        0.0, 2, end_learning_rate=1.0, power=1.0
    )
    model = _three_layer_model()
    with pytest.raises(ValueError, match=r"Received: rate=1 at step 2"):
        _fit(model, DropRateScheduler(late))
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0


def test_bad_constructor_arguments_raise():
    with pytest.raises(TypeError, match="Received: schedule="):
        DropRateScheduler(lambda step: 0.1)
    with pytest.raises(TypeError, match="Received: layers='block'"):
        DropRateScheduler(_ramp(), layers="block")


def test_config_round_trip():
    callback = DropRateScheduler(_ramp(), layers=["block"])
    clone = DropRateScheduler.from_config(callback.get_config())
    assert clone.layers == ["block"]
    assert clone.schedule.get_config() == callback.schedule.get_config()
    for step in (0, 3, 9):
        np.testing.assert_allclose(
            ops.convert_to_numpy(clone.schedule(step)), _ramp_numpy(step)
        )


def _fit_plain(model, callback):
    model.compile("sgd", "mse")
    model.fit(np.ones((2, 3)), np.ones((2, 2)), verbose=0, callbacks=[callback])


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = DropConnectDense(3, 0.0, seed=1, name="connect")
        self.out = keras.layers.Dense(2)

    def call(self, x, training=False):
        return self.out(self.hidden(x, training=training))


def test_drives_layers_of_an_unbuilt_subclassed_model():
    model = SubclassedNet()
    recorder = _Recorder(["connect"])
    model.compile("sgd", "mse")
    model.fit(
        np.ones((6, 4), "float32"),
        np.ones((6, 2), "float32"),
        batch_size=2,
        verbose=0,
        callbacks=[DropRateScheduler(_ramp()), recorder],
    )
    np.testing.assert_allclose(
        np.array(recorder.rates)[:, 0], _ramp_numpy(np.arange(3)), rtol=1e-6
    )
