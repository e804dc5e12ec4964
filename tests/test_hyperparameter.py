"""Tests for MomentumScheduler / WeightDecayScheduler (callbacks).

Every update is compared with the same training written by hand in NumPy
(float64): a Dense(2) layer on 3 inputs, MSE loss, batches of 4, no shuffle.
"""

import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from keras_decay.callbacks import MomentumScheduler
from keras_decay.callbacks import WeightDecayScheduler
from keras_decay.schedules import ExponentialDecay
from keras_decay.schedules import LinearRamp
from keras_decay.schedules import StepDecay

# TensorFlow backend only: the callbacks patch TensorFlow-traced optimizers.
pytestmark = pytest.mark.tensorflow_only

X = np.random.RandomState(0).randn(8, 3).astype("float32")
Y = np.random.RandomState(1).randn(8, 2).astype("float32")
BATCH = 4
LR = 0.1
TRACES = [0]


class CountingModel(keras.Model):
    """Counts Python executions of `train_step`, i.e. traces."""

    def train_step(self, data):
        TRACES[0] += 1
        return super().train_step(data)


def _model(optimizer, jit_compile=False):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = CountingModel(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    return model


def _fit(model, callbacks, epochs=2, **kwargs):
    TRACES[0] = 0
    return model.fit(
        X,
        Y,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        **kwargs,
    )


def _batches(epochs):
    for _ in range(epochs):
        for i in range(0, len(X), BATCH):
            yield (
                X[i : i + BATCH].astype(np.float64),
                Y[i : i + BATCH].astype(np.float64),
            )


def _gradients(params, xb, yb):
    kernel, bias = params
    error = xb @ kernel + bias - yb
    d_pred = 2.0 * error / error.size  # mean over all elements
    return [xb.T @ d_pred, d_pred.sum(axis=0)]


def _numpy_train(initial, epochs, update):
    """Runs `update(t, params, grads, state)` over the epochs' batches."""
    params = [np.array(w, dtype=np.float64) for w in initial]
    state = {}
    for t, (xb, yb) in enumerate(_batches(epochs)):
        update(t, params, _gradients(params, xb, yb), state)
    return params


def _sgd_momentum(mu):
    def update(t, params, grads, state):
        velocity = state.setdefault("v", [np.zeros_like(p) for p in params])
        for i, (p, g) in enumerate(zip(params, grads)):
            velocity[i] = mu(t) * velocity[i] - LR * g  # v <- mu_t v - lr g
            p += velocity[i]  # w <- w + v

    return update


def _ramp(start, end, steps):
    return lambda t: start + (end - start) * min(t, steps) / steps


def _assert_weights(model, expected, rtol=1e-5, atol=1e-6):
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_momentum_ramp_from_zero_on_default_sgd(jit_compile):
    optimizer = keras.optimizers.SGD(LR)  # default momentum=0.0
    model = _model(optimizer, jit_compile)
    initial = model.get_weights()
    callback = MomentumScheduler(LinearRamp(0.0, 0.9, 3))
    history = _fit(model, [callback], epochs=3)
    want = _numpy_train(initial, 3, _sgd_momentum(_ramp(0.0, 0.9, 3)))
    _assert_weights(model, want)
    assert TRACES[0] == 1  # traced once across the 3 epochs
    # Without the callback, a momentum-0 SGD would differ (the test bites).
    plain = _numpy_train(initial, 3, _sgd_momentum(lambda t: 0.0))
    assert not np.allclose(plain[0], want[0], rtol=1e-3)
    # logs: the value the next step uses, schedule(iterations).
    np.testing.assert_allclose(
        history.history["momentum"], [0.6, 0.9, 0.9], rtol=1e-6
    )


def test_momentum_with_gradient_accumulation_counts_updates():
    optimizer = keras.optimizers.SGD(LR, gradient_accumulation_steps=2)
    model = _model(optimizer, jit_compile=True)
    initial = model.get_weights()
    _fit(model, [MomentumScheduler(LinearRamp(0.2, 0.9, 2))], epochs=3)
    # 6 batches = 3 updates, each with the mean of 2 batches' gradients
    # (taken at the same weights) and momentum schedule(update index).
    params = [np.array(w, dtype=np.float64) for w in initial]
    velocity = [np.zeros_like(p) for p in params]
    batches = list(_batches(3))
    for k in range(3):
        grads = [_gradients(params, *b) for b in batches[2 * k : 2 * k + 2]]
        mu = 0.2 + 0.7 * min(k, 2) / 2
        for i, p in enumerate(params):
            g = (grads[0][i] + grads[1][i]) / 2
            velocity[i] = mu * velocity[i] - LR * g
            p += velocity[i]
    _assert_weights(model, params)


def test_momentum_on_sgd_built_with_momentum_zero_gets_slots():
    optimizer = keras.optimizers.SGD(LR)
    model = _model(optimizer)
    optimizer.build(model.trainable_variables)
    assert len(optimizer.variables) == 2  # iteration, learning_rate
    initial = model.get_weights()
    _fit(model, [MomentumScheduler(LinearRamp(0.5, 0.9, 2))])
    assert len(optimizer.variables) == 4  # + one momentum per variable
    want = _numpy_train(initial, 2, _sgd_momentum(_ramp(0.5, 0.9, 2)))
    _assert_weights(model, want)


def test_momentum_after_a_first_fit_without_callback_is_not_frozen():
    optimizer = keras.optimizers.SGD(LR, momentum=0.5)
    model = _model(optimizer)
    initial = model.get_weights()
    _fit(model, [], epochs=1)  # traces with the float 0.5
    _fit(model, [MomentumScheduler(StepDecay(0.9, 1, 0.5, 1))], epochs=1)

    def mu(t):
        return 0.5 if t < 2 else 0.9 * 0.5**t

    want = _numpy_train(initial, 2, _sgd_momentum(mu))
    _assert_weights(model, want)
    # After fit: a plain float again, the value for the next step.
    assert type(optimizer.momentum) is float
    np.testing.assert_allclose(optimizer.momentum, 0.9 * 0.5**4, rtol=1e-6)


def test_momentum_under_mixed_precision_schedules_inner_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    optimizer = keras.optimizers.SGD(LR)
    model = _model(optimizer)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    initial = model.get_weights()
    history = _fit(model, [MomentumScheduler(LinearRamp(0.0, 0.9, 3))])
    want = _numpy_train(initial, 2, _sgd_momentum(_ramp(0.0, 0.9, 3)))
    plain = _numpy_train(initial, 2, _sgd_momentum(lambda t: 0.0))
    # float16 compute: a loose tolerance, still far tighter than the gap
    # to training without momentum.
    assert np.max(np.abs(plain[0] - want[0])) > 0.02
    _assert_weights(model, want, rtol=0, atol=5e-3)
    np.testing.assert_allclose(history.history["momentum"], [0.6, 0.9])


def test_momentum_adam_beta_1_schedule_matches_numpy_adam():
    beta_2, eps = 0.999, 1e-7
    optimizer = keras.optimizers.Adam(LR, beta_2=beta_2, epsilon=eps)
    model = _model(optimizer, jit_compile=True)
    initial = model.get_weights()
    beta_1 = _ramp(0.5, 0.95, 3)

    def update(t, params, grads, state):
        m = state.setdefault("m", [np.zeros_like(p) for p in params])
        v = state.setdefault("v", [np.zeros_like(p) for p in params])
        b1 = beta_1(t)
        # Keras' Adam with the current beta_1 in the bias correction.
        alpha = LR * np.sqrt(1 - beta_2 ** (t + 1)) / (1 - b1 ** (t + 1))
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] += (g - m[i]) * (1 - b1)
            v[i] += (g * g - v[i]) * (1 - beta_2)
            p -= m[i] * alpha / (np.sqrt(v[i]) + eps)

    _fit(model, [MomentumScheduler(LinearRamp(0.5, 0.95, 3))], epochs=3)
    _assert_weights(model, _numpy_train(initial, 3, update), rtol=1e-4)
    assert TRACES[0] == 1


