"""The logger's statistics: one pass over each variable's own memory.

Each variable is reduced on its own, to a few sums (`SUMS`); everything
else is derived on the host, in float64, from those sums and from the
previous log:

- the snapshot's `sum(w_last**2)` is the previous log's `sum(w**2)` (the
  snapshot is an exact copy of the weights then), so it is not recomputed;
- non-finite entries are counted (one more pass) only for a variable whose
  `sum(w**2)` is not finite: only then can it have one.

A variable that lives in the host's memory (every variable on a CPU) is
read in place, without a copy, as a NumPy array (JAX's `device_get`,
PyTorch's `numpy()`, TensorFlow's DLPack), and reduced by NumPy in chunks
that stay in the processor's cache, one pass over the weights and the
snapshot (`_host.host_sums`; XLA's CPU backend runs several reductions of
one array as a scalar loop). The snapshot is a NumPy array, the one copy
the logger keeps. The views are dropped before the log returns (JAX does
not donate a buffer that a NumPy array still holds; TensorFlow copies a
variable assigned while a tensor still holds it).

A variable on an accelerator with more than `HOST_SIZE` entries is reduced
on the device, by a kernel compiled once per distinct `(shape, dtype)` and
called once per variable (`_TensorFlow`, `_JAX`, `_Torch`: the same sums in
float32, the snapshot on the device, replaced by the variable); smaller
ones are fetched to the host (for them a kernel launch costs more than the
transfer). `CPU_IN_PLACE = False` sends CPU variables down that device path
too (the tests use it to check the device kernels on a CPU).
"""

import keras
import numpy as np
from keras import ops

from keras_decay.callbacks._weight_norm_logger._host import SPARSITY_THRESHOLD
from keras_decay.callbacks._weight_norm_logger._host import Scratch
from keras_decay.callbacks._weight_norm_logger._host import host_sums

NORM_PREFIX = {"l2": "weight_norm", "l1": "weight_l1", "max": "weight_max"}
HISTOGRAM_BUCKETS = 30
HOST_SIZE = 4096
# Whether variables in the host's memory are read in place (see the module
# docstring); False only in tests of the device kernels.
CPU_IN_PLACE = True
# Entries a PyTorch kernel reduces at a time (1 MiB of float32): the
# temporaries stay in cache and the peak memory stays small.
TORCH_CHUNK = 1 << 18


def _sum_names(norms, constraint):
    """What each kernel returns, in order: always `square`, `change`,
    `tiny`, then `l1` and `max` when those norms (or the constraint) are
    logged."""
    names = ["square", "change", "tiny"]
    wanted = set(norms) | ({"max"} if constraint else set())
    return names + [n for n in ("l1", "max") if n in wanted]


def histogram_row(w):
    """`[low, high, counts...]` of the finite entries (30 equal buckets).

    Bucket `j` holds `low + j * width <= w < low + (j + 1) * width`, the
    last one also `w == high`, as `tf.histogram_fixed_width`; float32
    arithmetic, as the weights.
    """
    flat = np.asarray(w, np.float32).reshape(-1)
    flat = flat[np.isfinite(flat)]
    k = HISTOGRAM_BUCKETS
    if not flat.size:
        return np.zeros(k + 2, np.float64)
    low, high = flat.min(), flat.max()
    top = low + np.float32(1.0) if low == high else high
    scaled = np.floor((flat - low) / (top - low) * np.float32(k))
    index = np.clip(scaled, 0, k - 1).astype(np.int64)
    counts = np.bincount(index, minlength=k)
    return np.concatenate([[low, high], counts]).astype(np.float64)


