"""Weight norms, regularization loss and hyperparameters in TensorBoard.

`WeightNormLogger` writes, at each epoch end, the L2 norm, L1 norm and
largest absolute value of every kernel and bias, the global L2 norm, the
update ratio, the sparsity, the weight-decay penalty in the loss
(`regularization/loss`) and the optimizer's learning rate and momentum; the
`hparams` dict goes to TensorBoard's HParams dashboard.

    python examples/tensorboard_logger.py           # logs/example-logger
    python examples/tensorboard_logger.py --weight-decay 0 \
        --logdir logs/example-no-decay              # the same without decay
    tensorboard --logdir logs                       # compare the two runs

Watch `weight_norm/global`: with `WeightDecay(5e-3)` it rises for an epoch,
then shrinks (11.8 to 9.8 over 10 epochs in our run); without decay it keeps
growing (12.6 to 16.4).
Needs scikit-learn for the bundled digits: pip install "keras-decay[examples]".
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_decay.callbacks import WeightNormLogger
from keras_decay.regularizers import WeightDecay


def make_model(weight_decay):
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
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", kernel_regularizer=decay),
            keras.layers.Dense(
                10, activation="softmax", kernel_regularizer=decay
            ),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--weight-decay", type=float, default=5e-3)
    parser.add_argument("--logdir", default="logs/example-logger")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = digits.images[..., None].astype("float32") / 16.0  # pixels in [0, 1]
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )

    learning_rate, momentum = 0.05, 0.9
    model = make_model(args.weight_decay)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    logger = WeightNormLogger(
        args.logdir,  # events go to <logdir>/train
        norms=("l2", "l1", "max"),
        hparams={
            "weight_decay": args.weight_decay,
            "learning_rate": learning_rate,
            "momentum": momentum,
        },
    )
    model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        callbacks=[logger],
        verbose=2,
    )

    for variable in model.trainable_variables:
        norm = float(keras.ops.norm(keras.ops.ravel(variable)))
        print(f"{variable.path:32s} final L2 norm {norm:8.4f}")
    print(f"TensorBoard events in {os.path.join(args.logdir, 'train')}; run:")
    print(f"tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
