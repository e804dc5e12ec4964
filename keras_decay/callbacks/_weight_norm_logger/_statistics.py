"""The logger's statistics: one compiled function per backend, keyed by tag.

`Statistics.core` is written with `keras.ops`. Variables of at most
`SMALL_SIZE` entries are flattened into one vector and reduced together
with segment sums (a constant number of operations however many there are:
the first log of a model with 1,000 small variables traces in seconds);
larger ones are reduced one by one. The backend class compiles the core
once (a `tf.function` on TensorFlow, `jax.jit` on JAX, eager
`torch.no_grad()` on PyTorch, where `torch.compile` would take longer to
trace than the logs it saves); the result is one float32 vector fetched to
the host in one transfer, and `layout()` names every entry by its tag.
"""

import keras
import numpy as np
from keras import ops

NORM_PREFIX = {"l2": "weight_norm", "l1": "weight_l1", "max": "weight_max"}
SPARSITY_THRESHOLD = 1e-3
HISTOGRAM_BUCKETS = 30
SMALL_SIZE = 1 << 16


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

    Keeps one copy of the variables (their values at the previous log).
    `reset()` takes the snapshot now; `compute(hypers)` returns
    `({tag: float}, {path: ndarray})` and moves the snapshot to the current
    values. Per variable (tags `<column>/<path>`):

    ```
    weight_norm = sqrt(sum(w**2)); weight_l1 = sum(abs(w));
    weight_max = max(abs(w))                       # those in `norms`
    update_ratio = sqrt(sum((w - w_last)**2)) / sqrt(sum(w_last**2))  # or 0
    sparsity = mean(abs(w) < 1e-3); nonfinite = sum(!isfinite(w))
    ```

    then `weight_norm/global`, `regularization/loss` (the variables'
    regularizers) and the `hyper_tags` values passed to `compute`.

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
        self.histograms = bool(histograms)
        self.hyper_tags = list(hyper_tags)
        self.columns = [NORM_PREFIX[n] for n in norms]
        self.columns += ["update_ratio", "sparsity", "nonfinite"]
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        self.small = [i for i, n in enumerate(sizes) if n <= SMALL_SIZE]
        self.large = [i for i, n in enumerate(sizes) if n > SMALL_SIZE]
        self.small_sizes = np.array([sizes[i] for i in self.small], "float32")
        # Which small variable each entry of the flat vector belongs to.
        self.segment_ids = np.repeat(
            np.arange(len(self.small), dtype="int32"),
            [sizes[i] for i in self.small],
        )
        self._backend = _BACKENDS[keras.backend.backend()](self)

    def layout(self):
        """`(scalar tags, histogram paths)`, in the order of the vector."""
        order = self.small + self.large
        tags = [f"{c}/{self.paths[i]}" for i in order for c in self.columns]
        tags += ["weight_norm/global", "regularization/loss"]
        tags += self.hyper_tags
        return tags, self.paths if self.histograms else []

    def snapshot(self, weights):
        """What the next log compares with: the small ones flat, in float32."""
        snapshot = [self._flat(weights)] if self.small else []
        return snapshot + [weights[i] for i in self.large]

    def _flat(self, weights):
        return ops.concatenate(
            [
                ops.reshape(ops.cast(weights[i], "float32"), [-1])
                for i in self.small
            ]
        )

    def core(self, weights, lasts, segment_ids, hypers):
        """Every statistic, stacked in `layout()` order; and the new snapshot.

        Args:
            weights: The variables' current values (backend tensors).
            lasts: The snapshot of the previous log (see `snapshot`).
            segment_ids: `self.segment_ids` as a tensor.
            hypers: 1-D float32 tensor of the `hyper_tags` values.
        """
        blocks, squares, snapshot = [], [], []
        if self.small:
            flat = self._flat(weights)
            blocks.append(self._reduce_small(flat, lasts[0], segment_ids))
            squares.append(ops.sum(ops.square(flat)))
            snapshot.append(flat)
            lasts = lasts[1:]
        for i, last in zip(self.large, lasts):
            w = ops.cast(weights[i], "float32")
            block, square = self._reduce_one(w, ops.cast(last, "float32"))
            blocks.append(block)
            squares.append(square)
            snapshot.append(weights[i])
        global_norm = ops.sqrt(ops.sum(ops.stack(squares))) if squares else 0.0
        penalties = [
            ops.cast(v.regularizer(w), "float32")
            for v, w in zip(self.variables, weights)
            if getattr(v, "regularizer", None) is not None
        ]
        penalty = ops.sum(ops.stack(penalties)) if penalties else 0.0
        blocks.append(ops.stack([global_norm, penalty]))
        blocks.append(ops.cast(ops.reshape(hypers, [-1]), "float32"))
        if self.histograms:
            for w in weights:
                w = ops.cast(w, "float32")
                finite = ops.isfinite(w)
                nonfinite = ops.sum(
                    ops.cast(ops.logical_not(finite), "float32")
                )
                blocks.append(_histogram(w, finite, nonfinite))
        return ops.concatenate(blocks, axis=0), snapshot

    def _columns(self, sums, maxima, sizes):
        """The `[k, len(columns)]` block from the per-variable reductions."""
        square, l1, change, last_square, tiny, nonfinite = sums
        positive = last_square > 0
        values = {
            "weight_norm": ops.sqrt(square),
            "weight_l1": l1,
            "weight_max": maxima,
            "update_ratio": ops.where(
                positive,
                ops.sqrt(change)
                / ops.sqrt(ops.where(positive, last_square, 1.0)),
                0.0,
            ),
            "sparsity": tiny / sizes,
            "nonfinite": nonfinite,
        }
        return [values[c] for c in self.columns]

    def _terms(self, w, last):
        abs_w = ops.abs(w)
        terms = [
            ops.square(w),
            abs_w,
            ops.square(w - last),
            ops.square(last),
            ops.cast(abs_w < SPARSITY_THRESHOLD, "float32"),
            ops.cast(ops.logical_not(ops.isfinite(w)), "float32"),
        ]
        return terms, abs_w

    def _reduce_small(self, flat, last, segment_ids):
        k = len(self.small)
        terms, abs_w = self._terms(flat, last)
        sums = [ops.segment_sum(t, segment_ids, num_segments=k) for t in terms]
        maxima = ops.segment_max(abs_w, segment_ids, num_segments=k)
        columns = self._columns(sums, maxima, self.small_sizes)
        return ops.reshape(ops.stack(columns, axis=1), [-1])

    def _reduce_one(self, w, last):
        terms, abs_w = self._terms(w, last)
        sums = [ops.sum(t) for t in terms]
        size = float(np.prod(w.shape))
        return ops.stack(self._columns(sums, ops.max(abs_w), size)), sums[0]

    def reset(self):
        self._backend.reset()

    def compute(self, hypers):
        if isinstance(hypers, (list, tuple)):  # Python floats
            hypers = np.asarray(hypers, "float32").reshape([len(hypers)])
        vector = self._backend.compute(hypers)  # The one transfer.
        tags, histogram_paths = self.layout()
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
            shapes = [(len(owner.segment_ids),)] if owner.small else []
            dtypes = ["float32"] if owner.small else []
            for i in owner.large:
                shapes.append(tuple(owner.variables[i].shape))
                dtypes.append(owner.variables[i].dtype)
            self.snapshots = [
                tf.Variable(
                    tf.zeros(shape, dtype),
                    trainable=False,
                    name="weight_norm_logger_snapshot",
                )
                for shape, dtype in zip(shapes, dtypes)
            ]
            # A variable, not a graph constant: it may be large.
            self.segment_ids = tf.Variable(
                owner.segment_ids, trainable=False, name="segment_ids"
            )
        self._compute = tf.function(self._compute_fn, autograph=False)

    def _weights(self):
        import tensorflow as tf

        return [tf.convert_to_tensor(v.value) for v in self.owner.variables]

    def _compute_fn(self, hypers):
        import tensorflow as tf

        lasts = [s.read_value() for s in self.snapshots]
        vector, snapshot = self.owner.core(
            self._weights(), lasts, self.segment_ids.read_value(), hypers
        )
        # Automatic control dependencies run these after the reads above.
        for variable, value in zip(self.snapshots, snapshot):
            variable.assign(value)
        with tf.device("/CPU:0"):
            return tf.identity(vector)

    def reset(self):
        # Eager: cheaper than tracing a second function over every variable.
        snapshot = self.owner.snapshot(self._weights())
        for variable, value in zip(self.snapshots, snapshot):
            variable.assign(value)

    def compute(self, hypers):
        return self._compute(hypers).numpy()


