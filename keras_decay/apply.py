"""Put weight decay on every weight of an already built model, Caffe-style."""

import fnmatch
import warnings

import keras

from keras_decay import _keras_compat
from keras_decay._validation import _fail
from keras_decay._validation import check_bool
from keras_decay._validation import check_choice
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_optional
from keras_decay._validation import check_positive_int
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

__all__ = ["apply_weight_decay", "DecayReport", "DecayRow"]

_KINDS = {"l2": WeightDecay, "l1": L1Decay}

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
        rate: The effective rate, `rate * multiplier`.
        note: Why a variable is not decayed (`"ndim <= 1"`, `"excluded"`,
            `"decay_mult 0"`), or `"not saved"` when the layer's config has
            no regularizer argument for it (the decay works in this process
            but is not written by `model.save`); empty otherwise.
    """

    __slots__ = ("path", "shape", "multiplier", "rate", "note")

    def __init__(self, path, shape, multiplier, rate, note=""):
        self.path = path
        self.shape = tuple(shape)
        self.multiplier = multiplier
        self.rate = rate
        self.note = note

    @property
    def decayed(self):
        return self.rate > 0.0

    def __repr__(self):
        return (
            f"DecayRow(path={self.path!r}, shape={self.shape}, "
            f"multiplier={self.multiplier}, rate={self.rate}, "
            f"note={self.note!r})"
        )


class DecayReport:
    """What `apply_weight_decay` did: one `DecayRow` per trainable variable.

    Printing it gives a table; iterating gives the rows; `decayed` lists the
    rows that got a regularizer.
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

    def __str__(self):
        header = ("variable", "shape", "mult", f"{self.kind} rate", "note")
        body = [
            (
                row.path,
                str(row.shape),
                f"{row.multiplier:g}",
                f"{row.rate:g}",
                row.note,
            )
            for row in self.rows
        ]
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

    Selection rules, in order:
    1. variables with `ndim <= 1` (biases, normalization scales and offsets)
       are never decayed;
    2. variables whose `path` matches one of the `exclude` fnmatch patterns
       are not decayed;
    3. the multiplier is the value of the first `decay_mult` pattern (in the
       dict's order) that matches the name of the layer owning the variable,
       else 1; a multiplier of 0 means not decayed.

    The regularizer is also set as the owning layer's `<x>_regularizer`
    argument (e.g. `Dense.kernel_regularizer`), which is what Keras writes to
    a `.keras` file: a model loaded with `keras.models.load_model` has the
    same `model.losses`. A variable of a layer that has no such argument is
    still decayed, with a warning and the note `"not saved"` in the report.
    The model's compiled train and test functions are reset, so the penalty
    takes effect on the next `fit`/`train_on_batch`/`evaluate` even if the
    model was trained before.

    Args:
        model: A built `keras.Model` (Sequential, functional or subclassed).
        rate: Float >= 0. The weight-decay coefficient (gradient convention:
            PyTorch's / Caffe's `weight_decay`).
        kind: `"l2"` or `"l1"`. Defaults to `"l2"`.
        num_examples: Optional int >= 1, the training-set size `n` of
            Nielsen's convention. Defaults to `None` (no division).
        decay_mult: Optional dict `{layer-name pattern: multiplier}`
            (fnmatch patterns, multipliers >= 0), Caffe's `decay_mult`.
        exclude: Optional fnmatch pattern or list of patterns on
            `variable.path` for variables not to decay.
        overwrite: Bool. Replace regularizers the variables already have;
            if `False` (default), such a variable is an error.

    Returns:
        A `DecayReport`: print it for a table of variable path, shape,
        multiplier and effective rate.

    Example:

    >>> report = apply_weight_decay(
    ...     model, 5e-4, decay_mult={"conv*": 1.0, "classifier": 0.5}
    ... )
    >>> print(report)
    """
    _check_model(model)
    rate = check_non_negative_float(rate, "rate")
    kind = check_choice(kind, "kind", tuple(_KINDS))
    num_examples = check_optional(
        check_positive_int, num_examples, "num_examples"
    )
    decay_mult = _check_decay_mult(decay_mult)
    exclude = _check_exclude(exclude)
    overwrite = check_bool(overwrite, "overwrite")

    plan = []
    for layer, variable, rebuilt in _owned_trainable_variables(model):
        multiplier, note = _multiplier(layer, variable, decay_mult, exclude)
        effective = rate * multiplier
        plan.append((layer, variable, rebuilt, multiplier, effective, note))

    clashes = [
        variable.path
        for _, variable, _, _, effective, _ in plan
        if effective > 0.0 and variable.regularizer is not None
    ]
    if clashes and not overwrite:
        raise ValueError(
            "These variables already have a regularizer: "
            f"{', '.join(clashes)}. Pass `overwrite=True` to replace them. "
            f"Received: overwrite={overwrite}"
        )

    rows, unsaved = [], []
    for layer, variable, rebuilt, multiplier, effective, note in plan:
        if effective > 0.0:
            regularizer = _KINDS[kind](effective, num_examples=num_examples)
            variable.regularizer = regularizer
            saved = _set_layer_argument(layer, variable, regularizer)
            if not (saved and rebuilt):
                note = "not saved"
                unsaved.append(variable.path)
        rows.append(
            DecayRow(variable.path, variable.shape, multiplier, effective, note)
        )
    if unsaved:
        warnings.warn(
            "Weight decay is applied to these variables, but their layers "
            "have no regularizer argument, so `model.save` will not keep it: "
            f"{', '.join(unsaved)}. Call `apply_weight_decay` again after "
            "loading the model.",
            stacklevel=2,
        )
    _reset_compiled_functions(model)
    return DecayReport(rows, kind)


def _check_model(model):
    if not isinstance(model, keras.Model):
        _fail(TypeError, "model", "a keras.Model", model)
    if not model.built:
        _fail(
            ValueError,
            "model",
            "a built model (call it on data or build it first)",
            model,
        )


def _check_decay_mult(decay_mult):
    if decay_mult is None:
        return {}
    if not isinstance(decay_mult, dict):
        _fail(
            TypeError,
            "decay_mult",
            "a dict {layer-name pattern: multiplier}",
            decay_mult,
        )
    checked = {}
    for pattern, multiplier in decay_mult.items():
        if not isinstance(pattern, str):
            _fail(
                TypeError,
                "decay_mult",
                "string keys (layer-name patterns)",
                decay_mult,
            )
        checked[pattern] = check_non_negative_float(
            multiplier, f"decay_mult[{pattern!r}]"
        )
    return checked


def _check_exclude(exclude):
    if exclude is None:
        return ()
    if isinstance(exclude, str):
        return (exclude,)
    expected = "a pattern string or a list of pattern strings"
    if not isinstance(exclude, (list, tuple, set, frozenset)):
        _fail(TypeError, "exclude", expected, exclude)
    if not all(isinstance(pattern, str) for pattern in exclude):
        _fail(TypeError, "exclude", expected, exclude)
    return tuple(exclude)


def _owned_trainable_variables(model):
    """Yields `(owning layer, variable, rebuilt)` for each trainable variable.

    The owner is the innermost layer that holds the variable. `rebuilt` says
    whether `load_model` re-creates that layer from its own config, which is
    true when every container above it is a Sequential or functional model
    (a subclassed model or layer re-creates its sub-layers in its own
    `__init__`, so their config, and any regularizer set on it, is not used).
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
    return isinstance(layer, keras.Sequential) or (
        _keras_compat.is_functional(layer)
    )


def _multiplier(layer, variable, decay_mult, exclude):
    """Returns `(multiplier, note)` for one variable."""
    if len(variable.shape) <= 1:
        return 0.0, "ndim <= 1"
    if any(fnmatch.fnmatchcase(variable.path, p) for p in exclude):
        return 0.0, "excluded"
    for pattern, multiplier in decay_mult.items():
        if fnmatch.fnmatchcase(layer.name, pattern):
            return multiplier, "" if multiplier > 0.0 else "decay_mult 0"
    return 1.0, ""


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
