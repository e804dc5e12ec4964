"""Save and resume: schedules continue where they were, on every backend.

Four steps per epoch, three epochs. A `.keras` checkpoint taken at any batch
(`ModelCheckpoint(save_freq=k)`), loaded with `safe_mode=True`, resumes
exactly: training on from it equals the uninterrupted run, with the
schedules held by a `keras_decay.optimizers` optimizer or set by the
callbacks. With BackupAndRestore, an interruption at an epoch boundary
resumes exactly; an interruption in the middle of an epoch makes Keras replay
that epoch from batch 0 while `optimizer.iterations` keeps counting, so
step-keyed schedules run ahead by the replayed batches (documented in the
README, checked here so that a change in Keras or in our code shows).
"""

import keras
import numpy as np
import pytest

from keras_decay import WeightDecay
from keras_decay import optimizers
from keras_decay.callbacks import MomentumScheduler
from keras_decay.callbacks import WeightDecayScheduler
from keras_decay.schedules import ExponentialDecay
from keras_decay.schedules import LinearRamp
from keras_decay.schedules import StepDecay

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

STEPS_PER_EPOCH, EPOCHS, BATCH = 4, 3, 4
LR = StepDecay(
    0.1, steps_per_epoch=STEPS_PER_EPOCH, drop=0.5, epochs_per_drop=1
)
MOMENTUM = LinearRamp(0.0, 0.9, 10)


class _Interrupt(keras.callbacks.Callback):
    """Raises after the given global step (1-based count of batches)."""

    def __init__(self, after_step):
        super().__init__()
        self.after_step = after_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.after_step:
            raise RuntimeError("interrupted")


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 5)).astype("float32")
    return x, x[:, :2] * 0.5


def _model(optimizer=None):
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(
                2, kernel_regularizer=WeightDecay(0.1), name="dense"
            ),
        ]
    )
    if optimizer is None:
        # Floats, scheduled by the callbacks (`_fit`).
        optimizer = optimizers.SGD(learning_rate=LR)
    model.compile(optimizer, "mse")
    return model


def _fit(model, callbacks, epochs=EPOCHS, first_batch=0, schedulers=True):
    x, y = _data()
    start = first_batch * BATCH
    scheduler = [MomentumScheduler(MOMENTUM)] if schedulers else []
    return model.fit(
        x[start:],
        y[start:],
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=scheduler + callbacks,
    )


def _momentum(optimizer):
    return optimizers.current_hyperparameters(optimizer)["momentum"]


WEIGHT_DECAY = ExponentialDecay(0.05, 3, 0.5)


def _scheduled_optimizer():
    return optimizers.SGD(LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


@pytest.mark.parametrize("where", ["optimizer", "callbacks"])
@pytest.mark.parametrize("after_step", [3, 6])
def test_mid_epoch_checkpoint_resumes_exactly(tmp_path, where, after_step):
    """Checkpoint at step 3 (epoch 0, batch 3) or 6 (epoch 1, batch 2)."""
    in_optimizer = where == "optimizer"

    def model():
        return _model(_scheduled_optimizer() if in_optimizer else None)

    def fit(m, callbacks, **kwargs):
        schedulers = (
            [] if in_optimizer else [WeightDecayScheduler(WEIGHT_DECAY)]
        )
        return _fit(
            m, schedulers + callbacks, schedulers=not in_optimizer, **kwargs
        )

    straight = model()
    fit(straight, [])
    path = str(tmp_path / "ck.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(path, save_freq=after_step)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model(), [checkpoint, _Interrupt(after_step)])
    resumed = keras.saving.load_model(path, safe_mode=True)
    assert int(resumed.optimizer.iterations) == after_step
    assert type(resumed.optimizer) is optimizers.SGD
    # The rest of the interrupted epoch, then the remaining epochs.
    epoch, batch = divmod(after_step, STEPS_PER_EPOCH)
    fit(resumed, [], epochs=1, first_batch=batch)
    fit(resumed, [], epochs=EPOCHS - epoch - 1)
    assert int(resumed.optimizer.iterations) == STEPS_PER_EPOCH * EPOCHS
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(resumed.optimizer.variables, straight.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def _interrupted_then_resumed(tmp_path, after_step, save_freq):
    backup = keras.callbacks.BackupAndRestore(
        str(tmp_path / "backup"), save_freq=save_freq
    )
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(_model(), [backup, _Interrupt(after_step)])
    resumed = _model()
    _fit(resumed, [keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    return resumed


def test_resume_at_an_epoch_boundary_equals_an_uninterrupted_run(tmp_path):
    straight = _model()
    _fit(straight, [])
    resumed = _interrupted_then_resumed(
        tmp_path, after_step=STEPS_PER_EPOCH * 2, save_freq="epoch"
    )
    total = STEPS_PER_EPOCH * EPOCHS
    assert int(resumed.optimizer.iterations) == total
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The learning rate and momentum the next step would use: formulas.
    expected_lr = 0.1 * 0.5 ** (total // STEPS_PER_EPOCH)
    np.testing.assert_allclose(
        float(resumed.optimizer.learning_rate), expected_lr, rtol=1e-7
    )
    np.testing.assert_allclose(
        float(resumed.optimizer.learning_rate),
        float(straight.optimizer.learning_rate),
        rtol=0,
    )
    # The optimizer keeps the callback's schedule: the momentum of the step
    # about to be taken.
    expected_momentum = 0.9 * min(total, 10) / 10
    np.testing.assert_allclose(
        _momentum(resumed.optimizer), expected_momentum, rtol=1e-6
    )
    assert _momentum(resumed.optimizer) == _momentum(straight.optimizer)


def test_resume_mid_epoch_replays_the_epoch_and_schedules_run_ahead(
    tmp_path,
):
    # Saved every 2 batches; interrupted after global step 6 (epoch 1,
    # batch 1). Keras restores the step-6 weights and `iterations` = 6 but
    # restarts epoch 1 at batch 0: 4 + 4 more steps, 14 in all, not 12.
    resumed = _interrupted_then_resumed(tmp_path, after_step=6, save_freq=2)
    replayed = 2
    total = STEPS_PER_EPOCH * EPOCHS + replayed
    assert int(resumed.optimizer.iterations) == total
    # Our schedules follow `iterations`: the learning rate is the formula at
    # step 14 (epoch 3), i.e. 2 steps ahead of the epoch count.
    np.testing.assert_allclose(
        float(resumed.optimizer.learning_rate),
        0.1 * 0.5 ** (total // STEPS_PER_EPOCH),
        rtol=1e-7,
    )
    np.testing.assert_allclose(
        _momentum(resumed.optimizer), 0.9 * min(total, 10) / 10, rtol=1e-6
    )
