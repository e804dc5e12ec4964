"""Worker processes of tests/test_distribution.py's multi-process tests.

python _multi_worker_fit.py tf LOG_DIR
    One TensorFlow MultiWorkerMirroredStrategy worker (TF_CONFIG set):
    a small model with our regularizer and the WeightNormLogger.
python _multi_worker_fit.py jax PORT PROCESS_ID NUM_PROCESSES LOG_DIR OUT
    One process of JAX's distributed runtime (gloo collectives on CPU,
    `keras.distribution.DataParallel` over every process's devices,
    each process feeding its own shard). NUM_PROCESSES=1 with PORT=0
    trains the same model on the full batch in one process. Saves the
    final weights to OUT (`.npz`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 6


def tensorflow_worker(log_dir):
    import keras
    import tensorflow as tf

    from keras_decay import WeightDecay
    from keras_decay.callbacks import WeightNormLogger

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


def global_data():
    """`STEPS` global batches of `GLOBAL_BATCH` examples, in order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(STEPS * GLOBAL_BATCH, 3)).astype("float32")
    return x, y


def process_shard(array, process_id, num_processes):
    """This process's rows of every global batch (contiguous per batch)."""
    per = GLOBAL_BATCH // num_processes
    batches = array.reshape(STEPS, GLOBAL_BATCH, *array.shape[1:])
    shard = batches[:, process_id * per : (process_id + 1) * per]
    return shard.reshape(STEPS * per, *array.shape[1:])


def jax_model():
    import keras

    from keras_decay import WeightDecay
    from keras_decay import layers
    from keras_decay import schedules
    from keras_decay.regularizers import L1Decay

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(
                4, 3, kernel_regularizer=WeightDecay(0.05), name="conv"
            ),
            layers.DropBlock2D(0.2, 2, seed=1),
            keras.layers.Flatten(),
            layers.ClassicDropout(0.3, seed=2),
            layers.DropConnectDense(
                5, rate=0.2, seed=3, kernel_regularizer=L1Decay(0.01)
            ),
            keras.layers.Dense(3, kernel_regularizer=WeightDecay(0.1)),
        ]
    )
    learning_rate = schedules.Warmup(
        schedules.ExponentialDecay(0.05, 4, 0.5), 2
    )
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9), "mse")
    return model


def jax_worker(port, process_id, num_processes, log_dir, out):
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    from keras_decay.callbacks import WeightNormLogger

    if num_processes > 1:
        keras.distribution.initialize(
            job_addresses=f"127.0.0.1:{port}",
            num_processes=num_processes,
            process_id=process_id,
        )
        distribution = keras.distribution.DataParallel(devices=jax.devices())
        distribution.auto_shard_dataset = False
        keras.distribution.set_distribution(distribution)
    model = jax_model()
    x, y = global_data()
    x = process_shard(x, process_id, num_processes)
    y = process_shard(y, process_id, num_processes)
    model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH // num_processes,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[WeightNormLogger(log_dir, update_freq=2)],
    )
    weights = {
        v.path: np.asarray(v.value.addressable_data(0))
        for v in model.trainable_variables
    }
    np.savez(out, **weights)


if __name__ == "__main__":
    if sys.argv[1] == "tf":
        tensorflow_worker(sys.argv[2])
    else:
        port, process_id, num_processes = map(int, sys.argv[2:5])
        jax_worker(port, process_id, num_processes, *sys.argv[5:7])
