"""Learning-rate and momentum schedules, printed epoch by epoch.

Trains the same small CNN three times with `keras_decay.optimizers.SGD`,
whose momentum is a schedule like its learning rate: an exponential
learning rate (x0.7 per epoch) and a step one ("halve every 2 epochs"),
both with the momentum ramped linearly from 0.5 to 0.9 over the first 2
epochs; then the 1cycle policy (`OneCycle` + `OneCycleMomentum`, PyTorch's
`OneCycleLR` with `cycle_momentum=True`) over the whole run.

    python examples/schedules_momentum.py            # 6 epochs per run
    python examples/schedules_momentum.py --epochs 2 # quicker

The table shows, after each epoch, the values the next step will use, from
`optimizer.current_hyperparameters()` (Python floats).
Needs scikit-learn for the bundled digits: pip install "keras-decay[examples]".
"""

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_decay import optimizers
from keras_decay.schedules import ExponentialDecay
from keras_decay.schedules import LinearRamp
from keras_decay.schedules import OneCycle
from keras_decay.schedules import OneCycleMomentum
from keras_decay.schedules import StepDecay

BATCH_SIZE = 32


def make_model():
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def train(name, learning_rate, momentum, data, epochs):
    x_train, x_val, y_train, y_val = data
    keras.utils.set_random_seed(0)  # same weights and batches for each run
    model = make_model()
    optimizer = optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    def log_hyperparameters(epoch, logs):
        logs.update(optimizer.current_hyperparameters())

    history = model.fit(
        x_train,
        y_train,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        validation_data=(x_val, y_val),
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(on_epoch_end=log_hyperparameters)
        ],
    )
    print(f"\n{name}")
    print("after epoch  learning_rate  momentum  val_accuracy")
    logs = history.history
    for epoch in range(epochs):
        print(
            f"{epoch + 1:11d}  {logs['learning_rate'][epoch]:13.6g}  "
            f"{logs['momentum'][epoch]:8.4f}  {logs['val_accuracy'][epoch]:.4f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()

    digits = load_digits()
    x = digits.images[..., None].astype("float32") / 16.0  # pixels in [0, 1]
    data = train_test_split(
        x, digits.target, test_size=0.25, stratify=digits.target, random_state=0
    )
    steps_per_epoch = math.ceil(len(data[0]) / BATCH_SIZE)

    # Momentum 0.5 -> 0.9 over the first 2 epochs, then 0.9.
    momentum = LinearRamp(0.5, 0.9, ramp_steps=2 * steps_per_epoch)

    # lr = 0.05 * 0.7 ** (step / steps_per_epoch): x0.7 per epoch, smoothly.
    exponential = ExponentialDecay(
        0.05, decay_steps=steps_per_epoch, decay_rate=0.7
    )
    train("ExponentialDecay", exponential, momentum, data, args.epochs)

    # lr = 0.05 * 0.5 ** floor(epoch / 2): halve every 2 epochs.
    step = StepDecay(
        0.05, steps_per_epoch=steps_per_epoch, drop=0.5, epochs_per_drop=2
    )
    train("StepDecay", step, momentum, data, args.epochs)

    # 1cycle: lr 0.004 -> 0.1 over 30 % of the steps, then down to 4e-7;
    # momentum 0.95 -> 0.85 -> 0.95, mirrored.
    total = args.epochs * steps_per_epoch
    train(
        "OneCycle + OneCycleMomentum",
        OneCycle(0.1, total_steps=total),
        OneCycleMomentum(total_steps=total),
        data,
        args.epochs,
    )


if __name__ == "__main__":
    main()