class _JAX:
    """`jax.jit` of the core; the old snapshot is donated to the new one."""

    def __init__(self, owner):
        import jax

        self.owner = owner
        self._compute = jax.jit(self._compute_fn, donate_argnums=(1,))
        self.segment_ids = jax.numpy.asarray(owner.segment_ids)
        self.lasts = None

    def _compute_fn(self, weights, lasts, segment_ids, hypers):
        vector, snapshot = self.owner.core(weights, lasts, segment_ids, hypers)
        # `w * 1`, not `w`: an output that is an input would be the same
        # buffer, which the next train step donates.
        return vector, [w * 1 for w in snapshot]

    def _weights(self):
        return [v.value for v in self.owner.variables]

    def reset(self):
        # Eager (copies): cheaper than compiling a second function.
        self.lasts = [ops.copy(w) for w in self.owner.snapshot(self._weights())]

    def compute(self, hypers):
        vector, self.lasts = self._compute(
            self._weights(), self.lasts, self.segment_ids, hypers
        )
        # Under multi-process JAX the vector spans every process: each holds
        # a full (replicated) copy.
        return np.asarray(vector.addressable_data(0))


class _Torch:
    """Eager `keras.ops` under `torch.no_grad()`; snapshots copied."""

    def __init__(self, owner):
        self.owner = owner
        self.segment_ids = ops.convert_to_tensor(owner.segment_ids)
        self.lasts = None

    def _weights(self):
        return [v.value.detach() for v in self.owner.variables]

    def reset(self):
        import torch

        with torch.no_grad():
            self.lasts = [
                w.clone() for w in self.owner.snapshot(self._weights())
            ]

    def compute(self, hypers):
        import torch

        with torch.no_grad():
            vector, snapshot = self.owner.core(
                self._weights(), self.lasts, self.segment_ids, hypers
            )
            # The flat vector is new; the large variables are copied in
            # place (no second copy).
            small = 1 if self.owner.small else 0
            for last, w in zip(self.lasts[small:], snapshot[small:]):
                last.copy_(w)
            self.lasts[:small] = snapshot[:small]
            return vector.cpu().numpy()


_BACKENDS = {"tensorflow": _TensorFlow, "jax": _JAX, "torch": _Torch}
