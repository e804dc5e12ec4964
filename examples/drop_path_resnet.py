"""A small residual CNN with stochastic depth (DropPath) on the digits.

Each residual block computes `x + DropPath(rate_l)(branch(x))`: in training
the branch of a block is skipped for a whole example with probability
`rate_l`, and the rates grow linearly with depth, `rate_l = max_rate * l / L`
(Huang et al., 2016), from `stochastic_depth_rates`. At inference every
branch is kept. The trained model is saved to a `.keras` file and loaded
back: `keras_decay` is imported before `load_model`, so that Keras finds its
registered classes.

    python examples/drop_path_resnet.py            # 10 epochs, seconds
    python examples/drop_path_resnet.py --epochs 1 # quicker

Needs scikit-learn for the bundled digits: pip install "keras-decay[examples]".
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_decay  # noqa: F401  registers the classes load_model needs
from keras_decay.layers import DropPath
from keras_decay.layers import stochastic_depth_rates

NUM_BLOCKS = 3
WIDTH = 16


def make_model(max_rate=0.2):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(WIDTH, 3, padding="same", activation="relu")(inputs)
    rates = stochastic_depth_rates(NUM_BLOCKS, max_rate)
    for block, rate in enumerate(rates, start=1):
        branch = keras.layers.Conv2D(
            WIDTH, 3, padding="same", activation="relu"
        )(x)
        branch = keras.layers.Conv2D(WIDTH, 3, padding="same")(branch)
        branch = DropPath(rate, seed=block, name=f"drop_path_{block}")(branch)
        x = keras.layers.Activation("relu")(keras.layers.Add()([x, branch]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-rate", type=float, default=0.2)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = digits.images[..., None].astype("float32") / 16.0  # pixels in [0, 1]
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )
    model = make_model(args.max_rate)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0)
    for layer in model.layers:
        if isinstance(layer, DropPath):
            print(f"{layer.name}: rate {layer.rate:.4f}")
    _, val_accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy (every branch kept): {val_accuracy:.4f}")

    path = os.path.join(tempfile.mkdtemp(), "drop_path_resnet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True
    same = np.array_equal(
        model.predict(x_val, verbose=0), loaded.predict(x_val, verbose=0)
    )
    print(f"reloaded from {path}: same predictions: {same}")
    if not same:
        raise SystemExit("the reloaded model predicts differently")


if __name__ == "__main__":
    main()
