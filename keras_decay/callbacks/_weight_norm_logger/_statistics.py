"""The logger's statistics: one compiled function per backend, keyed by tag.

`statistics_core` is written with `keras.ops` and returns an ordered
`{tag: scalar}` dict; `Statistics` compiles it once per backend (a
`tf.function` on TensorFlow, `jax.jit` on JAX, eager `torch.no_grad()` on
PyTorch, where `torch.compile` would take longer to trace than the logs it
saves), stacks the scalars into one vector fetched to the host in one
transfer, and hands back `{tag: float}` in the order the core wrote it.
"""

import keras
import numpy as np
from keras import ops

NORM_PREFIX = {"l2": "weight_norm", "l1": "weight_l1", "max": "weight_max"}
SPARSITY_THRESHOLD = 1e-3
HISTOGRAM_BUCKETS = 30


def statistics_core(
    variables, paths, weights, lasts, last_squares, hypers, options
):
    """Every statistic of one log, in `keras.ops`.

    Args:
        variables: The Keras variables (their `regularizer` is read).
        paths: Their unique tag suffixes.
        weights: Their current values (backend tensors).
        lasts: Their values at the previous log.
        last_squares: 1-D tensor, `sum(w_last**2)` per variable.
        hypers: `{tag: float32 scalar}` passed through (optimizer values).
        options: `(norms, histograms)`.

    Returns:
        `(stats, histograms, squares)`: `{tag: float32 scalar}`,
        `{path: [low, high, count_1, ..., count_30]}` and the new
        `sum(w**2)` per variable.
    """
    norms, with_histograms = options
    stats, histograms, squares, penalties = {}, {}, [], []
    for i, (variable, path, raw, last) in enumerate(
        zip(variables, paths, weights, lasts)
    ):
        w = ops.cast(raw, "float32")
        abs_w = ops.abs(w)
        square = ops.sum(ops.square(w))
        by_norm = {
            "l2": lambda: ops.sqrt(square),
            "l1": lambda: ops.sum(abs_w),
            "max": lambda: ops.max(abs_w),
        }
        for norm in norms:
            stats[f"{NORM_PREFIX[norm]}/{path}"] = by_norm[norm]()
        # ||w_last||**2 was computed at the previous log: one pass less.
        last_square = last_squares[i]
        change = ops.sqrt(ops.sum(ops.square(w - ops.cast(last, "float32"))))
        positive = last_square > 0
        stats[f"update_ratio/{path}"] = ops.where(
            positive,
            change / ops.sqrt(ops.where(positive, last_square, 1.0)),
            0.0,
        )
        stats[f"sparsity/{path}"] = ops.mean(
            ops.cast(abs_w < SPARSITY_THRESHOLD, "float32")
        )
        finite = ops.isfinite(w)
        nonfinite = ops.sum(ops.cast(ops.logical_not(finite), "float32"))
        stats[f"nonfinite/{path}"] = nonfinite
        if with_histograms:
            histograms[path] = _histogram(w, finite, nonfinite)
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is not None:
            penalties.append(ops.cast(regularizer(raw), "float32"))
        squares.append(square)
    stacked_squares = ops.stack(squares) if squares else ops.zeros([0])
    stats["weight_norm/global"] = ops.sqrt(ops.sum(stacked_squares))
    stats["regularization/loss"] = (
        ops.sum(ops.stack(penalties)) if penalties else ops.zeros([])
    )
    stats.update(hypers)
    return stats, histograms, stacked_squares


def _histogram(w, finite, nonfinite):
    """`[low, high, counts...]` of the finite entries (30 equal buckets).

    Bucket `j` holds `low + j * width <= w < low + (j + 1) * width`, the
    last one also `w == high`, as `tf.histogram_fixed_width`.
    """
    flat = ops.reshape(w, [-1])
    finite = ops.reshape(finite, [-1])
    big = np.finfo("float32").max
    any_finite = ops.any(finite)
    low = ops.where(any_finite, ops.min(ops.where(finite, flat, big)), 0.0)
    high = ops.where(any_finite, ops.max(ops.where(finite, flat, -big)), 0.0)
    top = ops.where(low == high, low + 1.0, high)
    k = HISTOGRAM_BUCKETS
    scaled = ops.floor((ops.where(finite, flat, low) - low) / (top - low) * k)
    index = ops.cast(ops.clip(scaled, 0, k - 1), "int32")
    counts = ops.segment_sum(ops.ones_like(flat), index, num_segments=k)
    # Non-finite entries were counted in bucket 0 (as `low`): take them out.
    counts = counts - ops.one_hot(0, k) * nonfinite
    return ops.concatenate([ops.stack([low, high]), counts], axis=0)