class Statistics:
    """The statistics of a fixed list of variables, with snapshots.

    Keeps one copy of the variables (their values at the previous log).
    `reset()` takes the snapshot now; `compute(hypers)` returns
    `({tag: float}, {path: ndarray})` and moves the snapshot to the current
    values. Per variable (tags `<column>/<path>`):

    ```
    weight_norm = sqrt(sum(w**2)); weight_l1 = sum(abs(w));
    weight_max = max(abs(w))                       # those in `norms`
    update_ratio = sqrt(sum((w - w_last)**2)) / sqrt(sum(w_last**2))  # or 0
    sparsity = mean(abs(w) < 1e-3); nonfinite = sum(!isfinite(w))
    constraint = decay * max(abs(w))               # with `constraint`
    ```

    A variable with a non-finite entry has every statistic but `nonfinite`
    NaN, and so has `weight_norm/global`; an `update_ratio` against such a
    snapshot is NaN too. Then `weight_norm/global`, `regularization/loss`
    (the variables' regularizers) and the `hyper_tags` values passed to
    `compute`.

    With `groups`, a list of `(name, [variable indices])`, the statistics
    are per group `G` instead, tagged `<column>/<name>`: the sums over the
    variables of `G` (`sqrt(sum_G sum(w**2))`, `sum_G sum(abs(w))`,
    `max_G max(abs(w))`, `sqrt(sum_G sum((w - w_last)**2)) /
    sqrt(sum_G sum(w_last**2))`, `sum_G count(abs(w) < 1e-3) / sum_G
    size(w)`, `sum_G nonfinite`), NaN for a group with a non-finite entry.

    Args:
        variables: List of Keras variables.
        paths: Their unique tag suffixes.
        norms: Tuple of `"l2"`, `"l1"`, `"max"`.
        histograms: Bool.
        hyper_tags: Tags of the values passed to `compute`.
        constraint: Bool. Whether to add the `constraint` column (the
            `decays` passed to `compute` times `max(abs(w))`; the maximum
            over a group).
        groups: Optional list of `(name, [variable indices])` covering
            every variable once. Defaults to one group per variable, named
            by its path.
    """

    def __init__(
        self,
        variables,
        paths,
        norms,
        histograms,
        hyper_tags,
        groups=None,
        constraint=False,
    ):
        self.variables = list(variables)
        self.paths = list(paths)
        if groups is None:
            groups = [(p, [i]) for i, p in enumerate(self.paths)]
        self.names = [name for name, _ in groups]
        self.group_ids = np.zeros(len(self.variables), np.int64)
        for g, (_, members) in enumerate(groups):
            self.group_ids[members] = g
        self.histograms = bool(histograms)
        self.hyper_tags = list(hyper_tags)
        self.columns = [NORM_PREFIX[n] for n in norms]
        self.columns += ["update_ratio", "sparsity", "nonfinite"]
        self.columns += ["constraint"] if constraint else []
        self.sum_names = _sum_names(norms, constraint)
        self.sizes = np.array(
            [int(np.prod(v.shape)) for v in self.variables], np.float64
        )
        backend = _BACKENDS[keras.backend.backend()]
        on_host = [
            n <= HOST_SIZE or (CPU_IN_PLACE and backend.on_cpu(v))
            for v, n in zip(self.variables, self.sizes)
        ]
        self.host = [i for i, h in enumerate(on_host) if h]
        self.device = [i for i, h in enumerate(on_host) if not h]
        self.regularized = [
            i
            for i, v in enumerate(self.variables)
            if getattr(v, "regularizer", None) is not None
        ]
        self._backend = backend(self)
        self._scratch = Scratch()
        self._host_lasts = None
        self._last_square = None

    def layout(self):
        """`(scalar tags, histogram paths)`, in the order of `compute`."""
        tags = [f"{c}/{n}" for n in self.names for c in self.columns]
        tags += ["weight_norm/global", "regularization/loss"]
        tags += self.hyper_tags
        return tags, self.names if self.histograms else []

    def _sums(self, reset):
        """`[variables, sum_names]` float64; moves every snapshot."""
        sums = np.zeros((len(self.variables), len(self.sum_names)))
        # Views of the variables' own memory where it is the host's: kept
        # no longer than this call (module docstring).
        values = self._backend.view([self.variables[i] for i in self.host])
        if reset:
            self._host_lasts = [np.array(v) for v in values]
        if self.host:
            sums[self.host] = host_sums(
                values, self._host_lasts, self.sum_names, self._scratch
            )
        del values
        # Called without device variables too: on TensorFlow the same call
        # computes the penalty.
        rows = self._backend.sums(reset)
        if self.device:
            sums[self.device] = rows
        return sums

    def reset(self):
        """Takes the snapshot now (and its `sum(w**2)`)."""
        self._last_square = self._sums(reset=True)[:, 0]

    def _group(self, values, reduce=np.add):
        """Per-variable `values` reduced over each group's variables."""
        out = np.full(len(self.names), -np.inf if reduce is np.maximum else 0.0)
        reduce.at(out, self.group_ids, values)
        return out

    def compute(self, hypers, decays=None):
        """`({tag: float}, {name: histogram row})` of the current values.

        Args:
            hypers: The `hyper_tags` values.
            decays: With `constraint`, each variable's decoupled weight
                decay `lambda` (0 where none applies).
        """
        sums = dict(zip(self.sum_names, self._sums(reset=False).T))
        square = sums["square"]
        nonfinite = np.zeros(len(self.variables))
        for i in np.flatnonzero(~np.isfinite(square)):
            if i in self.host:
                (value,) = self._backend.view([self.variables[i]])
                nonfinite[i] = np.count_nonzero(~np.isfinite(value))
            else:
                nonfinite[i] = self._backend.count_nonfinite(self.variables[i])
        last, self._last_square = self._last_square, square
        sums.update(last=last, nonfinite=nonfinite, size=self.sizes)
        if "constraint" in self.columns:
            sums["constraint"] = np.asarray(decays, np.float64) * sums["max"]
        maxima = ("max", "constraint")
        grouped = {
            k: self._group(v, np.maximum if k in maxima else np.add)
            for k, v in sums.items()
        }
        last = grouped["last"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.sqrt(grouped["change"]) / np.sqrt(last)
        ratio = np.where(last == 0, 0.0, ratio)
        values = {
            "weight_norm": np.sqrt(grouped["square"]),
            "weight_l1": grouped.get("l1"),
            "weight_max": grouped.get("max"),
            "update_ratio": np.where(np.isfinite(last), ratio, np.nan),
            "sparsity": grouped["tiny"] / np.maximum(grouped["size"], 1),
            "constraint": grouped.get("constraint"),
        }
        bad = grouped["nonfinite"] > 0
        table = [
            np.where(bad, np.nan, values[c])
            if c != "nonfinite"
            else grouped["nonfinite"]
            for c in self.columns
        ]
        table = np.stack(table, axis=1).reshape(-1)
        global_norm = np.nan if bad.any() else np.sqrt(np.sum(square))
        penalty = self._backend.penalty() if self.regularized else 0.0
        vector = np.concatenate(
            [table, [global_norm, penalty], np.asarray(hypers, np.float64)]
        )
        tags, histogram_names = self.layout()
        scalars = dict(zip(tags, vector.tolist()))
        histograms = {}
        if self.histograms:
            values = self._backend.view(self.variables)
            for g, name in enumerate(histogram_names):
                members = np.flatnonzero(self.group_ids == g)
                flat = [np.reshape(values[i], [-1]) for i in members]
                histograms[name] = histogram_row(np.concatenate(flat))
        return scalars, histograms


def _stats(w, last, names, barrier):
    """The `names` sums of `w` against `last`, float32, with `keras.ops`.

    `barrier(w)` hides `w` from XLA's fusion of sibling reductions: XLA's
    CPU backend turns several reductions of one input into one scalar loop
    (measured 10-40x slower than separate vectorised reductions).
    """
    w = ops.cast(w, "float32")
    last = ops.cast(last, "float32")
    change = w - last
    values = {
        "square": lambda: ops.sum(ops.square(barrier(w))),
        "change": lambda: ops.sum(ops.square(change)),
        "tiny": lambda: ops.cast(
            ops.sum(
                ops.cast(ops.abs(barrier(w)) < SPARSITY_THRESHOLD, "int32")
            ),
            "float32",
        ),
        "l1": lambda: ops.sum(ops.abs(barrier(w))),
        "max": lambda: ops.max(ops.abs(barrier(w))),
    }
    return ops.stack([values[n]() for n in names])


def _count_nonfinite(w):
    return ops.sum(ops.cast(ops.logical_not(ops.isfinite(w)), "int32"))


class _TensorFlow:
    """One `tf.function` over every device variable, each reduced by an
    inner `tf.function` traced once per `(shape, dtype)`; snapshots in
    `tf.Variable`s, assigned in the same function.

    Without XLA: `jit_compile=True` kernels were slower (5.4x vs 4.2x the
    fused floor on 20M parameters) and held 2.5x the weights resident
    against 0.5x (`benchmarks/bench_logger.py`, 2026-12-02).
    """

    def __init__(self, owner):
        import tensorflow as tf

        self.owner = owner
        device = [owner.variables[i] for i in owner.device]
        # Plain (not mirrored) variables: one copy, not one per replica.
        with tf.init_scope():
            self.snapshots = [
                tf.Variable(
                    tf.zeros(v.shape, v.dtype),
                    trainable=False,
                    name="weight_norm_logger_snapshot",
                )
                for v in device
            ]
        self._kernels = {}
        self._sums = tf.function(self._sums_fn, autograph=False)
        self._last_penalty = 0.0

    def _kernel(self, dtype):
        import tensorflow as tf

        if dtype not in self._kernels:
            names = self.owner.sum_names
            self._kernels[dtype] = tf.function(
                lambda w, last: _stats(w, last, names, tf.identity),
                autograph=False,
                reduce_retracing=False,
            )
        return self._kernels[dtype]

    def _value(self, variable):
        import tensorflow as tf

        return tf.convert_to_tensor(variable.value)

    def _sums_fn(self):
        import tensorflow as tf

        rows = []
        for i, snapshot in zip(self.owner.device, self.snapshots):
            w = self._value(self.owner.variables[i])
            rows.append(self._kernel(w.dtype.name)(w, snapshot.read_value()))
            # Automatic control dependencies: after the read above.
            snapshot.assign(w)
        # The penalty in the same call: one launch per log, not two.
        penalty = self._penalty_fn() if self.owner.regularized else 0.0
        with tf.device("/CPU:0"):
            if not rows:
                return tf.zeros([0, len(self.owner.sum_names)]), penalty
            return tf.stack(rows), tf.identity(penalty)

    def sums(self, reset):
        if reset:  # Eager: cheaper than tracing a second function.
            for i, snapshot in zip(self.owner.device, self.snapshots):
                snapshot.assign(self._value(self.owner.variables[i]))
        rows, self._last_penalty = self._sums()
        return rows.numpy().astype(np.float64)

    @staticmethod
    def on_cpu(variable):
        import tensorflow as tf

        device = tf.convert_to_tensor(variable.value).device
        return tf.DeviceSpec.from_string(device).device_type == "CPU"

    def view(self, variables):
        """NumPy arrays of the values: the tensors' own memory on a CPU
        (DLPack); a copy for bfloat16 (NumPy has none) and where tensors
        have no `__dlpack__` (TensorFlow 2.16)."""
        values = []
        for value in map(self._value, variables):
            shared = value.dtype.name in ("float16", "float32", "float64")
            shared = shared and hasattr(value, "__dlpack__")
            if shared and "CPU" in value.device.upper():
                values.append(np.from_dlpack(value))
            else:
                values.append(value.numpy())
        return values

    def count_nonfinite(self, variable):
        return float(_count_nonfinite(self._value(variable)))

    def _penalty_fn(self):
        variables = self.owner.variables
        return ops.sum(
            ops.stack(
                [
                    ops.cast(
                        variables[i].regularizer(self._value(variables[i])),
                        "float32",
                    )
                    for i in self.owner.regularized
                ]
            )
        )

    def penalty(self):
        """The penalty computed with the last `sums`."""
        return float(self._last_penalty)


class _JAX:
    """`jax.jit` kernels per `(shape, dtype)`, called per variable; each
    snapshot is donated to the kernel that replaces it."""

    def __init__(self, owner):
        import jax

        self.owner = owner
        self._kernel = jax.jit(self._kernel_fn, donate_argnums=(1,))
        self._penalty = jax.jit(self._penalty_fn)
        self.lasts = None

    def _kernel_fn(self, w, last):
        import jax

        names = self.owner.sum_names
        stats = _stats(w, last, names, jax.lax.optimization_barrier)
        # `w * 1`, not `w`: an output that is an input would be the same
        # buffer, which the next train step donates.
        return stats, w * 1

    def _values(self, indices):
        return [self.owner.variables[i].value for i in indices]

    def sums(self, reset):
        import jax

        values = self._values(self.owner.device)
        if reset:
            self.lasts = [w * 1 for w in values]
        rows = []
        for k, w in enumerate(values):
            stats, self.lasts[k] = self._kernel(w, self.lasts[k])
            rows.append(stats)
        return np.asarray(jax.device_get(rows), np.float64)

    @staticmethod
    def on_cpu(variable):
        devices = _addressable(variable.value).devices()
        return all(d.platform == "cpu" for d in devices)

    def view(self, variables):
        """NumPy arrays of the values (the arrays' own memory on a CPU)."""
        import jax

        return jax.device_get([_addressable(v.value) for v in variables])

    def count_nonfinite(self, variable):
        return float(_count_nonfinite(variable.value))

    def _penalty_fn(self, weights):
        variables = [self.owner.variables[i] for i in self.owner.regularized]
        return ops.sum(
            ops.stack(
                [
                    ops.cast(v.regularizer(w), "float32")
                    for v, w in zip(variables, weights)
                ]
            )
        )

    def penalty(self):
        value = self._penalty(self._values(self.owner.regularized))
        return float(np.asarray(_addressable(value)))


def _addressable(array):
    """The whole array, or under multi-process JAX this process's copy of
    a replicated one."""
    if getattr(array, "is_fully_addressable", True):
        return array
    return array.addressable_data(0)


class _Torch:
    """Eager kernels under `torch.no_grad()`, in chunks of `TORCH_CHUNK`
    entries: `torch.linalg.vector_norm` (no temporary), the snapshot
    updated in place (`sub_`, norm, `copy_`)."""

    def __init__(self, owner):
        self.owner = owner
        self.lasts = None

    def _values(self, indices):
        return [self.owner.variables[i].value.detach() for i in indices]

    def sums(self, reset):
        import torch

        with torch.no_grad():
            values = self._values(self.owner.device)
            if reset:
                self.lasts = [w.clone() for w in values]
            rows = [
                self._kernel(w.reshape(-1), last.view(-1))
                for w, last in zip(values, self.lasts)
            ]
            if not rows:
                return np.zeros((0, len(self.owner.sum_names)))
            return torch.stack(rows).cpu().numpy().astype(np.float64)

    def _kernel(self, w, last):
        import torch

        norm = torch.linalg.vector_norm
        names = self.owner.sum_names
        f32 = torch.float32
        totals = dict.fromkeys(names, 0.0)
        totals["max"] = torch.zeros((), dtype=f32, device=w.device)
        for part, part_last in zip(
            w.split(TORCH_CHUNK), last.split(TORCH_CHUNK)
        ):
            totals["square"] += norm(part, dtype=f32) ** 2
            if part.dtype == f32:
                part_last.sub_(part)  # In place: the snapshot is overwritten.
                totals["change"] += norm(part_last) ** 2
            else:  # Not in the variable's lower precision.
                totals["change"] += norm(part.float() - part_last.float()) ** 2
            part_last.copy_(part)
            tiny = torch.abs(part) < SPARSITY_THRESHOLD
            totals["tiny"] += torch.count_nonzero(tiny)
            if "l1" in totals:
                totals["l1"] += norm(part, 1, dtype=f32)
            if "max" in names:
                totals["max"] = torch.maximum(
                    totals["max"], norm(part, float("inf"), dtype=f32)
                )
        return torch.stack(
            [torch.as_tensor(totals[n], dtype=f32) for n in names]
        )

    @staticmethod
    def on_cpu(variable):
        return variable.value.device.type == "cpu"

    def view(self, variables):
        """NumPy arrays of the values (the tensors' own memory on a CPU)."""
        import torch

        values = [v.value.detach().cpu() for v in variables]
        # NumPy has no bfloat16: widen those (exactly) to float32.
        return [
            (w.float() if w.dtype == torch.bfloat16 else w).numpy()
            for w in values
        ]

    def count_nonfinite(self, variable):
        import torch

        with torch.no_grad():
            return float(_count_nonfinite(variable.value.detach()))

    def penalty(self):
        import torch

        indices = self.owner.regularized
        variables = [self.owner.variables[i] for i in indices]
        with torch.no_grad():
            penalties = [
                ops.cast(v.regularizer(w), "float32")
                for v, w in zip(variables, self._values(indices))
            ]
            return float(torch.stack(penalties).sum())


_BACKENDS = {"tensorflow": _TensorFlow, "jax": _JAX, "torch": _Torch}
