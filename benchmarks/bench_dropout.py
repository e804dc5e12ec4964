"""Forward + backward time of dropout layers in a compiled step.

On a (32, 56, 56, 64) float32 activation, times `d/dx sum(layer(x) * x)`
(training mode) inside a `tf.function`, for DropBlock2D (7x7 blocks),
ClassicDropout, keras.layers.Dropout and keras.layers.SpatialDropout2D, all
at rate 0.1. The candidates run alternately, round after round, and the
medians are reported as ratios to Dropout. `--xla` also times the same step
with `jit_compile=True` (on CPU, XLA is slow for random-heavy ops). Also
times DropRateScheduler's per-batch host-side update.

    python benchmarks/bench_dropout.py [--rounds 7] [--xla]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from keras_decay.callbacks import DropRateScheduler
from keras_decay.layers import ClassicDropout
from keras_decay.layers import DropBlock2D
from keras_decay.layers import DropConnectDense

SHAPE = (32, 56, 56, 64)
RATE = 0.1


def _layers():
    return {
        "Dropout": keras.layers.Dropout(RATE, seed=1),
        "SpatialDropout2D": keras.layers.SpatialDropout2D(RATE, seed=1),
        "ClassicDropout": ClassicDropout(RATE, seed=1),
        "DropBlock2D": DropBlock2D(RATE, 7, seed=1),
    }


def _step(layer, jit):
    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * x)
        return tape.gradient(loss, x)

    return step


def _time(fn, x):
    start = time.perf_counter()
    fn(x).numpy()  # .numpy() waits for the result
    return time.perf_counter() - start


def bench(rounds, jit):
    x = tf.random.normal(SHAPE)
    steps = {name: _step(layer, jit) for name, layer in _layers().items()}
    for fn in steps.values():  # trace + warm up
        _time(fn, x)
        _time(fn, x)
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(_time(fn, x))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["Dropout"]
    print(f"\njit_compile={jit}, {rounds} rounds, medians:")
    print("| layer | ms / step | ratio to Dropout |\n|---|---|---|")
    for name, m in medians.items():
        print(f"| {name} | {1e3 * m:.1f} | {m / base:.2f} |")


def bench_scheduler(rounds, calls=200):
    """Host-side cost of DropRateScheduler.on_train_batch_begin."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            DropBlock2D(0.0, 3),
            ClassicDropout(0.0),
            keras.layers.Flatten(),
            DropConnectDense(2, 0.0),
        ]
    )
    model.compile("sgd", "mse")
    model.optimizer.build(model.trainable_variables)
    ramp = keras.optimizers.schedules.PolynomialDecay(
        0.0, 1000, end_learning_rate=0.1, power=1.0
    )
    callback = DropRateScheduler(ramp)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_train_batch_begin(0)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(calls):
            callback.on_train_batch_begin(i)
        times.append((time.perf_counter() - start) / calls)
    print(
        "\nDropRateScheduler.on_train_batch_begin (3 layers): "
        f"{1e6 * statistics.median(times):.0f} us per batch"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--xla", action="store_true")
    args = parser.parse_args()
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"devices: {[d.device_type for d in tf.config.list_physical_devices()]}"
        f", activation {SHAPE} float32, rate {RATE}, DropBlock 7x7"
    )
    bench(args.rounds, jit=False)
    if args.xla:
        bench(max(3, args.rounds // 2), jit=True)
    bench_scheduler(args.rounds)


if __name__ == "__main__":
    main()
