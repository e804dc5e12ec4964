"""`WeightNormLogger`: the callback that schedules the logs and writes them."""

import numbers
import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_decay import rules
from keras_decay._keras_compat import should_write_summaries
from keras_decay._keras_compat import sync_jax_state
from keras_decay._keras_compat import unwrap_optimizer
from keras_decay._validation import check_bool
from keras_decay._validation import check_choice
from keras_decay._validation import check_positive_int
from keras_decay._validation import fail
from keras_decay.callbacks._weight_norm_logger._rotation import Equilibrium
from keras_decay.callbacks._weight_norm_logger._rotation import Rotation
from keras_decay.callbacks._weight_norm_logger._rotation import multipliers
from keras_decay.callbacks._weight_norm_logger._statistics import Statistics
from keras_decay.callbacks._weight_norm_logger._summaries import hparams_summary
from keras_decay.callbacks._weight_norm_logger._summaries import log_summary
from keras_decay.callbacks._weight_norm_logger._writer import EventWriter
from keras_decay.optimizers import current_hyperparameters

__all__ = ["WeightNormLogger"]

_NORMS = ("l2", "l1", "max")
# More tags than this per run and TensorBoard takes minutes to load them
# (tensorboard#4170: 12,345 tags, 1.6 min).
TAG_BUDGET = 2000


def _check_update_freq(update_freq):
    if isinstance(update_freq, str):
        return check_choice(update_freq, "update_freq", ("epoch", "batch"))
    expected = '"epoch", "batch" or a positive integer'
    if not isinstance(update_freq, numbers.Integral) or isinstance(
        update_freq, bool
    ):
        fail(TypeError, "update_freq", expected, update_freq)
    return check_positive_int(update_freq, "update_freq")


def _check_norms(norms):
    expected = f"a non-empty list of names from {list(_NORMS)}"
    if isinstance(norms, str) or not isinstance(norms, (list, tuple)):
        fail(TypeError, "norms", expected, norms)
    if not norms:
        fail(ValueError, "norms", expected, norms)
    for norm in norms:
        if norm not in _NORMS:
            fail(ValueError, "norms", expected, norms)
    # Keep the canonical order, drop repeats.
    return tuple(n for n in _NORMS if n in norms)


def _check_hparams(hparams):
    expected = "None or a dict of str keys to bool, int, float or str values"
    if hparams is None:
        return None
    if not isinstance(hparams, dict):
        fail(TypeError, "hparams", expected, hparams)
    for key, value in hparams.items():
        if not isinstance(key, str) or not isinstance(
            value, (bool, np.bool_, numbers.Real, str)
        ):
            fail(TypeError, "hparams", expected, hparams)
    return {k: _plain_value(v) for k, v in hparams.items()}


