"""Put weight decay on every weight of an already built model, Caffe-style."""

import math
import warnings

import keras

from keras_decay import _keras_compat
from keras_decay._selection import check_multipliers
from keras_decay._selection import check_patterns
from keras_decay._selection import select
from keras_decay._validation import check_bool
from keras_decay._validation import check_choice
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_optional
from keras_decay._validation import check_positive_int
from keras_decay._validation import fail
from keras_decay.regularizers import ElasticDecay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

__all__ = ["apply_weight_decay", "DecayReport", "DecayRow"]

_KINDS = {"l2": WeightDecay, "l1": L1Decay}

# Layers whose deserialization re-creates their sub-layers from the
# sub-layers' own config (an RNN layer its cell: LSTM and GRU read the
# cell's `*_regularizer` attributes into their config).
_REBUILDS_CHILDREN = (
    keras.Sequential,
    keras.layers.RNN,
    keras.layers.Bidirectional,
    keras.layers.Wrapper,
)

# Config key `<name>_regularizer` -> the attribute that holds the variable,
# where the two names differ (Keras' DepthwiseConv2D, SeparableConv2D, RNNs).
_ATTRIBUTE_FOR_KEY = {
    "depthwise_regularizer": ("depthwise_kernel",),
    "pointwise_regularizer": ("pointwise_kernel",),
    "recurrent_regularizer": ("recurrent_kernel",),
}


class DecayRow:
    """One trainable variable in a `DecayReport`.

    Attributes:
        path: The variable's path (`variable.path`).
        shape: The variable's shape, a tuple.
        multiplier: The Caffe `decay_mult` applied (0 when not decayed).
        rate: The effective rate, `rate * multiplier` (for an optimizer's
            report: `weight_decay * multiplier`); for a regularizer the
            variable kept, that regularizer's own rate in the same
            convention (`_kept_rate`), so the report describes
            `model.losses`.
        note: Why a variable is not decayed (`"ndim <= 1"`, `"excluded"`,
            `"decay_mult 0"`), `"lr_mult 0"` for a frozen variable,
            `"kept <Regularizer>"` / `"removed <Regularizer>"` for a
            regularizer the variable had before `apply_weight_decay`, or
            `"not saved"` when the layer's config has no regularizer
            argument for it (the change works in this process but is not
            written by `model.save`); several are joined by `"; "`; empty
            otherwise.
        lr_multiplier: The learning-rate multiplier (`lr_mult`) of an
            optimizer's report; `None` in `apply_weight_decay`'s report.
    """

    __slots__ = ("path", "shape", "multiplier", "rate", "note", "lr_multiplier")

    def __init__(
        self, path, shape, multiplier, rate, note="", lr_multiplier=None
    ):
        self.path = path
        self.shape = tuple(shape)
        self.multiplier = multiplier
        self.rate = rate
        self.note = note
        self.lr_multiplier = lr_multiplier

    @property
    def decayed(self):
        """Whether the variable is decayed (a rate that is not 0; NaN for
        a kept regularizer of a kind this report cannot measure)."""
        return self.rate != 0.0

    def __repr__(self):
        lr = (
            ""
            if self.lr_multiplier is None
            else f", lr_multiplier={self.lr_multiplier}"
        )
        return (
            f"DecayRow(path={self.path!r}, shape={self.shape}, "
            f"multiplier={self.multiplier}, rate={self.rate}, "
            f"note={self.note!r}{lr})"
        )


