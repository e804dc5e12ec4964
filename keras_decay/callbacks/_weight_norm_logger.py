"""`WeightNormLogger`: weight norms and decay diagnostics in TensorBoard."""

import numbers
import os
import time
import warnings

import keras
import numpy as np
from keras import ops

from keras_decay import _keras_compat
from keras_decay._validation import _fail
from keras_decay._validation import check_bool
from keras_decay._validation import check_choice
from keras_decay._validation import check_positive_int

__all__ = ["WeightNormLogger"]

_NORMS = ("l2", "l1", "max")
_NORM_PREFIX = {"l2": "weight_norm", "l1": "weight_l1", "max": "weight_max"}
_SPARSITY_THRESHOLD = 1e-3
_HISTOGRAM_BUCKETS = 30
# Optimizer attributes logged as `optimizer/<tag>`, first present name wins.
_OPTIMIZER_HYPERS = (
    ("learning_rate", ("learning_rate",)),
    ("momentum", ("momentum", "beta_1")),
    ("weight_decay", ("weight_decay",)),
)


def _check_update_freq(update_freq):
    if isinstance(update_freq, str):
        return check_choice(update_freq, "update_freq", ("epoch", "batch"))
    expected = '"epoch", "batch" or a positive integer'
    if not isinstance(update_freq, numbers.Integral) or isinstance(
        update_freq, bool
    ):
        _fail(TypeError, "update_freq", expected, update_freq)
    return check_positive_int(update_freq, "update_freq")


def _check_norms(norms):
    expected = f"a non-empty list of names from {list(_NORMS)}"
    if isinstance(norms, str) or not isinstance(norms, (list, tuple)):
        _fail(TypeError, "norms", expected, norms)
    if not norms:
        _fail(ValueError, "norms", expected, norms)
    for norm in norms:
        if norm not in _NORMS:
            _fail(ValueError, "norms", expected, norms)
    # Keep the canonical order, drop repeats.
    return tuple(n for n in _NORMS if n in norms)


def _check_hparams(hparams):
    expected = "None or a dict of str keys to bool, int, float or str values"
    if hparams is None:
        return None
    if not isinstance(hparams, dict):
        _fail(TypeError, "hparams", expected, hparams)
    for key, value in hparams.items():
        if not isinstance(key, str) or not isinstance(
            value, (bool, numbers.Real, str)
        ):
            _fail(TypeError, "hparams", expected, hparams)
    return {
        k: v if isinstance(v, (bool, str)) else _plain_number(v)
        for k, v in hparams.items()
    }


def _plain_number(value):
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _as_float32_tensor(value):
    """A float32 scalar from a float, a tensor, a variable or an object that
    converts to a tensor (read now, so later changes are seen)."""
    if isinstance(value, numbers.Real):
        return ops.convert_to_tensor(float(value), "float32")
    try:
        tensor = ops.convert_to_tensor(value)
    except (TypeError, ValueError):
        tensor = ops.convert_to_tensor(float(value), "float32")
    return ops.cast(tensor, "float32")


