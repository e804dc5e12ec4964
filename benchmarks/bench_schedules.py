"""Step time of keras_decay.optimizers with a schedule vs Keras' constant.

`keras_decay.optimizers.SGD(momentum=LinearRamp(...))` against
`keras.optimizers.SGD(momentum=0.9)`, and `keras_decay.optimizers.AdamW(
weight_decay=ExponentialDecay(...))` against `keras.optimizers.AdamW(
weight_decay=4e-3)`, side by side: each round trains a fresh small MLP once
per configuration, in alternating order, for `--epochs` epochs; the first
epoch (which traces) is dropped and the step time is the median epoch time
of the rest divided by the number of steps. The ratio of medians over rounds
(and, less sensitive to other processes on a shared machine, the ratio of
minima) is printed per pair (target <= 1.02), with the number of train-step
traces per fit (target 1; the optimizer is built before `fit`, else
TensorFlow traces twice for Keras' own optimizers too). Each backend runs in
its own process, one after the other:

    python benchmarks/bench_schedules.py --backends tensorflow,jax --rounds 5
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _per_backend  # noqa: E402  (first: it chooses the backend)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_decay import optimizers  # noqa: E402
from keras_decay.schedules import ExponentialDecay  # noqa: E402
from keras_decay.schedules import LinearRamp  # noqa: E402

TRACES = [0]


class CountingModel(keras.Model):
    def train_step(self, *args):
        TRACES[0] += 1
        return super().train_step(*args)


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


CONFIGS = {
    "keras SGD": lambda: keras.optimizers.SGD(0.01, momentum=0.9),
    "keras_decay SGD": lambda: optimizers.SGD(
        0.01, momentum=LinearRamp(0.5, 0.9, 1000)
    ),
    "keras AdamW": lambda: keras.optimizers.AdamW(1e-3, weight_decay=4e-3),
    "keras_decay AdamW": lambda: optimizers.AdamW(
        1e-3, weight_decay=ExponentialDecay(4e-3, 100, 0.9)
    ),
}
PAIRS = [
    ("SGD momentum=LinearRamp vs 0.9", "keras SGD", "keras_decay SGD"),
    (
        "AdamW weight_decay=ExponentialDecay vs 4e-3",
        "keras AdamW",
        "keras_decay AdamW",
    ),
]


def run(name, x, y, args):
    make_optimizer = CONFIGS[name]
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
    # Without this, TensorFlow builds the optimizer inside the first trace,
    # which then runs twice: built first on both sides.
    model.optimizer.build(model.trainable_variables)
    timer = EpochTimer()
    TRACES[0] = 0
    model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[timer],
    )
    steps = len(x) // args.batch_size
    return statistics.median(timer.times[1:]) / steps, TRACES[0]


def main():
    parser = _per_backend.parser(__doc__, rounds=5)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    if _per_backend.dispatch(args, __file__):
        return
    rng = np.random.RandomState(0)
    x = rng.randn(args.steps * args.batch_size, 64).astype("float32")
    y = rng.randint(0, 10, len(x))
    pairs = PAIRS
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
        f"jit_compile={args.jit_compile}, backend {keras.backend.backend()}"
    )
    print(
        "| pair | Keras (ms) | keras_decay (ms) | ratio of medians "
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
            f"(Keras: {sorted(traces[base])}) |"
        )
    for label, base, test in pairs:
        ratios = [w / b for w, b in zip(times[test], times[base])]
        print(
            f"{label} per-round ratios:", " ".join(f"{r:.3f}" for r in ratios)
        )


if __name__ == "__main__":
    main()
