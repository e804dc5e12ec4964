"""Fits with every keras_decay dropout layer, for tests/test_layers.py.

`python _resume_dropout.py MODE BACKUP_DIR OUT_DIR`, two processes:

- `kill`: trains to the end without interruption (`uninterrupted.npz` in
  OUT_DIR: the final weights), then trains again with `BackupAndRestore`
  (a backup at each epoch end) and SIGKILLs this process in the middle of
  the second epoch.
- `resume`: trains from a copy of the backup in BACKUP_DIR to the end
  (`resume.npz`), then again from the backup after resetting the layers'
  seed-generator states to their initial values, what a checkpoint without
  them gives (`resume_fresh_seeds.npz`), to show that the test can fail.
"""

import os
import shutil
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_decay import layers  # noqa: E402

STEPS_PER_EPOCH, EPOCHS, BATCH = 3, 3, 4


class _KillMidEpoch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == STEPS_PER_EPOCH + 1:
            os.kill(os.getpid(), signal.SIGKILL)


class _ResetSeeds(keras.callbacks.Callback):
    def __init__(self, initial):
        super().__init__()
        self.initial = initial

    def on_train_begin(self, logs=None):
        for layer, state in zip(_seeded(self.model), self.initial):
            layer.seed_generator.state.assign(state)


def _seeded(model):
    return [layer for layer in model.layers if hasattr(layer, "rate_variable")]


def _model():
    keras.backend.clear_session()  # the same layer names in every run
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            layers.DropBlock2D(0.3, 2, seed=1),
            layers.DropPath(0.3, seed=2),
            keras.layers.Flatten(),
            layers.ClassicDropout(0.3, seed=3),
            layers.DropConnectDense(2, rate=0.3, seed=4),
        ]
    )
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def _fit(out, callbacks=(), backup_dir=None, reset_seeds=False):
    model = _model()
    initial = [
        np.asarray(layer.seed_generator.state) for layer in _seeded(model)
    ]
    callbacks = list(callbacks)
    if backup_dir is not None:
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                backup_dir, delete_checkpoint=False
            )
        )
    if reset_seeds:  # after BackupAndRestore's own on_train_begin
        callbacks.append(_ResetSeeds(initial))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 6, 5, 2)).astype("float32")
    y = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 2)).astype("float32")
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    np.savez(out, *[np.asarray(w) for w in model.get_weights()])


def main(mode, backup_dir, out_dir):
    if mode == "kill":
        _fit(os.path.join(out_dir, "uninterrupted.npz"))
        _fit(os.path.join(out_dir, "killed.npz"), [_KillMidEpoch()], backup_dir)
        raise AssertionError("not killed")
    copy = backup_dir + "_copy"
    shutil.copytree(backup_dir, copy)
    _fit(os.path.join(out_dir, "resume.npz"), backup_dir=copy)
    _fit(
        os.path.join(out_dir, "resume_fresh_seeds.npz"),
        backup_dir=backup_dir,
        reset_seeds=True,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
