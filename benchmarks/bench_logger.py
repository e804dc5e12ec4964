"""Fit-time cost of `WeightNormLogger` vs no callback and Keras' TensorBoard.

For each model, the same compiled model is fitted with each callback set in
turn (alternating, in an order rotated every round; `--repeats` rounds after
one warm-up round) and the median wall time (and process CPU time, steadier
on a shared machine) of each set is divided by the median without callbacks:

    base        no callback
    epoch       WeightNormLogger(update_freq="epoch")
    every10     WeightNormLogger(update_freq=10)
    tb_hist     keras.callbacks.TensorBoard(histogram_freq=1)

Models: a small Sequential CNN and a >= 20M-parameter one (a wide Dense head
on the same convolutions).

Then, without `fit`, on the backend `KERAS_BACKEND` selects:

    one log / floor   one log divided by one fused reduction `sum(w**2)`
                      over the same weights, compiled the same way (the
                      weights must be read at least once): 20.0M parameters
                      in 4 `Dense` kernels, and 300 variables of 16k-300k
                      entries; the default (on a CPU: NumPy reads the
                      variables in place) beside the device kernels an
                      accelerator runs
    first log         set-up + trace + compile + first log of 500
                      `Dense(4)` layers (1,000 variables) and of 1,000
                      variables of 16 to 300k entries
    memory            in a fresh process per model of the `log` part:
                      resident growth across the logger's set-up and two
                      logs, and the peak growth during a log (the peak
                      resident memory reset just before it), both divided
                      by the size of the weights

Targets: fit ratios <= 1.02 (epoch) and <= 1.05 (every 10 batches) on the
small CNN, one log <= 3x the floor, first log <= 3 s, peak of a log
<= 1.25x the weights (the snapshot included), resident <= 1.0x. The load
average is printed first: the machine may be shared. Run:

    KERAS_BACKEND=jax python benchmarks/bench_logger.py [--repeats 5]
        [--parts fit,log,trace,memory]
"""

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_decay import WeightDecay  # noqa: E402
from keras_decay.callbacks import WeightNormLogger  # noqa: E402
from keras_decay.callbacks._weight_norm_logger import _statistics  # noqa: E402


def cnn(dense_units):
    keras.utils.set_random_seed(0)
    decay = WeightDecay(5e-4)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(
                16, 3, activation="relu", kernel_regularizer=decay
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(
                32, 3, activation="relu", kernel_regularizer=decay
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(
                dense_units, activation="relu", kernel_regularizer=decay
            ),
            keras.layers.Dense(10),
        ]
    )


def callback_sets(log_root):
    def tb(name):
        return os.path.join(log_root, name)

    return {
        "base": list,
        "epoch": lambda: [WeightNormLogger(tb("epoch"))],
        "every10": lambda: [WeightNormLogger(tb("every10"), update_freq=10)],
        "tb_hist": lambda: [
            keras.callbacks.TensorBoard(
                tb("tb"), histogram_freq=1, write_graph=False
            )
        ],
    }


def bench(name, model, x, y, epochs, batch_size, repeats, log_root):
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    # One callback set per configuration, reused by every round as a user
    # reuses a callback across fits; garbage is collected outside the timing.
    sets = {k: make() for k, make in callback_sets(log_root).items()}
    times = {k: [] for k in sets}
    cpu = {k: [] for k in sets}
    keys = list(sets)
    for round_ in range(repeats + 1):
        # Rotate the order so that no set always follows the same other one
        # (a fit right after TensorBoard's histograms runs slower).
        for key in keys[round_ % 4 :] + keys[: round_ % 4]:
            callbacks = sets[key]
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(
                x,
                y,
                epochs=epochs,
                batch_size=batch_size,
                verbose=0,
                callbacks=callbacks,
            )
            elapsed = time.perf_counter() - start
            if round_ > 0:  # Round 0 warms up (tracing, first writes).
                times[key].append(elapsed)
                cpu[key].append(time.process_time() - start_cpu)
    base = statistics.median(times["base"])
    base_cpu = statistics.median(cpu["base"])
    steps = epochs * int(np.ceil(len(x) / batch_size))
    print(
        f"\n{name}: {model.count_params():,} parameters, "
        f"{len(model.trainable_variables)} variables, {steps} steps/fit, "
        f"median of {repeats}"
    )
    print(
        f"{'callbacks':<10} {'wall s':>8} {'ratio':>7} {'cpu s':>8} "
        f"{'cpu ratio':>9}"
    )
    for key, values in times.items():
        median = statistics.median(values)
        median_cpu = statistics.median(cpu[key])
        print(
            f"{key:<10} {median:8.3f} {median / base:7.3f} "
            f"{median_cpu:8.3f} {median_cpu / base_cpu:9.3f}"
        )