def test_momentum_rmsprop_schedule_matches_numpy():
    rho, eps = 0.9, 1e-7
    optimizer = keras.optimizers.RMSprop(LR, rho=rho, epsilon=eps)
    model = _model(optimizer)
    initial = model.get_weights()
    mu = _ramp(0.0, 0.8, 2)

    def update(t, params, grads, state):
        vel = state.setdefault("v", [np.zeros_like(p) for p in params])
        mom = state.setdefault("m", [np.zeros_like(p) for p in params])
        for i, (p, g) in enumerate(zip(params, grads)):
            vel[i] = rho * vel[i] + (1 - rho) * g * g
            mom[i] = mu(t) * mom[i] + LR * g / np.sqrt(vel[i] + eps)
            p -= mom[i]

    _fit(model, [MomentumScheduler(LinearRamp(0.0, 0.8, 2))], epochs=2)
    _assert_weights(model, _numpy_train(initial, 2, update), rtol=1e-4)


@pytest.mark.parametrize("name", ["AdamW", "Nadam", "Adamax"])
def test_momentum_other_adam_family_changes_the_update(name):
    # Scheduling beta_1 equal to the constant gives the constant's weights;
    # a different schedule gives different weights.
    def run(callbacks):
        model = _model(keras.optimizers.get(name))
        _fit(model, callbacks)
        return model.get_weights()[0]

    constant = run([])
    same = run([MomentumScheduler(LinearRamp(0.9, 0.9, 1))])
    other = run([MomentumScheduler(LinearRamp(0.0, 0.5, 4))])
    np.testing.assert_allclose(same, constant, rtol=1e-6, atol=1e-7)
    assert not np.allclose(other, constant, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("initial_decay", [None, 0.5])
def test_weight_decay_schedule_matches_numpy_decoupled_decay(initial_decay):
    optimizer = keras.optimizers.SGD(LR, weight_decay=initial_decay)
    model = _model(optimizer, jit_compile=True)
    initial = model.get_weights()
    wd = ExponentialDecay(0.3, 2, 0.5)

    def update(t, params, grads, state):
        decay = 0.3 * 0.5 ** (t / 2)
        for p, g in zip(params, grads):
            p -= p * decay * LR  # w <- w - w * wd_t * lr, then the step
            p -= LR * g

    history = _fit(model, [WeightDecayScheduler(wd)], epochs=3)
    _assert_weights(model, _numpy_train(initial, 3, update))
    assert TRACES[0] == 1
    np.testing.assert_allclose(
        history.history["weight_decay"],
        [0.3 * 0.5 ** (2 * e / 2) for e in (1, 2, 3)],
        rtol=1e-6,
    )


def test_both_callbacks_with_adamw_and_lr_schedule_mid_save(tmp_path):
    lr = ExponentialDecay(0.05, 4, 0.5)
    optimizer = keras.optimizers.AdamW(lr, weight_decay=0.01)
    model = _model(optimizer)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))
    callbacks = [
        MomentumScheduler(LinearRamp(0.5, 0.9, 4)),
        WeightDecayScheduler(LinearRamp(0.0, 0.1, 4)),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        checkpoint,  # saves the model (optimizer config) mid-training
    ]
    _fit(model, callbacks, epochs=2)
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"momentum", "weight_decay"} <= set(header)
    config = json.loads(json.dumps(optimizer.get_config()))
    np.testing.assert_allclose(config["beta_1"], 0.9, rtol=1e-6)
    np.testing.assert_allclose(config["weight_decay"], 0.1, rtol=1e-6)
    # The checkpoint written mid-training loads (safe_mode=True) with the
    # values of its epoch end.
    loaded = keras.saving.load_model(
        str(tmp_path / "m.keras"),
        custom_objects={"CountingModel": CountingModel},
    )
    assert type(loaded.optimizer.beta_1) is float
    np.testing.assert_allclose(loaded.optimizer.beta_1, 0.9, rtol=1e-6)
    np.testing.assert_allclose(loaded.optimizer.weight_decay, 0.1, rtol=1e-6)
    assert int(loaded.optimizer.iterations) == 4