class Statistics:
    """Compiled statistics of a fixed list of variables, with snapshots.

    Keeps one copy of each variable (its value at the previous log) and
    `sum(w_last**2)` per variable. `reset()` takes the snapshot now;
    `compute(hypers)` returns `({tag: float}, {path: ndarray})` and moves
    the snapshot to the current values.

    Args:
        variables: List of Keras variables.
        paths: Their unique tag suffixes.
        norms: Tuple of `"l2"`, `"l1"`, `"max"`.
        histograms: Bool.
        hyper_tags: Tags of the values passed to `compute`.
    """

    def __init__(self, variables, paths, norms, histograms, hyper_tags):
        self.variables = list(variables)
        self.paths = list(paths)
        self.options = (tuple(norms), bool(histograms))
        self.hyper_tags = list(hyper_tags)
        self._layout = None  # (scalar tags, histogram paths), set at trace.
        self._backend = _BACKENDS[keras.backend.backend()](self)

    def core(self, weights, lasts, last_squares, hypers):
        """Runs `statistics_core`; returns one float32 vector (and squares)."""
        stats, histograms, squares = statistics_core(
            self.variables,
            self.paths,
            weights,
            lasts,
            last_squares,
            {tag: hypers[i] for i, tag in enumerate(self.hyper_tags)},
            self.options,
        )
        self._layout = (list(stats), list(histograms))
        parts = [ops.stack([ops.cast(v, "float32") for v in stats.values()])]
        parts.extend(histograms.values())
        return ops.concatenate(parts, axis=0), squares

    def reset(self):
        self._backend.reset()

    def compute(self, hypers):
        if isinstance(hypers, (list, tuple)):  # Python floats
            hypers = np.asarray(hypers, "float32").reshape([len(hypers)])
        vector = self._backend.compute(hypers)  # The one transfer.
        tags, histogram_paths = self._layout
        n = len(tags)
        scalars = dict(zip(tags, vector[:n].tolist()))
        rows = vector[n:].reshape(len(histogram_paths), HISTOGRAM_BUCKETS + 2)
        return scalars, dict(zip(histogram_paths, rows.astype(np.float64)))


class _TensorFlow:
    """A `tf.function` over the variables; snapshots in `tf.Variable`s."""

    def __init__(self, owner):
        import tensorflow as tf

        self.owner = owner
        # Plain (not mirrored) variables: one copy, not one per replica.
        with tf.init_scope():
            self.snapshots = [
                tf.Variable(
                    tf.zeros(v.shape, v.dtype),
                    trainable=False,
                    name="weight_norm_logger_snapshot",
                )
                for v in owner.variables
            ]
            self.squares = tf.Variable(
                tf.zeros([len(owner.variables)]), trainable=False
            )
        self._reset = tf.function(self._reset_fn, autograph=False)
        self._compute = tf.function(self._compute_fn, autograph=False)

    def _weights(self):
        import tensorflow as tf

        return [tf.convert_to_tensor(v.value) for v in self.owner.variables]

    def _reset_fn(self):
        import tensorflow as tf

        weights = self._weights()
        for snapshot, w in zip(self.snapshots, weights):
            snapshot.assign(w)
        squares = [
            tf.reduce_sum(tf.square(tf.cast(w, "float32"))) for w in weights
        ]
        if squares:
            self.squares.assign(tf.stack(squares))

    def _compute_fn(self, hypers):
        import tensorflow as tf

        weights = self._weights()
        lasts = [s.read_value() for s in self.snapshots]
        vector, squares = self.owner.core(
            weights, lasts, self.squares.read_value(), hypers
        )
        # Automatic control dependencies run these after the reads above.
        for snapshot, w in zip(self.snapshots, weights):
            snapshot.assign(w)
        self.squares.assign(squares)
        with tf.device("/CPU:0"):
            return tf.identity(vector)

    def reset(self):
        self._reset()

    def compute(self, hypers):
        return self._compute(hypers).numpy()


class _JAX:
    """`jax.jit` of the core; the old snapshots are donated to the new."""

    def __init__(self, owner):
        import jax

        self.owner = owner
        self._copy = jax.jit(lambda weights: [w * 1 for w in weights])
        self._compute = jax.jit(self._compute_fn, donate_argnums=(1, 2))
        self.snapshots = None
        self.squares = None

    def _compute_fn(self, weights, lasts, last_squares, hypers):
        vector, squares = self.owner.core(weights, lasts, last_squares, hypers)
        # `w * 1`, not `w`: an output that is an input would be the same
        # buffer, which the next train step donates.
        return vector, [w * 1 for w in weights], squares

    def _weights(self):
        return [v.value for v in self.owner.variables]

    def reset(self):
        weights = self._weights()
        self.snapshots = self._copy(weights)
        self.squares = (
            ops.stack(
                [ops.sum(ops.square(ops.cast(w, "float32"))) for w in weights]
            )
            if weights
            else ops.zeros([0])
        )

    def compute(self, hypers):
        vector, self.snapshots, self.squares = self._compute(
            self._weights(), self.snapshots, self.squares, hypers
        )
        # Under multi-process JAX the vector spans every process: each holds
        # a full (replicated) copy.
        return np.asarray(vector.addressable_data(0))


class _Torch:
    """Eager `keras.ops` under `torch.no_grad()`; snapshots copied in place."""

    def __init__(self, owner):
        self.owner = owner
        self.snapshots = None
        self.squares = None

    def _weights(self):
        return [v.value.detach() for v in self.owner.variables]

    def reset(self):
        import torch

        with torch.no_grad():
            weights = self._weights()
            self.snapshots = [w.clone() for w in weights]
            self.squares = (
                ops.stack(
                    [
                        ops.sum(ops.square(ops.cast(w, "float32")))
                        for w in weights
                    ]
                )
                if weights
                else ops.zeros([0])
            )

    def compute(self, hypers):
        import torch

        with torch.no_grad():
            weights = self._weights()
            vector, squares = self.owner.core(
                weights, self.snapshots, self.squares, hypers
            )
            for snapshot, w in zip(self.snapshots, weights):
                snapshot.copy_(w)
            self.squares = squares
            return vector.cpu().numpy()


_BACKENDS = {"tensorflow": _TensorFlow, "jax": _JAX, "torch": _Torch}