@keras.saving.register_keras_serializable(package="keras_decay")
class WeightNormLogger(keras.callbacks.Callback):
    """Logs weight norms and weight-decay diagnostics to TensorBoard.

    Writes TensorBoard event files to `<log_dir>/train` (the run folder that
    `keras.callbacks.TensorBoard` uses, so both can share a `log_dir`). At each
    log, for every trainable variable `w` (tags use `w.path`):

    ```
    weight_norm/<path>   = sqrt(sum(w**2))            # norms contains "l2"
    weight_l1/<path>     = sum(abs(w))                # norms contains "l1"
    weight_max/<path>    = max(abs(w))                # norms contains "max"
    update_ratio/<path>  = norm(w - w_last) / norm(w_last)   # 0 if w_last == 0
    sparsity/<path>      = mean(abs(w) < 1e-3)
    nonfinite/<path>     = sum(logical_not(isfinite(w)))
    weight_histogram/<path>                          # histograms=True
    ```

    `w_last` is the value at the previous log (at the start of `fit` for the
    first log of a `fit`). Once per log also `weight_norm/global =
    sqrt(sum over variables of sum(w**2))`, `regularization/loss` (the sum
    of the weight regularizers' penalties, i.e. `sum(model.losses)` outside
    a forward pass, not divided by the number of replicas) and
    `optimizer/learning_rate`, `optimizer/momentum` (`momentum`, or Adam's
    `beta_1`) and `optimizer/weight_decay` where the optimizer has them.

    All statistics come from one compiled `tf.function` (traced once per
    model and reused by later fits) that reads each variable once and hands
    one stacked vector to the host; the events are then written with
    TensorBoard's `EventFileWriter`, created at `on_train_begin` and closed
    at `on_train_end`. The logger keeps a copy of each trainable variable
    (the `w_last` snapshot): as much extra memory as the trainable weights.

    A NaN or Inf in a variable is logged and, with `stop_on_nonfinite=True`,
    stops training (`model.stop_training = True`) with a `RuntimeWarning`
    naming the variables. A `log_dir` that cannot be written raises an
    `OSError` at `on_train_begin`, before any training step. Under a
    `tf.distribute` strategy the statistics are computed once, in cross-replica
    context, and only the chief worker writes. Requires the TensorFlow
    backend.

    Args:
        log_dir: String. Directory of the TensorBoard logs; events go to
            `<log_dir>/train`. Defaults to `"logs"`.
        update_freq: `"epoch"`, `"batch"` or a positive int. `"epoch"` logs
            at each epoch end with the epoch index (from 0) as step; an int
            `N` logs every `N` batches with `optimizer.iterations` as step
            (`"batch"` is `1`). Defaults to `"epoch"`.
        norms: List of `"l2"`, `"l1"`, `"max"`. The per-variable norms to
            log. Defaults to `("l2",)`.
        histograms: Bool. Whether to add a 30-bucket histogram per variable.
            Defaults to `False`.
        hparams: Optional dict of hyperparameter name to bool, int, float or
            str, recorded once with TensorBoard's HParams plugin. Defaults
            to `None`.
        stop_on_nonfinite: Bool. Whether to stop training when a variable
            holds NaN or Inf. Defaults to `True`.

    Example:

    ```python
    model.fit(
        x, y, epochs=10,
        callbacks=[keras_decay.callbacks.WeightNormLogger(
            "logs/run1", norms=("l2", "l1"), hparams={"decay": 5e-4})],
    )
    # tensorboard --logdir logs
    ```
    """

    def __init__(
        self,
        log_dir="logs",
        update_freq="epoch",
        norms=("l2",),
        histograms=False,
        hparams=None,
        stop_on_nonfinite=True,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)):
            _fail(TypeError, "log_dir", "a str or path", log_dir)
        self.log_dir = os.fspath(log_dir)
        self.update_freq = _check_update_freq(update_freq)
        self.norms = _check_norms(norms)
        self.histograms = check_bool(histograms, "histograms")
        self.hparams = _check_hparams(hparams)
        self.stop_on_nonfinite = check_bool(
            stop_on_nonfinite, "stop_on_nonfinite"
        )
        self._every = 1 if self.update_freq == "batch" else self.update_freq
        if self.update_freq == "epoch":
            # Keep Keras' default (a no-op) so that `fit` may still dispatch
            # batch-end callbacks asynchronously.
            self.on_train_batch_end = super().on_train_batch_end
        self._writer = None
        self._function = None
        self._snapshots = None
        self._hparams_written = False
        self.nonfinite_variables = []

    def get_config(self):
        return {
            "log_dir": self.log_dir,
            "update_freq": self.update_freq,
            "norms": list(self.norms),
            "histograms": self.histograms,
            "hparams": None if self.hparams is None else dict(self.hparams),
            "stop_on_nonfinite": self.stop_on_nonfinite,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def _train_dir(self):
        return os.path.join(self.log_dir, "train")

    # -- set-up ---------------------------------------------------------------

    def _should_write(self):
        strategy = getattr(self.model, "distribute_strategy", None)
        return _keras_compat.should_write_summaries(strategy)

    def _open_writer(self):
        import tensorflow as tf
        from tensorboard.summary.writer import event_file_writer

        try:
            return event_file_writer.EventFileWriter(self._train_dir)
        except (OSError, tf.errors.OpError) as error:
            raise OSError(
                "WeightNormLogger cannot write TensorBoard logs to "
                f"log_dir={self.log_dir!r}: {error}"
            ) from error

    def _build(self):
        """Traces the statistics function once per set of variables."""
        import tensorflow as tf

        model = self.model
        variables = list(model.trainable_variables)
        optimizer = _keras_compat.unwrap_optimizer(
            getattr(model, "optimizer", None)
        )
        hypers = []
        for tag, names in _OPTIMIZER_HYPERS:
            for name in names:
                if getattr(optimizer, name, None) is not None:
                    hypers.append((f"optimizer/{tag}", name))
                    break
        key = (tuple(id(v) for v in variables), tuple(hypers))
        if self._function is not None and key == self._key:
            return
        self._key = key
        paths, seen = [], set()
        for variable in variables:
            path, i = variable.path, 1
            while path in seen:
                path, i = f"{variable.path}_{i}", i + 1
            seen.add(path)
            paths.append(path)
        self._variables = variables
        self._paths = paths
        self._hypers = hypers
        # Plain (not mirrored) variables, outside any strategy scope: one
        # copy of the weights, not one per replica.
        with tf.init_scope():
            self._snapshots = [
                tf.Variable(
                    tf.zeros(v.shape, v.dtype),
                    trainable=False,
                    name="weight_norm_logger_snapshot",
                )
                for v in variables
            ]
            self._last_squares = tf.Variable(
                tf.zeros([len(variables)]), trainable=False
            )
        # Layout of the vector the compiled function returns.
        per_var = [_NORM_PREFIX[n] for n in self.norms]
        per_var += ["update_ratio", "sparsity", "nonfinite"]
        self._per_var = per_var
        tags = [f"{p}/{path}" for path in paths for p in per_var]
        tags += ["weight_norm/global", "regularization/loss"]
        tags += [tag for tag, _ in hypers]
        self._tags = tags
        self._function = tf.function(self._stats, autograph=False)
        self._snapshot_function = tf.function(
            self._take_snapshot, autograph=False
        )

    def _take_snapshot(self):
        import tensorflow as tf

        squares = []
        for variable, snapshot in zip(self._variables, self._snapshots):
            value = tf.convert_to_tensor(variable)
            snapshot.assign(value)
            squares.append(tf.reduce_sum(tf.square(tf.cast(value, tf.float32))))
        if squares:
            self._last_squares.assign(tf.stack(squares))

    def _stats(self, step, hypers):
        """Computes every statistic; returns them stacked, on the host.

        Layout (float64): the per-variable rows, global norm, regularization
        loss, optimizer values, the step, then (with histograms) per variable
        `[low, high, count_1, ..., count_30]`.
        """
        import tensorflow as tf

        rows, squares, penalties, histograms = [], [], [], []
        last_squares = tf.unstack(
            self._last_squares.read_value(), num=len(self._variables)
        )
        after = []  # Sequence the variables: bounded temporary memory.
        for variable, snapshot, last_square in zip(
            self._variables, self._snapshots, last_squares
        ):
            with tf.control_dependencies(after):
                raw = tf.convert_to_tensor(variable)
                last = tf.cast(snapshot.read_value(), tf.float32)
            w = tf.cast(raw, tf.float32)
            abs_w = tf.abs(w)
            square = tf.reduce_sum(tf.square(w))
            stats = {
                "weight_norm": tf.sqrt(square),
                "weight_l1": tf.reduce_sum(abs_w),
                "weight_max": tf.reduce_max(abs_w),
            }
            # ||w_last||**2 was computed at the previous log: one pass less.
            stats["update_ratio"] = tf.math.divide_no_nan(
                tf.sqrt(tf.reduce_sum(tf.math.squared_difference(w, last))),
                tf.sqrt(last_square),
            )
            stats["sparsity"] = tf.reduce_mean(
                tf.cast(abs_w < _SPARSITY_THRESHOLD, tf.float32)
            )
            finite = tf.math.is_finite(w)
            stats["nonfinite"] = tf.reduce_sum(
                tf.cast(tf.logical_not(finite), tf.float32)
            )
            row = [stats[name] for name in self._per_var]
            if self.histograms:
                histograms.append(self._histogram(w, finite))
            with tf.control_dependencies(row + histograms[-1:]):
                assign = snapshot.assign(raw)
            regularizer = getattr(variable, "regularizer", None)
            if regularizer is not None:
                penalties.append(
                    tf.cast(tf.convert_to_tensor(regularizer(raw)), tf.float32)
                )
            rows.extend(row)
            squares.append(square)
            after = [*row, assign]
        if squares:
            with tf.control_dependencies(after):
                after = [self._last_squares.assign(tf.stack(squares))]
        with tf.control_dependencies(after):
            rows.append(tf.sqrt(tf.add_n(squares) if squares else 0.0))
        rows.append(tf.add_n(penalties) if penalties else tf.constant(0.0))
        parts = [tf.cast(tf.stack(rows), tf.float64)]
        parts.append(tf.cast(hypers, tf.float64))
        parts.append(tf.cast(tf.reshape(step, [1]), tf.float64))
        parts.extend(histograms)
        stacked = tf.concat(parts, 0)
        with tf.device("/CPU:0"):
            return tf.identity(stacked)  # The one device-to-host transfer.

    def _histogram(self, w, finite):
        """`[low, high, counts...]` over the finite entries, float64."""
        import tensorflow as tf

        flat = tf.reshape(w, [-1])
        finite = tf.reshape(finite, [-1])
        big = tf.float32.max
        any_finite = tf.reduce_any(finite)
        low = tf.where(
            any_finite, tf.reduce_min(tf.where(finite, flat, big)), 0
        )
        high = tf.where(
            any_finite, tf.reduce_max(tf.where(finite, flat, -big)), 0
        )
        single = tf.equal(low, high)
        counts = tf.histogram_fixed_width(
            tf.boolean_mask(flat, finite),
            tf.stack([low, tf.where(single, low + 1.0, high)]),
            nbins=_HISTOGRAM_BUCKETS,
        )
        return tf.cast(
            tf.concat([[low, high], tf.cast(counts, tf.float32)], 0), tf.float64
        )

    # -- writing --------------------------------------------------------------

    def _write(self, values):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.compat.proto import tensor_pb2
        from tensorboard.compat.proto import tensor_shape_pb2
        from tensorboard.compat.proto import types_pb2
        from tensorboard.plugins.histogram import metadata as histogram_meta
        from tensorboard.plugins.scalar import metadata as scalar_meta

        n = len(self._tags)
        scalars = values[:n]
        step = int(values[n])
        summary = summary_pb2.Summary()
        for tag, value in zip(self._tags, scalars):
            entry = summary.value.add(tag=tag)
            entry.tensor.CopyFrom(
                tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_FLOAT, float_val=[float(value)]
                )
            )
            if tag not in self._described:
                entry.metadata.CopyFrom(
                    scalar_meta.create_summary_metadata(tag, "")
                )
                self._described.add(tag)
        if self.histograms:
            width = 2 + _HISTOGRAM_BUCKETS
            data = values[n + 1 :].reshape(-1, width)
            for path, row in zip(self._paths, data):
                tag = f"weight_histogram/{path}"
                buckets = _buckets(row[0], row[1], row[2:])
                entry = summary.value.add(tag=tag)
                entry.tensor.CopyFrom(
                    tensor_pb2.TensorProto(
                        dtype=types_pb2.DT_DOUBLE,
                        tensor_shape=tensor_shape_pb2.TensorShapeProto(
                            dim=[
                                tensor_shape_pb2.TensorShapeProto.Dim(size=s)
                                for s in buckets.shape
                            ]
                        ),
                        tensor_content=buckets.tobytes(),
                    )
                )
                if tag not in self._described:
                    entry.metadata.CopyFrom(
                        histogram_meta.create_summary_metadata(tag, "")
                    )
                    self._described.add(tag)
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        )

    # -- callback hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "WeightNormLogger requires the TensorFlow backend. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        self._writer = self._open_writer() if self._should_write() else None
        self._described = set()
        self._build()
        self._snapshot_function()
        self._batches = 0
        if self.hparams is not None and not self._hparams_written:
            if self._writer is not None:
                from tensorboard.compat.proto import event_pb2
                from tensorboard.plugins.hparams import api as hp

                self._writer.add_event(
                    event_pb2.Event(
                        wall_time=time.time(),
                        step=0,
                        summary=hp.hparams_pb(self.hparams),
                    )
                )
                self._writer.flush()
            self._hparams_written = True

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self._every == 0:
            self._log(self.model.optimizer.iterations)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._log(epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _log(self, step):
        import tensorflow as tf

        step = tf.cast(tf.convert_to_tensor(step), tf.int64)
        optimizer = _keras_compat.unwrap_optimizer(self.model.optimizer)
        hypers = [
            _as_float32_tensor(getattr(optimizer, name))
            for _, name in self._hypers
        ]
        hypers = tf.stack(hypers) if hypers else tf.zeros([0])
        strategy = getattr(self.model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():  # Cross-replica context.
                values = self._function(step, hypers)
        else:
            values = self._function(step, hypers)
        values = values.numpy()
        if self._writer is not None:
            self._write(values)
        self._check_nonfinite(values)

    def _check_nonfinite(self, values):
        width = len(self._per_var)
        counts = values[: width * len(self._paths)].reshape(-1, width)[:, -1]
        bad = [p for p, c in zip(self._paths, counts) if c > 0]
        if not bad:
            return
        self.nonfinite_variables = bad
        names = ", ".join(bad)
        if self.stop_on_nonfinite:
            self.model.stop_training = True
            message = f"stopping training: non-finite values in {names}"
        else:
            message = f"non-finite values in {names}"
        warnings.warn(f"WeightNormLogger: {message}.", RuntimeWarning)


def _buckets(low, high, counts):
    """TensorBoard's `[k, 3]` histogram rows `[left, right, count]`."""
    k = len(counts)
    if low == high:
        # As `tf.summary.histogram`: zero-width buckets, all in the last.
        edges = np.full(k, high, np.float64)
        last = np.zeros(k, np.float64)
        last[-1] = np.sum(counts)
        return np.stack([edges, edges, last], axis=1)
    edges = np.linspace(low, high, k + 1)
    edges[-1] = high
    return np.stack([edges[:-1], edges[1:], counts], axis=1).astype(np.float64)