def test_save_load_after_training_restores_optimizer_state(tmp_path):
    optimizer = keras.optimizers.SGD(LR)  # momentum=0.0: no slots at first
    model = _model(optimizer)
    _fit(model, [MomentumScheduler(LinearRamp(0.0, 0.9, 3))])
    path = str(tmp_path / "model.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(
            path, custom_objects={"CountingModel": CountingModel}
        )
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "Skipping variable" in m], messages
    assert type(loaded.optimizer.momentum) is float
    np.testing.assert_allclose(loaded.optimizer.momentum, 0.9, rtol=1e-6)
    for saved, restored in zip(optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())
    assert len(loaded.optimizer.variables) == 4


class _StopAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_momentum_from_iterations(tmp_path):
    schedule = LinearRamp(0.0, 0.9, 6)
    backup_dir = str(tmp_path / "backup")
    model = _model(keras.optimizers.SGD(LR))
    initial = model.get_weights()
    callbacks = [
        MomentumScheduler(schedule),
        keras.callbacks.BackupAndRestore(backup_dir),
        _StopAfterEpoch(1),
    ]
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(model, callbacks, epochs=4)
    resumed = _model(keras.optimizers.SGD(LR))
    history = _fit(
        resumed,
        [
            MomentumScheduler(schedule),
            keras.callbacks.BackupAndRestore(backup_dir),
        ],
        epochs=4,
    )
    assert int(resumed.optimizer.iterations) == 8
    assert len(history.history["momentum"]) == 2  # epochs 3 and 4 only
    want = _numpy_train(initial, 4, _sgd_momentum(_ramp(0.0, 0.9, 6)))
    _assert_weights(resumed, want)