def _plain_value(value):
    """A Python bool, int, float or str (NumPy scalars converted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return value
    return _plain_number(value)


def _plain_number(value):
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


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
    constraint/<path>    = lambda * max(abs(w))       # under Lion
    rotation/<path>      = mean(arccos(clip(cos, -1, 1)))   # rotation=True
    rotation_equilibrium/<path>                       # rotation=True
    ```

    Under `keras.optimizers.Lion` (keras_decay's `Lion` included) with
    decoupled decay `lambda` (the optimizer's `weight_decay` at the logged
    step times the variable's `decay_mult`; 0 for a variable excluded from
    decay), `constraint/<path>` shows Lion's box (Chen, Liu, Liang, Liu,
    ICLR 2024, arXiv 2310.05898): Lion with decoupled decay solves
    `min f` subject to `max|w| <= 1/lambda`, and Keras' update
    `w <- (1 - eta * lambda) * w - eta * sign(...)` gives, for constant
    `eta` and `lambda`, `lambda * max|w_t| <= 1 + max(lambda * max|w_0| - 1,
    0) * (1 - eta * lambda)**t`: the value falls to at most 1 within a few
    timescales `1 / (eta * lambda)` and stays there.

    With `rotation=True`, for each variable with `ndim > 1` (Kosson,
    Messmer, Jaggi, "Rotational Equilibrium", ICML 2024, arXiv 2305.17212;
    formulas as in the authors' code, epfml/REQ), `rotation/<path>` is the
    mean over its output units `j` (the last-axis slices, `w[..., j]`) of
    the angle each unit turned in the logged step, `p` the weights one
    step before:

    ```python
    w_j, p_j = w[..., j].ravel(), p[..., j].ravel()
    cos = sum(w_j * p_j) / (norm(w_j) * norm(p_j))
    angle_j = arccos(clip(cos, -1, 1))
    ```

    computed as the equal `2 * arcsin(norm(w_j / norm(w_j) - p_j /
    norm(p_j)) / 2)`, which keeps small angles in float32; a unit with a
    zero norm is left out of the mean. `rotation_equilibrium/<path>` is the
    angle the rotational equilibrium predicts for the hyperparameters of
    the logged step, with `d = c * wd * decay_mult` the per-step factor
    of the optimizer's decoupled decay `w <- w - d * w` (`c = lr * lr_mult`
    in Keras' rule; `c` of keras_decay's `weight_decay_mode`, see
    `keras_decay.rules.step_decay`) and `l2` the gradient coefficient of
    the variable's L2 regularizer (`2 * l2` of `keras.regularizers.L2`,
    `keras_decay.WeightDecay` and `apply_weight_decay`):

    ```python
    # Adam, AdamW (decoupled decay, beta_1):
    sqrt(2 * d * (1 - beta_1) / (1 + beta_1))
    # SGD, momentum m (not Nesterov): coupled L2 (Kosson et al.'s SGDM,
    # sqrt(2 * lr * l2 / (1 + m))) plus the decoupled decay, which does
    # not pass through the momentum:
    sqrt(2 * (d * (1 - m) + lr * lr_mult * l2) / (1 + m))
    # Lion (beta_1, beta_2):
    sqrt(pi / 2) * sqrt(2 * d) * sqrt((1 - beta_1)**2
                                      + beta_1**2 * (1 - beta_2) / (1 + beta_2))
    ```

    No `rotation_equilibrium` tag where no formula applies: a variable
    without any decay, coupled L2 under Adam or Lion, Nesterov SGD, and
    the other optimizers (Nadam, Adamax, RMSprop, Adagrad, Muon, ...). The
    prediction holds for scale-invariant weights (a layer followed by a
    normalization) once the norm has settled, a few timescales `1 / d`
    into training, on data the network cannot memorise: where the
    gradients vanish (a training set learnt by heart) no equilibrium forms.
    The weights one step before the logged step are copied at the start
    of that step (`on_train_batch_begin`; with `update_freq="epoch"`, of
    the epoch's last step, known from `steps_per_epoch` or the data's
    length): `rotation=True` holds one more copy of the `ndim > 1`
    variables at logged steps. `steps_per_execution > 1` (Keras calls the
    batch hooks once per group of steps) is a `ValueError` at
    `on_train_begin`; a log whose copy is not exactly one optimizer step
    old (gradient accumulation, a skipped step, an epoch of unknown length)
    leaves the rotation tags out, with one `RuntimeWarning`.

    With `cautious_weight_decay=True` on a `keras_decay.optimizers`
    optimizer, `decay/cautious_fraction` is, of the entries the logged
    step would decay, the fraction cautious decay kept decaying (where the
    update and the weight agree in sign), counted by the optimizer in its
    step (`optimizer.cautious_fraction`): the logger turns on
    `optimizer.track_cautious_fraction` at `on_train_begin` (the count
    costs each step one more sum per decayed variable) and rebuilds the
    model's train function once if that changed it.

    `w_last` is the value at the previous log (at the start of `fit` for the
    first log of a `fit`). Once per log also `weight_norm/global =
    sqrt(sum over variables of sum(w**2))`, `regularization/loss` (the sum
    of the weight regularizers' penalties, i.e. `sum(model.losses)` outside
    a forward pass, not divided by the number of replicas) and
    `optimizer/learning_rate`, `optimizer/momentum` (SGD's and RMSprop's
    `momentum`, the Adam family's and Lion's `beta_1`; where the optimizer
    has one), `optimizer/weight_decay` (0 without decay) and, with a weight
    decay, `decay/timescale_steps` (`keras_decay.rules.optimizer_timescale`).

    The optimizer values are those the logged step used, all read at the
    same step, `step = iterations - 1`, by
    `keras_decay.optimizers.current_hyperparameters` (any Keras optimizer).

    Each variable is reduced once per log to a few sums (`sum(w**2)`,
    `sum((w - w_last)**2)`, the count of tiny entries, and `sum(abs(w))`,
    `max(abs(w))` when logged). A variable in the host's memory (every
    variable on a CPU) is read in place, without a copy, and reduced with
    NumPy in cache-sized chunks: one pass over the weights and the
    snapshot. On an accelerator, a variable of more than 4,096 entries is
    reduced on the device by a kernel compiled once per distinct shape and
    dtype (a `tf.function` on TensorFlow, `jax.jit` on JAX, eager chunks
    of `torch.linalg.vector_norm` on PyTorch), smaller ones are fetched
    and reduced on the host. Everything else is derived in float64 on the
    host: `norm(w_last)` is the previous log's `weight_norm`, and
    non-finite entries are counted (one more pass) only where `sum(w**2)`
    is not finite. The kernels are built once per model
    and reused by later fits. Events are written with TensorBoard's record
    writer (TensorFlow is not imported on the other backends) and flushed
    at each log, so a killed process loses at most the log being written.
    The logger keeps a copy of each trainable variable (the `w_last`
    snapshot, updated in place; in host memory for CPU variables): as much
    extra memory as the trainable weights.

    A variable with a NaN or Inf entry has every statistic NaN but
    `nonfinite` (its count), on every backend, and so has
    `weight_norm/global`; the next log's `update_ratio` of that variable
    (against that snapshot) is NaN too. Histograms count the finite
    entries only.

    A NaN or Inf in a variable is logged and, with `stop_on_nonfinite=True`,
    stops training (`model.stop_training = True`) with a `RuntimeWarning`
    naming the variables (the layers with `group_by="layer"`), also kept
    in `nonfinite_variables`. A `log_dir` that cannot be written raises an
    `OSError` at `on_train_begin`, before any training step; a write that
    fails later (disk full, folder deleted) is one `RuntimeWarning` naming
    the logger and the path, training goes on and logging resumes when the
    folder can be written again (an event file left without any event by
    a failed write is removed). A second writer on the same run folder
    (another process) is warned about and writes to a distinct run,
    `train-<host>-<pid>`. Under a `tf.distribute` strategy the statistics
    are computed once, in cross-replica context, and only the chief worker
    writes; under JAX's multi-process runtime every process computes them
    and only process 0 writes.

    Args:
        log_dir: Non-empty string or path. Directory of the TensorBoard
            logs; events go to `<log_dir>/train`. Defaults to `"logs"`.
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
        group_by: `"variable"` or `"layer"`. `"layer"` logs each statistic
            once per layer, tagged with the layer's path (the variables'
            `path` without its last part, e.g. `sequential/dense`), over
            the layer's trainable variables `G`: `weight_norm =
            sqrt(sum_G sum(w**2))`, `weight_l1 = sum_G sum(abs(w))`,
            `weight_max = max_G max(abs(w))`, `update_ratio =
            sqrt(sum_G sum((w - w_last)**2)) / sqrt(sum_G sum(w_last**2))`,
            `sparsity = sum_G count(abs(w) < 1e-3) / sum_G size(w)`,
            `nonfinite = sum_G nonfinite(w)`, one histogram of all its
            entries. A run that would write more than 2,000 tags warns once
            (a `UserWarning` naming this option): TensorBoard loads that
            many slowly. Defaults to `"variable"`. With `rotation`, a
            layer's `rotation` is the mean over the units of all its
            `ndim > 1` variables, and its `rotation_equilibrium` the
            unit-weighted mean of their predictions (logged where each
            has one).
        rotation: Bool. Whether to log `rotation/` and
            `rotation_equilibrium/` (above). Defaults to `False`.

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
        group_by="variable",
        rotation=False,
    ):
        super().__init__()
        expected = "a non-empty str or path"
        if not isinstance(log_dir, (str, os.PathLike)):
            fail(TypeError, "log_dir", expected, log_dir)
        if not os.fspath(log_dir):
            fail(ValueError, "log_dir", expected, log_dir)
        self.log_dir = os.fspath(log_dir)
        self.update_freq = _check_update_freq(update_freq)
        self.norms = _check_norms(norms)
        self.histograms = check_bool(histograms, "histograms")
        self.hparams = _check_hparams(hparams)
        self.stop_on_nonfinite = check_bool(
            stop_on_nonfinite, "stop_on_nonfinite"
        )
        self.group_by = check_choice(
            group_by, "group_by", ("variable", "layer")
        )
        self.rotation = check_bool(rotation, "rotation")
        self._every = 1 if self.update_freq == "batch" else self.update_freq
        if self.update_freq == "epoch":
            # Keep Keras' default (a no-op) so that `fit` may still dispatch
            # batch-end callbacks asynchronously.
            self.on_train_batch_end = super().on_train_batch_end
        self._writer = None
        self._statistics = None
        self._key = None
        self._hparams_written = False
        self._warned_tags = False
        self._warned_rotation = False
        self.nonfinite_variables = []

    def get_config(self):
        return {
            "log_dir": self.log_dir,
            "update_freq": self.update_freq,
            "norms": list(self.norms),
            "histograms": self.histograms,
            "hparams": None if self.hparams is None else dict(self.hparams),
            "stop_on_nonfinite": self.stop_on_nonfinite,
            "group_by": self.group_by,
            "rotation": self.rotation,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def _train_dir(self):
        return os.path.join(self.log_dir, "train")

    @property
    def event_file(self):
        """The event file this logger writes now, or `None`."""
        return None if self._writer is None else self._writer.path

    # -- set-up ---------------------------------------------------------------

    def _should_write(self):
        if keras.backend.backend() == "jax":
            import jax

            return jax.process_index() == 0
        strategy = getattr(self.model, "distribute_strategy", None)
        return should_write_summaries(strategy)

    def _open_writer(self):
        writer = EventWriter(self._train_dir, "WeightNormLogger")
        try:
            writer.open()
        except OSError as error:
            writer.close()
            raise OSError(
                "WeightNormLogger cannot write TensorBoard logs to "
                f"log_dir={self.log_dir!r}: {error}"
            ) from error
        return writer

    def _hyper_tags(self, optimizer):
        """The `optimizer/<name>` tags: the keys of the optimizer's
        `current_hyperparameters` (none without an optimizer)."""
        if optimizer is None:
            return []
        names = current_hyperparameters(optimizer, step=0)
        return [f"optimizer/{name}" for name in names]

    def _build(self):
        """Builds the statistics once per set of variables."""
        variables = list(self.model.trainable_variables)
        optimizer = unwrap_optimizer(getattr(self.model, "optimizer", None))
        hypers = self._hyper_tags(optimizer)
        key = (tuple(id(v) for v in variables), tuple(hypers))
        if self._statistics is not None and key == self._key:
            return
        self._key = key
        self._hypers = hypers
        paths, seen = [], set()
        for variable in variables:
            path, i = variable.path, 1
            while path in seen:
                path, i = f"{variable.path}_{i}", i + 1
            seen.add(path)
            paths.append(path)
        layers = {}
        for i, variable in enumerate(variables):
            layer = variable.path.rpartition("/")[0] or variable.path
            layers.setdefault(layer, []).append(i)
        if self.group_by == "layer":
            groups = list(layers.items())
        else:
            groups = [(p, [i]) for i, p in enumerate(paths)]
        # Lion with decoupled decay lambda keeps max|w| <= 1/lambda (Chen
        # et al. 2024): log lambda * max|w|.
        self._lion = isinstance(optimizer, keras.optimizers.Lion)
        self._decays = None
        self._statistics = Statistics(
            variables,
            paths,
            self.norms,
            self.histograms,
            hypers,
            groups,
            constraint=self._lion,
        )
        self._rotation = Rotation(variables) if self.rotation else None
        self._equilibrium = None
        self._check_tag_budget(len(layers))

    def _check_tag_budget(self, layers):
        """Warns once when a log writes more than `TAG_BUDGET` tags."""
        statistics = self._statistics
        per_name = len(statistics.columns) + int(self.histograms)
        tags = len(statistics.layout()[0]) + len(statistics.layout()[1])
        if self._rotation is not None:
            groups = set(statistics.group_ids[self._rotation.indices])
            tags += 2 * len(groups)
        if tags <= TAG_BUDGET or self._warned_tags:
            return
        self._warned_tags = True
        if self.group_by == "variable":
            fewer = tags - per_name * (len(statistics.names) - layers)
            advice = f'group_by="layer" writes {fewer}'
        else:
            advice = "fewer norms, or histograms=False, write fewer"
        warnings.warn(
            f"WeightNormLogger writes {tags} TensorBoard tags per log (more "
            f"than {TAG_BUDGET}; TensorBoard loads that many slowly): "
            f"{advice}.",
            UserWarning,
            stacklevel=2,
        )

    def _decay_scalars(self, optimizer, step):
        """`decay/timescale_steps` when the training has a weight decay.

        `tau = rules.optimizer_timescale(optimizer, model, step)`: the
        decoupled weight decay of the optimizer plus the coupled L2 of the
        model's regularizers (under SGD), at the logged step.
        """
        tau = rules.optimizer_timescale(optimizer, self.model, step)
        return {} if tau is None else {"decay/timescale_steps": tau}

    # -- callback hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        group = getattr(self.model, "steps_per_execution", 1) or 1
        if self.rotation and group > 1:
            raise ValueError(
                "WeightNormLogger(rotation=True) needs the weights one step "
                "before the logged step, and Keras calls batch callbacks "
                f"once per steps_per_execution={group} steps: compile with "
                "steps_per_execution=1 or pass rotation=False."
            )
        self._count_cautious_entries()
        self._writer = self._open_writer() if self._should_write() else None
        self._described = set()
        sync_jax_state(self.model)
        self._build()
        self._in_scope(self._statistics.reset)
        self._batches = 0
        self._captured_at = None
        if self._rotation is not None:
            self._rotation.drop()
        if self.hparams is not None and not self._hparams_written:
            if self._writer is not None:
                self._writer.write(0, hparams_summary(self.hparams))
            self._hparams_written = True

    def _count_cautious_entries(self):
        """Has a cautious optimizer count the entries it decays, for
        `decay/cautious_fraction`: through its setter, then the model's
        train function is rebuilt once (Keras' fit calls it by attribute
        each step), so that a step traced before counts too."""
        optimizer = unwrap_optimizer(getattr(self.model, "optimizer", None))
        if getattr(optimizer, "cautious_weight_decay", False) is not True:
            return
        if not optimizer.track_cautious_fraction:
            optimizer.track_cautious_fraction = True
            self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        if self._rotation is None:
            return
        if self.update_freq == "epoch":
            steps = (self.params or {}).get("steps")
            logged = steps is not None and batch == steps - 1
        else:
            logged = (self._batches + 1) % self._every == 0
        if logged:  # The copy `rotation/` compares the logged step with.
            sync_jax_state(self.model)
            optimizer = unwrap_optimizer(self.model.optimizer)
            self._captured_at = int(ops.convert_to_numpy(optimizer.iterations))
            self._in_scope(self._rotation.capture)

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self._every == 0:
            self._log(None)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._log(epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _in_scope(self, function, *args):
        strategy = getattr(self.model, "distribute_strategy", None)
        if strategy is None:
            return function(*args)
        with strategy.scope():  # Cross-replica context.
            return function(*args)

    def _optimizer_values(self, optimizer, step):
        """The `optimizer/*` values of `step`, Python floats."""
        if not self._hypers:
            return []
        values = current_hyperparameters(optimizer, step)
        return [float(values[tag.split("/", 1)[1]]) for tag in self._hypers]

    def _log(self, epoch):
        sync_jax_state(self.model)
        optimizer = unwrap_optimizer(self.model.optimizer)
        iterations = int(ops.convert_to_numpy(optimizer.iterations))
        step = iterations if epoch is None else epoch
        # The values the last step taken used (step `iterations - 1`).
        used = max(iterations - 1, 0)
        hypers = self._optimizer_values(optimizer, used)
        decays = self._lion_decays(optimizer, used) if self._lion else None
        scalars, histograms = self._in_scope(
            self._statistics.compute, hypers, decays
        )
        if optimizer is not None:
            scalars.update(self._decay_scalars(optimizer, used))
        if getattr(optimizer, "cautious_weight_decay", False) is True:
            # The optimizer counts it in its step (the logged one).
            scalars["decay/cautious_fraction"] = optimizer.cautious_fraction
        if self._rotation is not None:
            scalars.update(self._rotation_scalars(optimizer, iterations, used))
        if self._writer is not None:
            summary = log_summary(scalars, histograms, self._described)
            self._writer.write(step, summary)
        self._check_nonfinite(scalars)

    def _lion_decays(self, optimizer, step):
        """Each variable's decoupled decay `lambda` at `step` under Lion:
        the optimizer's `weight_decay` times keras_decay's `decay_mult`
        (0 where the variable is excluded from decay)."""
        if self._decays is None:  # The optimizer is built by now.
            variables = self._statistics.variables
            self._decays = multipliers(optimizer, variables)[0]
        decay = current_hyperparameters(optimizer, step)["weight_decay"]
        return float(decay) * self._decays

    def _rotation_scalars(self, optimizer, iterations, step):
        """`rotation/<name>` and `rotation_equilibrium/<name>` of the step
        that made `iterations` (left out, with a warning once, unless the
        copy was taken exactly one optimizer step before)."""
        rotation = self._rotation
        captured, self._captured_at = self._captured_at, None
        if not rotation.captured or iterations - captured != 1:
            rotation.drop()
            self._warn_rotation(iterations, captured)
            return {}
        sums, counts = self._in_scope(rotation.angles)
        if self._equilibrium is None:  # The optimizer is built by now.
            self._equilibrium = Equilibrium(
                optimizer, self._statistics.variables, rotation.indices
            )
        current = current_hyperparameters(optimizer, step)
        predicted = self._equilibrium.angles(current)
        statistics = self._statistics
        scalars = {}
        for g, name in enumerate(statistics.names):
            members = [
                i for i in rotation.indices if statistics.group_ids[i] == g
            ]
            if not members:
                continue
            units = np.sum(counts[members])
            with np.errstate(divide="ignore", invalid="ignore"):
                scalars[f"rotation/{name}"] = float(
                    np.sum(sums[members]) / units
                )
                if all(i in predicted for i in members):
                    total = sum(predicted[i] * counts[i] for i in members)
                    scalars[f"rotation_equilibrium/{name}"] = float(
                        total / units
                    )
        return scalars

    def _warn_rotation(self, iterations, captured):
        if self._warned_rotation:
            return
        self._warned_rotation = True
        if captured is None:
            why = (
                "no copy was taken before the logged step (update_freq="
                '"epoch" with an unknown number of steps per epoch: pass '
                "steps_per_epoch or an integer update_freq)"
            )
        else:
            why = (
                f"{iterations - captured} optimizer steps passed since the "
                "copy (gradient accumulation, or a step the optimizer "
                "skipped)"
            )
        warnings.warn(
            "WeightNormLogger: rotation/ left out of the log at optimizer "
            f"step {iterations}: it needs the weights one step before the "
            f"logged step, and {why}.",
            RuntimeWarning,
            stacklevel=2,
        )

    def _check_nonfinite(self, scalars):
        names = self._statistics.names
        bad = [n for n in names if scalars[f"nonfinite/{n}"] > 0]
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