class DecayReport:
    """Which variables are decayed, how much: one `DecayRow` per variable.

    Returned by `apply_weight_decay` (`kind` `"l2"` or `"l1"`: coupled
    decay through regularizers) and by the `decay_report()` of the
    `keras_decay.optimizers` classes (`kind="decoupled"`, with a
    learning-rate multiplier column). Printing it gives a table; iterating
    gives the rows; `report[path]` is one row; `decayed` lists the rows with
    a rate > 0.
    """

    def __init__(self, rows, kind):
        self.rows = list(rows)
        self.kind = kind

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, path):
        for row in self.rows:
            if row.path == path:
                return row
        raise KeyError(path)

    @property
    def decayed(self):
        return [row for row in self.rows if row.decayed]

    def _columns(self):
        with_lr = any(row.lr_multiplier is not None for row in self.rows)
        rate = "weight decay" if self.kind == "decoupled" else "rate"
        mult = "decay mult" if with_lr else "mult"
        header = ["variable", "shape", mult, f"{self.kind} {rate}"]
        header += ["lr mult"] if with_lr else []
        body = []
        for row in self.rows:
            line = [
                row.path,
                str(row.shape),
                f"{row.multiplier:g}",
                f"{row.rate:g}",
            ]
            if with_lr:
                lr = row.lr_multiplier
                line.append("" if lr is None else f"{lr:g}")
            body.append(line + [row.note])
        return header + ["note"], body

    def __str__(self):
        header, body = self._columns()
        widths = [
            max(len(line[i]) for line in [header] + body)
            for i in range(len(header))
        ]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths))
            for line in [header] + body
        ]
        lines.insert(1, "  ".join("-" * width for width in widths))
        summary = (
            f"{len(self.decayed)} of {len(self.rows)} trainable variables "
            "decayed"
        )
        kept = sum(
            any(n.startswith("kept ") for n in row.note.split("; "))
            for row in self.rows
        )
        if kept:
            summary += (
                f"; {kept} keep{'s' if kept == 1 else ''} an earlier "
                "regularizer (overwrite=False)"
            )
        frozen = sum(row.lr_multiplier == 0.0 for row in self.rows)
        if frozen:
            summary += f"; {frozen} frozen (lr_mult 0)"
        return "\n".join(line.rstrip() for line in lines + [summary])

    def __repr__(self):
        return f"<DecayReport kind={self.kind!r} rows={len(self.rows)}>"


