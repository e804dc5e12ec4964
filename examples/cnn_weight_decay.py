"""A Sequential CNN with weight decay on its kernels and dropout.

    python examples/cnn_weight_decay.py            # 20 epochs, ~10 s on 2 CPUs
    python examples/cnn_weight_decay.py --epochs 1 # quicker

`WeightDecay(rate)` adds `rate / 2 * sum(w**2)` to the loss, so each SGD step
shrinks a kernel by `lr * rate * w` (PyTorch's `SGD(weight_decay=rate)`).
Biases are left alone, as Nielsen, D2L and Caffe recommend.
`ClassicDropout(0.5)` is dropout as first published: in training it zeroes
half the units without rescaling the others, at inference it multiplies
every unit by 0.5 (`keras.layers.Dropout` rescales in training instead).
The classifier then sees half its input signal in training and learns more
slowly than with Keras' Dropout, hence 20 epochs.
Needs scikit-learn for the bundled digits: pip install "keras-decay[examples]".
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_decay.layers import ClassicDropout
from keras_decay.regularizers import WeightDecay


def make_model(weight_decay=5e-4, dropout=0.5):
    decay = WeightDecay(weight_decay)  # on kernels only, not on biases
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(
                16,
                3,
                padding="same",
                activation="relu",
                kernel_regularizer=decay,
            ),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(
                32,
                3,
                padding="same",
                activation="relu",
                kernel_regularizer=decay,
            ),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", kernel_regularizer=decay),
            ClassicDropout(dropout, seed=1),  # before the classifier
            keras.layers.Dense(
                10, activation="softmax", kernel_regularizer=decay
            ),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = digits.images[..., None].astype("float32") / 16.0  # pixels in [0, 1]
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )

    model = make_model()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        verbose=2,
    )
    penalty = float(
        sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)
    )
    _, val_accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(f"weight-decay penalty in the loss: {penalty:.5f}")
    print(f"validation accuracy: {val_accuracy:.4f}")


if __name__ == "__main__":
    main()
