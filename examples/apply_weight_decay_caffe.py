"""Caffe-style weight decay on an existing model with `apply_weight_decay`.

Caffe sets one solver-wide `weight_decay` and a per-layer `decay_mult`
(biases usually 0). `apply_weight_decay` does the same to a Keras model that
is already built, even one that was already trained, and prints what it did.

    python examples/apply_weight_decay_caffe.py [--epochs 5]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_decay import apply_weight_decay  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)

    digits = load_digits()
    x = (digits.images / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.25, stratify=digits.target, random_state=0
    )

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="fc"),
            keras.layers.Dense(10, activation="softmax", name="classifier"),
        ]
    )
    # Caffe: weight_decay 5e-4; conv layers decay_mult 1, the classifier 0.5;
    # biases are never decayed (ndim <= 1).
    report = apply_weight_decay(
        model, 5e-4, decay_mult={"conv*": 1.0, "fc": 1.0, "classifier": 0.5}
    )
    print(report)

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=32,
        verbose=2,
    )
    penalty = float(keras.ops.sum(keras.ops.stack(model.losses)))
    print(
        f"val_accuracy {history.history['val_accuracy'][-1]:.4f}, "
        f"decay penalty in the loss {penalty:.5f}"
    )


if __name__ == "__main__":
    main()