def test_mirrored_strategy_equals_single_device():
    script = os.path.join(
        os.path.dirname(__file__), "_mirrored_hyperparameter.py"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, script],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mirrored, single = result["mirrored"], result["single"]
    assert mirrored["replicas"] == 2
    np.testing.assert_allclose(mirrored["kernel"], single["kernel"], rtol=1e-5)
    np.testing.assert_allclose(mirrored["bias"], single["bias"], rtol=1e-5)
    np.testing.assert_allclose(
        mirrored["momentum"], [0.36, 0.72, 0.9], rtol=1e-6
    )
    # No extra trace: the same count as mirrored training without them.
    assert mirrored["traces"] == result["baseline"]["traces"]
    # And the schedules did something (weights differ from the baseline).
    assert not np.allclose(
        mirrored["kernel"], result["baseline"]["kernel"], rtol=1e-3
    )


def test_momentum_unsupported_optimizer_is_a_value_error():
    model = _model(keras.optimizers.Adagrad(LR))
    with pytest.raises(ValueError, match="momentum of optimizer Adagrad"):
        _fit(model, [MomentumScheduler(LinearRamp(0.0, 0.9, 3))], epochs=1)


@pytest.mark.parametrize("cls", [MomentumScheduler, WeightDecayScheduler])
@pytest.mark.parametrize("bad", [0.9, "linear", None, LinearRamp])
def test_schedule_must_be_a_schedule_or_callable(cls, bad):
    with pytest.raises(TypeError, match=r"argument `schedule`.*Received"):
        cls(bad)


def test_callable_schedule_is_accepted():
    model = _model(keras.optimizers.SGD(LR))
    initial = model.get_weights()

    def schedule(step):
        return keras.ops.where(step < 2, 0.0, 0.5)

    _fit(model, [MomentumScheduler(schedule)])
    want = _numpy_train(
        initial, 2, _sgd_momentum(lambda t: 0.0 if t < 2 else 0.5)
    )
    _assert_weights(model, want)