def apply_weight_decay(
    model,
    rate,
    *,
    kind="l2",
    num_examples=None,
    decay_mult=None,
    exclude=None,
    overwrite=False,
):
    """Puts weight decay on the trainable variables of a built model.

    The Caffe way: one solver-wide `rate`, times a per-layer `decay_mult`.
    Each selected variable gets `WeightDecay(rate * mult, num_examples)`
    (`kind="l2"`, penalty `rate * mult / (2n) * sum(w**2)`) or
    `L1Decay(rate * mult, num_examples)` (`kind="l1"`).

    Selection rules (shared with the `keras_decay.optimizers` classes), in
    order:
    1. variables with `ndim <= 1` (biases, normalization scales and offsets)
       are never decayed, whatever `decay_mult` says;
    2. variables whose `path` matches one of the `exclude` fnmatch patterns
       are not decayed;
    3. the multiplier is the value of the first `decay_mult` pattern (in the
       dict's order) that matches a layer name on the variable's path (the
       layer owning it, or a model or RNN layer containing it: `"backbone"`
       matches `"backbone/conv1/kernel"`), else 1; a multiplier of 0 means
       not decayed.
    A pattern of `decay_mult` or `exclude` that matches no trainable
    variable is an error (a typo would silently decay everything).

    The regularizer is also set as the owning layer's `<x>_regularizer`
    argument (e.g. `Dense.kernel_regularizer`, `LSTMCell`'s
    `recurrent_regularizer`), which is what Keras writes to a `.keras`
    file: a model loaded with `keras.models.load_model` has the same
    `model.losses`. A variable of a layer that has no such argument, or
    whose layer is re-created by a subclassed model's own `__init__` on
    loading, is still decayed, with a warning and the note `"not saved"` in
    the report. The model's compiled train and test functions are reset, so
    the penalty takes effect on the next `fit`/`train_on_batch`/`evaluate`
    even if the model was trained before.

    A variable that already has a regularizer: with `overwrite=True` the
    call decides every trainable variable, and one it does not decay loses
    its regularizer (note `"removed <Regularizer>"`), so
    `apply_weight_decay(model, 0.0, overwrite=True)` removes all of them.
    With `overwrite=False` (default) such a variable is an error if the
    call would decay it, and keeps its regularizer otherwise (note
    `"kept <Regularizer>"`, counted in the summary line). Either way the
    report says what `model.losses` holds.

    Args:
        model: A built `keras.Model` (Sequential, functional or subclassed)
            with trainable variables.
        rate: Float >= 0. The weight-decay coefficient (gradient convention:
            PyTorch's / Caffe's `weight_decay`).
        kind: `"l2"` or `"l1"`. Defaults to `"l2"`.
        num_examples: Optional int >= 1, the training-set size `n` of
            Nielsen's convention. Defaults to `None` (no division).
        decay_mult: Optional dict `{layer-name pattern: multiplier}`
            (fnmatch patterns, multipliers >= 0), Caffe's `decay_mult`.
        exclude: Optional fnmatch pattern or list of patterns on
            `variable.path` for variables not to decay.
        overwrite: Bool. Replace (or remove) regularizers the variables
            already have; if `False` (default), decaying such a variable is
            an error and the others keep theirs.

    Returns:
        A `DecayReport`: print it for a table of variable path, shape,
        multiplier, effective rate and note.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(4, 3, name="conv1"),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(10, name="classifier"),
    ... ])
    >>> report = apply_weight_decay(
    ...     model, 5e-4, decay_mult={"conv*": 1.0, "classifier": 0.5}
    ... )
    >>> print(report)
    variable                      shape         mult  l2 rate  note
    ----------------------------  ------------  ----  -------  ---------
    sequential/conv1/kernel       (3, 3, 1, 4)  1     0.0005
    sequential/conv1/bias         (4,)          0     0        ndim <= 1
    sequential/classifier/kernel  (144, 10)     0.5   0.00025
    sequential/classifier/bias    (10,)         0     0        ndim <= 1
    2 of 4 trainable variables decayed
    """
    _check_model(model)
    rate = check_non_negative_float(rate, "rate")
    kind = check_choice(kind, "kind", tuple(_KINDS))
    num_examples = check_optional(
        check_positive_int, num_examples, "num_examples"
    )
    decay_mult = check_multipliers(decay_mult, "decay_mult")
    exclude = check_patterns(exclude, "exclude")
    overwrite = check_bool(overwrite, "overwrite")

    owned = list(_owned_trainable_variables(model))
    if not owned:
        fail(ValueError, "model", "a model with trainable variables", model)
    plan = _decide(owned, rate, kind, num_examples, decay_mult, exclude)
    clashes = [
        d.variable.path
        for d in plan
        if d.decays and d.earlier is not None and not overwrite
    ]
    if clashes:
        raise ValueError(
            "These variables already have a regularizer: "
            f"{', '.join(clashes)}. Pass `overwrite=True` to replace them. "
            f"Received: overwrite={overwrite}"
        )
    rows, unsaved = [], []
    for decision in plan:
        row = _carry_out(decision, kind, overwrite)
        if "not saved" in row.note.split("; "):
            unsaved.append(row.path)
        rows.append(row)
    if unsaved:
        warnings.warn(
            "Weight decay is changed on these variables, but their layers "
            "have no regularizer argument that `model.save` writes, so a "
            f"loaded model will not keep it: {', '.join(unsaved)}. Call "
            "`apply_weight_decay` again after loading the model.",
            stacklevel=2,
        )
    _reset_compiled_functions(model)
    return DecayReport(rows, kind)


class _Decision:
    """What `apply_weight_decay` decided for one variable (nothing done)."""

    __slots__ = ("layer", "variable", "rebuilt", "choice", "earlier", "new")

    def __init__(self, layer, variable, rebuilt, choice, new):
        self.layer, self.variable, self.rebuilt = layer, variable, rebuilt
        self.choice = choice
        self.earlier = variable.regularizer
        self.new = new  # the regularizer to set, or None: not decayed

    @property
    def decays(self):
        return self.new is not None


def _decide(owned, rate, kind, num_examples, decay_mult, exclude):
    """The pure part: one `_Decision` per `(layer, variable, rebuilt)`."""
    choices = select(
        [variable for _, variable, _ in owned],
        exclude=exclude,
        decay_mult=decay_mult,
    )
    decisions = []
    for (layer, variable, rebuilt), choice in zip(owned, choices):
        effective = rate * choice.decay_multiplier
        new = None
        if effective > 0.0:
            new = _KINDS[kind](effective, num_examples=num_examples)
        decisions.append(_Decision(layer, variable, rebuilt, choice, new))
    return decisions


