"""A fit with every keras_decay dropout layer, for tests/test_layers.py.

`python _resume_dropout.py MODE BACKUP_DIR OUT`:

- `kill`: trains with `BackupAndRestore` (a backup at each epoch end) and
  SIGKILLs this process in the middle of the second epoch.
- `resume`: trains from the backup in BACKUP_DIR to the end, writing the
  final weights to OUT (`.npz`).
- `uninterrupted`: trains to the end without interruption, writing OUT.
- `resume_fresh_seeds`: as `resume`, but resets the layers' seed-generator
  states to their initial values after the backup is restored (what a
  checkpoint without them gives), to show that the test can fail.
"""

import os
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


def main(mode, backup_dir, out):
    model = _model()
    initial = [
        np.asarray(layer.seed_generator.state) for layer in _seeded(model)
    ]
    callbacks = []
    if mode != "uninterrupted":
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                backup_dir, delete_checkpoint=False
            )
        )
    if mode == "kill":
        callbacks.append(_KillMidEpoch())
    if mode == "resume_fresh_seeds":
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


if __name__ == "__main__":
    main(*sys.argv[1:])
