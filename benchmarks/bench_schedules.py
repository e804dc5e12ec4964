"""Step time with MomentumScheduler / WeightDecayScheduler vs without.

Each round trains a fresh small MLP once per configuration, in alternating
order, for `--epochs` epochs; the first epoch (which traces) is dropped and
the step time is the median epoch time of the rest divided by the number of
steps. The ratio of medians over rounds (and, less sensitive to other
processes on a shared machine, the ratio of minima) is printed per
callback (target <= 1.02), with the number of train-step traces per fit
(target 1; Keras' own fit traces twice when the optimizer creates its
variables in the first trace, which the callbacks avoid by building it
first).

    python benchmarks/bench_schedules.py --rounds 5
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_decay.callbacks import MomentumScheduler
from keras_decay.callbacks import WeightDecayScheduler
from keras_decay.schedules import ExponentialDecay
from keras_decay.schedules import LinearRamp

TRACES = [0]


class CountingModel(keras.Model):
    def train_step(self, data):
        TRACES[0] += 1
        return super().train_step(data)


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


CONFIGS = {
    "sgd": (lambda: keras.optimizers.SGD(0.01, momentum=0.9), list),
    "sgd+MomentumScheduler": (
        lambda: keras.optimizers.SGD(0.01, momentum=0.9),
        lambda: [MomentumScheduler(LinearRamp(0.5, 0.9, 1000))],
    ),
    "adamw": (lambda: keras.optimizers.AdamW(1e-3, weight_decay=4e-3), list),
    "adamw+WeightDecayScheduler": (
        lambda: keras.optimizers.AdamW(1e-3, weight_decay=4e-3),
        lambda: [WeightDecayScheduler(ExponentialDecay(4e-3, 100, 0.9))],
    ),
}
PAIRS = [
    ("MomentumScheduler (SGD)", "sgd", "sgd+MomentumScheduler"),
    ("WeightDecayScheduler (AdamW)", "adamw", "adamw+WeightDecayScheduler"),
]


def run(name, x, y, args):
    make_optimizer, make_callbacks = CONFIGS[name]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((x.shape[1],))
    h = keras.layers.Dense(args.width, activation="relu")(inputs)
    h = keras.layers.Dense(args.width, activation="relu")(h)
    model = CountingModel(inputs, keras.layers.Dense(10)(h))
    model.compile(
        make_optimizer(),
        "sparse_categorical_crossentropy",
        jit_compile=args.jit_compile,
    )
    if args.prebuild:
        # Without this, Keras builds the optimizer inside the first trace,
        # which then runs twice and leaves a slower step function (the
        # callbacks build it first): prebuild both sides for a fair ratio.
        model.optimizer.build(model.trainable_variables)
    timer = EpochTimer()
    TRACES[0] = 0
    model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[*make_callbacks(), timer],
    )
    steps = len(x) // args.batch_size
    return statistics.median(timer.times[1:]) / steps, TRACES[0]


def schedule_cost_us(schedule, repeats=200, unroll=100):
    """In-graph cost of one `schedule(iterations)` evaluation, in us.

    `unroll` evaluations at different steps in one `tf.function`, minus the
    same function returning the cast steps alone; the median over
    `repeats` calls, divided by `unroll`. This is what a callback adds to
    a train step (it evaluates its schedule once per step).
    """
    import tensorflow as tf

    step = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def evaluated():
        return tf.add_n([schedule(step + i) for i in range(unroll)])

    @tf.function
    def bare():
        return tf.add_n([tf.cast(step + i, "float32") for i in range(unroll)])

    def median_time(fn):
        fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return (median_time(evaluated) - median_time(bare)) / unroll * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument(
        "--no-prebuild",
        dest="prebuild",
        action="store_false",
        help="let fit build the optimizer inside the first trace",
    )
    parser.add_argument(
        "--only", choices=[p[0].split()[0] for p in PAIRS], default=None
    )
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    x = rng.randn(args.steps * args.batch_size, 64).astype("float32")
    y = rng.randint(0, 10, len(x))
    pairs = [p for p in PAIRS if args.only in (None, p[0].split()[0])]
    names = [name for _, base, test in pairs for name in (base, test)]
    times = {name: [] for name in names}
    traces = {name: set() for name in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]  # alternate
        for name in order:
            step_time, count = run(name, x, y, args)
            times[name].append(step_time)
            traces[name].add(count)
    print(
        f"{args.rounds} rounds x {args.epochs} epochs x {args.steps} steps, "
        f"batch {args.batch_size}, MLP width {args.width}, "
        f"jit_compile={args.jit_compile}, prebuild={args.prebuild}, "
        f"backend {keras.backend.backend()}"
    )
    print(
        "| callback | step without (ms) | step with (ms) | ratio of medians "
        "| ratio of minima | traces per fit |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for label, base, test in pairs:
        without = statistics.median(times[base]) * 1e3
        with_ = statistics.median(times[test]) * 1e3
        print(
            f"| {label} | {without:.3f} | {with_:.3f} | "
            f"{with_ / without:.3f} | "
            f"{min(times[test]) / min(times[base]):.3f} | "
            f"{sorted(traces[test])} "
            f"(without: {sorted(traces[base])}) |"
        )
    print()
    print("| schedule | in-graph cost per step (us) |")
    print("| --- | --- |")
    for label, schedule in [
        ("LinearRamp(0.5, 0.9, 1000)", LinearRamp(0.5, 0.9, 1000)),
        ("ExponentialDecay(4e-3, 100, 0.9)", ExponentialDecay(4e-3, 100, 0.9)),
    ]:
        print(f"| {label} | {schedule_cost_us(schedule):.2f} |")
    for label, base, test in pairs:
        ratios = [w / b for w, b in zip(times[test], times[base])]
        print(
            f"{label} per-round ratios:", " ".join(f"{r:.3f}" for r in ratios)
        )


if __name__ == "__main__":
    main()
