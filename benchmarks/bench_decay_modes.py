"""Step time of each `weight_decay_mode` (and cautious decay) vs `"lr"`.

`keras_decay.optimizers.AdamW` and `SGD(momentum=0.9)` with a warm-up then
exponential-decay learning rate (peak 1e-3) and `weight_decay=0.05`, in
each of `weight_decay_mode="independent"` (with the equivalent
`weight_decay * eta_max`), `"corrected"` and with
`cautious_weight_decay=True` (each mode), against the same optimizer in
`"lr"` mode. One MLP per configuration is compiled and traced once; then
each round times one `fit` epoch of `--steps` steps of every
configuration, in alternating order. Printed per pair: the ratio of the
median step times over rounds and the ratio of the minima (the least
disturbed by other processes on a shared machine; target <= 1.05), and
`/proc/loadavg` before and after. Each backend runs in its own process:

    python benchmarks/bench_decay_modes.py --backends tensorflow,jax \\
        --jit-compile --rounds 15
    python benchmarks/bench_decay_modes.py --backends torch --rounds 15
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _per_backend  # noqa: E402  (first: it chooses the backend)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_decay import conventions  # noqa: E402
from keras_decay import optimizers  # noqa: E402
from keras_decay import schedules  # noqa: E402

CLASSES = {"AdamW": optimizers.AdamW, "SGD": optimizers.SGD}
VARIANTS = {
    "lr": ("lr", False),
    "independent": ("independent", False),
    "corrected": ("corrected", False),
    "lr cautious": ("lr", True),
    "independent cautious": ("independent", True),
    "corrected cautious": ("corrected", True),
}


PEAK = 1e-3
WEIGHT_DECAY = 0.05  # In "lr" (and "corrected") terms.


def _optimizer(cls, mode, cautious):
    lr = schedules.Warmup(schedules.ExponentialDecay(PEAK, 100, 0.9), 20)
    kwargs = {"momentum": 0.9} if cls is optimizers.SGD else {}
    # The same decay per step at the peak in every mode: "independent"
    # takes lambda * eta_max (0.05 there would shrink the weights 5 % a
    # step, into subnormal floats, whose arithmetic is slow on CPUs).
    wd = WEIGHT_DECAY
    if mode == "independent":
        wd = conventions.convert(wd, "lr", mode, max_learning_rate=PEAK)
    return cls(
        lr,
        weight_decay=wd,
        weight_decay_mode=mode,
        cautious_weight_decay=cautious,
        **kwargs,
    )


def _model(optimizer, args):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(args.width, activation="relu")(inputs)
    h = keras.layers.Dense(args.width, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile(
        optimizer,
        "sparse_categorical_crossentropy",
        jit_compile=args.jit_compile,
    )
    return model


def _loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def measure(args):
    rng = np.random.RandomState(0)
    x = rng.randn(args.steps * args.batch_size, 64).astype("float32")
    y = rng.randint(0, 10, len(x))
    models = {
        f"{name} {variant}": _model(_optimizer(cls, *settings), args)
        for name, cls in CLASSES.items()
        for variant, settings in VARIANTS.items()
    }
    fit = dict(batch_size=args.batch_size, epochs=1, verbose=0)
    for model in models.values():
        model.fit(x, y, **fit)  # traces
    times = {name: [] for name in models}
    names = list(models)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            models[name].fit(x, y, **fit)
            times[name].append((time.perf_counter() - start) / args.steps)
    return times


def report(times, args, load_before):
    print(
        f"{args.rounds} rounds x {args.steps} steps, batch "
        f"{args.batch_size}, MLP 64-{args.width}-{args.width}-10, "
        f"jit_compile={args.jit_compile}, backend {keras.backend.backend()}"
    )
    print(f"load before: {load_before}; after: {_loadavg()}")
    print("| optimizer | variant | lr (ms) | variant (ms) | medians | minima |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in CLASSES:
        base = times[f"{name} lr"]
        for variant in VARIANTS:
            if variant == "lr":
                continue
            test = times[f"{name} {variant}"]
            b, t = statistics.median(base), statistics.median(test)
            print(
                f"| {name} | {variant} | {b * 1e3:.3f} | {t * 1e3:.3f} | "
                f"{t / b:.3f} | {min(test) / min(base):.3f} |"
            )


def main():
    args = _per_backend.parser(__doc__, rounds=15).parse_args()
    if _per_backend.dispatch(args, __file__):
        return
    load_before = _loadavg()
    report(measure(args), args, load_before)


if __name__ == "__main__":
    main()