def per_call_costs(name, model, x, y, batch_size, calls, log_root):
    """Median cost of one log and of one training step, timed alone.

    Steadier than whole fits on a loaded machine: the ratio a fit with a log
    every N steps would show is about `1 + log / (N * step)`.
    """
    xb, yb = x[:batch_size], y[:batch_size]
    model.train_on_batch(xb, yb)
    logger = WeightNormLogger(os.path.join(log_root, "calls"))
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_end(0)  # Traces the statistics function.
    logs, steps = [], []
    for i in range(calls):
        start = time.perf_counter()
        model.train_on_batch(xb, yb)
        steps.append(time.perf_counter() - start)
        start = time.perf_counter()
        logger.on_epoch_end(i + 1)
        logs.append(time.perf_counter() - start)
    logger.on_train_end()
    log, step = statistics.median(logs), statistics.median(steps)
    print(
        f"{name}: one log {log * 1e3:.1f} ms, one step {step * 1e3:.1f} ms; "
        f"implied ratio every 10 steps {1 + log / (10 * step):.3f}"
    )


def fused_reduction(variables):
    """`sum(w**2)` over all `variables`, compiled as the logger compiles."""
    backend = keras.backend.backend()

    def total(weights):
        return keras.ops.sum(
            keras.ops.stack([keras.ops.sum(w * w) for w in weights])
        )

    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            lambda: total([tf.convert_to_tensor(v.value) for v in variables]),
            autograph=False,
        )
        return lambda: float(compiled())
    if backend == "jax":
        import jax

        compiled = jax.jit(total)
        return lambda: float(compiled([v.value for v in variables]))
    import torch

    def eager():
        with torch.no_grad():
            return float(total([v.value for v in variables]))

    return eager


class Weights(keras.layers.Layer):
    """A layer that only holds trainable variables of the given shapes."""

    def __init__(self, shapes, **kwargs):
        super().__init__(**kwargs)
        self.shapes = [tuple(s) for s in shapes]
        for i, shape in enumerate(self.shapes):
            self.add_weight(shape, "glorot_uniform", name=f"w{i}")

    def call(self, x):
        return x


def _compiled(model):
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    return model


def dense_stack():
    """20.0M parameters in 4 `Dense` kernels of 2236 x 2236 (+ biases)."""
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(2236) for _ in range(4)]
    return _compiled(keras.Sequential([keras.Input((2236,))] + layers))


def _shapes(count, low, high, distinct, seed):
    """`count` shapes drawn from `distinct` 2-D shapes of `low`..`high`
    entries (log-uniform sizes, 64 to 512 rows)."""
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(low, high, distinct)
    rows = rng.choice([64, 128, 256, 512], distinct)
    table = [
        (int(r), max(1, int(round(n / r)))) if n >= r else (int(n),)
        for r, n in zip(rows, sizes)
    ]
    return [table[i] for i in rng.integers(0, distinct, count)]


def many_weights(count, low, high, distinct, seed=0):
    keras.utils.set_random_seed(seed)
    layer = Weights(_shapes(count, low, high, distinct, seed))
    return _compiled(keras.Sequential([keras.Input((1,)), layer]))


# Name -> model builder, for the `log` and `memory` parts.
LOG_CASES = {
    "20M in 4 Dense kernels": dense_stack,
    "300 variables of 16k-300k entries (24 shapes)": lambda: many_weights(
        300, 16_384, 300_000, 24
    ),
}
# Name -> model builder, for the `trace` part.
TRACE_CASES = {
    "500 x Dense(4)": lambda: _compiled(
        keras.Sequential(
            [keras.Input((4,))] + [keras.layers.Dense(4) for _ in range(500)]
        )
    ),
    "1,000 variables of 16-300k entries (40 shapes)": lambda: many_weights(
        1000, 16, 300_000, 40
    ),
}


