"""A CNN with DropBlock whose drop rate ramps up during training.

DropBlock (Ghiasi et al., 2018) zeroes contiguous blocks of a feature map,
per channel, instead of single units: neighbouring activations of a conv
layer are correlated, so dropping single pixels removes little information.
As in the paper, the rate starts at 0 and rises linearly to its final value
(here 0.1, over the whole training) with `DropRateScheduler`.

    python examples/dropblock_cnn.py            # 10 epochs, a few seconds
    python examples/dropblock_cnn.py --epochs 1 # quicker

The digits are 8x8 images, so the blocks are small: 3x3 on the 8x8 map of the
first convolution, 2x2 on the 4x4 map of the second. DropBlock is the
identity at inference (`model.evaluate`, `model.predict`).
Needs scikit-learn for the bundled digits: pip install "keras-decay[examples]".
"""

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_decay.callbacks import DropRateScheduler
from keras_decay.layers import DropBlock2D
from keras_decay.schedules import LinearRamp

BATCH_SIZE = 32


def make_model(drop_rate=0.1):
    # The rate given here is the one used before the scheduler sets it.
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            DropBlock2D(drop_rate, block_size=3, seed=1),  # on the 8x8 map
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            DropBlock2D(drop_rate, block_size=2, seed=2),  # on the 4x4 map
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--drop-rate", type=float, default=0.1)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = digits.images[..., None].astype("float32") / 16.0  # pixels in [0, 1]
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )

    model = make_model(args.drop_rate)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # Rate 0 at the first step, `drop_rate` at the last one (paper, sec. 3).
    total_steps = args.epochs * math.ceil(len(x_train) / BATCH_SIZE)
    ramp = LinearRamp(0.0, args.drop_rate, ramp_steps=total_steps)
    history = model.fit(
        x_train,
        y_train,
        batch_size=BATCH_SIZE,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        callbacks=[DropRateScheduler(ramp)],
        verbose=0,
    )

    # drop_rate: the rate of the epoch's last step (DropRateScheduler logs it).
    print("epoch  drop_rate  accuracy  val_accuracy")
    logs = history.history
    for epoch in range(args.epochs):
        print(
            f"{epoch + 1:5d}  {logs['drop_rate'][epoch]:9.4f}  "
            f"{logs['accuracy'][epoch]:8.4f}  {logs['val_accuracy'][epoch]:.4f}"
        )
    _, val_accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(
        f"validation accuracy (no DropBlock at inference): {val_accuracy:.4f}"
    )


if __name__ == "__main__":
    main()
