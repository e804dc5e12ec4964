"""One worker of tests/test_distribution.py's multi-worker test.

Run with TF_CONFIG set; trains a small model with our regularizer and the
WeightNormLogger under MultiWorkerMirroredStrategy, writing to argv[1].
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_decay import WeightDecay  # noqa: E402
from keras_decay.callbacks import WeightNormLogger  # noqa: E402


def main(log_dir):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(2, kernel_regularizer=WeightDecay(0.1)),
            ]
        )
        model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.ones((16, 4), "float32")
    y = np.ones((16, 2), "float32")
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[WeightNormLogger(log_dir)],
    )


if __name__ == "__main__":
    main(sys.argv[1])