def _size(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def log_vs_floor(name, model, log_root, calls=7):
    """One log against one fused reduction over the same weights: the
    default (on a CPU, NumPy in place) and the backend's device kernels
    (`CPU_IN_PLACE = False`, what an accelerator runs), alternated."""
    loggers = {}
    for in_place in (True, False):
        _statistics.CPU_IN_PLACE = in_place
        logger = WeightNormLogger(os.path.join(log_root, f"wide{in_place}"))
        logger.set_model(model)
        logger.on_train_begin()
        logger.on_epoch_end(0)  # Traces.
        loggers["in place" if in_place else "device kernels"] = logger
    _statistics.CPU_IN_PLACE = True
    floor = fused_reduction(model.trainable_variables)
    floor()
    times = {key: [] for key in loggers}
    floors = []
    for i in range(calls):  # Alternated, so all see the same load.
        for key, logger in loggers.items():
            start = time.perf_counter()
            logger.on_epoch_end(i + 1)
            times[key].append(time.perf_counter() - start)
        start = time.perf_counter()
        floor()
        floors.append(time.perf_counter() - start)
    low = statistics.median(floors)
    print(
        f"one log, {name} ({_size(model) / 1e6:.1f}M): fused reduction "
        f"{low * 1e3:.1f} ms"
    )
    for key, logger in loggers.items():
        logger.on_train_end()
        log = statistics.median(times[key])
        print(
            f"  {key:<15} {log * 1e3:8.1f} ms; ratio {log / low:.2f} "
            "(target <= 3)"
        )


def first_log(name, model, log_root):
    """The first log (set-up, trace, compile and log) of a model."""
    logger = WeightNormLogger(os.path.join(log_root, "many"))
    logger.set_model(model)
    start = time.perf_counter()
    logger.on_train_begin()
    logger.on_epoch_end(0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    logger.on_epoch_end(1)
    later = time.perf_counter() - start
    logger.on_train_end()
    print(
        f"first log, {name} ({len(model.trainable_variables)} variables): "
        f"{first:.2f} s (target <= 3 s); next log {later * 1e3:.0f} ms"
    )


def _rss():
    """Resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak():
    """Resets the process's peak resident memory (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def memory_overhead(name, log_root):
    """Resident growth across set-up and two logs; peak growth of a log.

    Run in a fresh process per case (see `main`).
    """
    model = LOG_CASES[name]()
    weights = sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
        for v in model.trainable_variables
    )
    fused_reduction(model.trainable_variables)()  # Backend warmed up.
    gc.collect()
    now = _rss()
    logger = WeightNormLogger(os.path.join(log_root, "memory"))
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_end(0)
    gc.collect()
    before_log = _rss()
    _reset_peak()
    logger.on_epoch_end(1)
    peak = _peak() - before_log
    gc.collect()
    held = _rss() - now
    logger.on_train_end()
    print(
        f"memory, {name}, {weights / 2**20:.0f} MiB of weights: resident "
        f"after two logs +{held / weights:.2f}x (target <= 1.0x); peak of "
        f"a log +{peak / weights:.2f}x above the resident before it, "
        f"snapshot included: {(peak + before_log - now) / weights:.2f}x "
        "(target <= 1.25x)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default="fit,log,trace,memory")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        with tempfile.TemporaryDirectory() as log_root:
            memory_overhead(args.memory_case, log_root)
        return
    parts = args.parts.split(",")
    print(f"backend: {keras.backend.backend()}")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().strip()}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as log_root:
        if "memory" in parts:
            for name in LOG_CASES:  # A fresh process each: a clean heap.
                subprocess.run(
                    [sys.executable, __file__, "--memory-case", name],
                    check=True,
                )
        if "trace" in parts:
            for name, build in TRACE_CASES.items():
                first_log(name, build(), log_root)
        if "log" in parts:
            for name, build in LOG_CASES.items():
                log_vs_floor(name, build(), log_root)
        if "fit" not in parts:
            return
        x = rng.normal(size=(2048, 28, 28, 1)).astype("float32")
        y = rng.normal(size=(2048, 10)).astype("float32")
        small = cnn(64)
        bench("small CNN", small, x, y, 3, 64, args.repeats, log_root)
        per_call_costs("small CNN", small, x, y, 64, 30, log_root)
        big = cnn(5200)  # 11 * 11 * 32 * 5200 kernel entries: 20.1M.
        assert big.count_params() >= 20_000_000, big.count_params()
        xb, yb = x[:640], y[:640]
        bench("20M CNN", big, xb, yb, 1, 32, max(3, args.repeats - 2), log_root)
        per_call_costs("20M CNN", big, xb, yb, 32, 15, log_root)


if __name__ == "__main__":
    main()