def _carry_out(decision, kind, overwrite):
    """Sets the decided regularizer (the mutation); returns the row."""
    notes = list(decision.choice.notes)
    earlier, regularizer = decision.earlier, decision.new
    effective = decision.new.rate if decision.decays else 0.0
    if regularizer is None and earlier is not None:
        if overwrite:
            notes.append(f"removed {type(earlier).__name__}")
        else:
            notes.append(f"kept {type(earlier).__name__}")
            regularizer = earlier
            effective = _kept_rate(earlier, kind)
    variable = decision.variable
    if regularizer is not earlier:
        variable.regularizer = regularizer
        saved = _set_layer_argument(decision.layer, variable, regularizer)
        if not (saved and decision.rebuilt):
            notes.append("not saved")
    return DecayRow(
        variable.path,
        variable.shape,
        decision.choice.decay_multiplier,
        effective,
        "; ".join(notes),
    )


def _kept_rate(regularizer, kind):
    """The rate of a regularizer a variable kept, in this report's terms.

    The gradient convention of `rate` (PyTorch's `weight_decay`): the L2
    coefficient of `WeightDecay` and `ElasticDecay` (`rate`, `l2`),
    `2 * l2` of Keras' `L2` and `L1L2`; for `kind="l1"` the L1 coefficient
    (`L1Decay.rate`, `ElasticDecay.l1`, Keras' `l1`). NaN for a regularizer
    of another class (it adds a penalty this report cannot measure).
    """
    l1, l2 = 0.0, 0.0
    if isinstance(regularizer, WeightDecay):
        l2 = regularizer.rate
    elif isinstance(regularizer, L1Decay):
        l1 = regularizer.rate
    elif isinstance(regularizer, ElasticDecay):
        l1, l2 = regularizer.l1, regularizer.l2
    elif isinstance(
        regularizer, (keras.regularizers.L2, keras.regularizers.L1L2)
    ):
        l2 = 2.0 * float(regularizer.l2)
        l1 = float(getattr(regularizer, "l1", 0.0))
    elif isinstance(regularizer, keras.regularizers.L1):
        l1 = float(regularizer.l1)
    else:
        return math.nan
    return l1 if kind == "l1" else l2


def _check_model(model):
    if not isinstance(model, keras.Model):
        fail(TypeError, "model", "a keras.Model", model)
    if not model.built:
        fail(
            ValueError,
            "model",
            "a built model (call it on data or build it first)",
            model,
        )


def _owned_trainable_variables(model):
    """Yields `(owning layer, variable, rebuilt)` for each trainable variable.

    The owner is the innermost layer that holds the variable. `rebuilt` says
    whether `load_model` re-creates that layer from its own config, which is
    true when every container above it re-creates its children from their
    config: a Sequential or functional model, an RNN layer (its cell), a
    wrapper such as `Bidirectional` or `TimeDistributed` (a subclassed model
    or layer re-creates its sub-layers in its own `__init__`, so their
    config, and any regularizer set on it, is not used).
    """
    seen = set()

    def walk(layer, rebuilt):
        children = _keras_compat.child_layers(layer)
        children_rebuilt = rebuilt and _rebuilds_children(layer)
        for child in children:
            yield from walk(child, children_rebuilt)
        for variable in layer.trainable_weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                yield layer, variable, rebuilt

    yield from walk(model, True)


def _rebuilds_children(layer):
    """Whether deserializing `layer` re-creates its children from config."""
    return isinstance(layer, _REBUILDS_CHILDREN) or (
        _keras_compat.is_functional(layer)
    )


def _set_layer_argument(layer, variable, regularizer):
    """Sets the layer's `<x>_regularizer` argument that builds `variable`.

    Returns whether the layer has such an argument (i.e. whether the
    regularizer is written to the layer's config, hence saved).
    """
    try:
        config_keys = layer.get_config().keys()
    except NotImplementedError:
        return False
    for key in config_keys:
        if not key.endswith("_regularizer") or key == "activity_regularizer":
            continue
        base = key[: -len("_regularizer")]
        attributes = _ATTRIBUTE_FOR_KEY.get(key, (base,))
        if any(getattr(layer, a, None) is variable for a in attributes):
            setattr(layer, key, regularizer)
            return True
    return False


def _reset_compiled_functions(model):
    """Drops the traced train/test functions so the next call re-traces.

    A traced function holds the regularization losses it saw when traced.
    """
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
