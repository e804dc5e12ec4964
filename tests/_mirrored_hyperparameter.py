"""Helper run in a subprocess by tests/test_hyperparameter.py.

Trains the same tiny model with `MomentumScheduler` and
`WeightDecayScheduler` once under `tf.distribute.MirroredStrategy` over two
logical CPU devices and once on one device (and once mirrored without them,
for the trace count), and prints the kernels and trace counts as JSON.
Logical devices must be configured before TensorFlow initialises its
devices, hence the separate process.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu,
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from keras_decay.callbacks import MomentumScheduler  # noqa: E402
from keras_decay.callbacks import WeightDecayScheduler  # noqa: E402
from keras_decay.schedules import ExponentialDecay  # noqa: E402
from keras_decay.schedules import LinearRamp  # noqa: E402

TRACES = [0]


class CountingModel(keras.Model):
    def train_step(self, data):
        TRACES[0] += 1
        return super().train_step(data)


def train(strategy, schedule=True):
    TRACES[0] = 0
    x = np.random.RandomState(0).randn(16, 3).astype("float32")
    y = np.random.RandomState(1).randn(16, 2).astype("float32")
    with strategy.scope():
        inputs = keras.Input((3,))
        dense = keras.layers.Dense(2, kernel_initializer="ones")
        model = CountingModel(inputs, dense(inputs))
        model.compile(keras.optimizers.SGD(0.05), "mse")
    callbacks = []
    if schedule:
        callbacks = [
            MomentumScheduler(LinearRamp(0.0, 0.9, 5)),
            WeightDecayScheduler(ExponentialDecay(0.1, 2, 0.5)),
        ]
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    return {
        "kernel": model.get_weights()[0].tolist(),
        "bias": model.get_weights()[1].tolist(),
        "traces": TRACES[0],
        "momentum": history.history.get("momentum"),
        "replicas": strategy.num_replicas_in_sync,
    }


if __name__ == "__main__":
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored = train(tf.distribute.MirroredStrategy(devices))
    single = train(tf.distribute.OneDeviceStrategy(devices[0]))
    baseline = train(tf.distribute.MirroredStrategy(devices), schedule=False)
    result = {"mirrored": mirrored, "single": single, "baseline": baseline}
    print(json.dumps(result))
