"""Which variables get weight decay, and how much: the rules, written once.

`apply_weight_decay` (coupled L2 through regularizers) and the
`keras_decay.optimizers` classes (decoupled decay inside the update) select
variables with the same rules, implemented here:

1. a variable with `ndim <= 1` (a bias, a normalization scale or offset) is
   not decayed, whatever `decay_mult` says (the optimizers can turn this rule
   off with `decay_exclude=None`);
2. a variable whose `variable.path` matches one of the `exclude` fnmatch
   patterns is not decayed;
3. its decay multiplier is the value of the first `decay_mult` pattern (in
   the dict's order) that matches a layer name on its path, else 1;
4. its learning-rate multiplier is the value of the first `lr_mult` pattern
   that matches a layer name on its path, else 1 (optimizers only).

"A layer name on its path" is any component of `variable.path` but the last:
for `"backbone/conv1/kernel"` the names are `"backbone"` and `"conv1"`, so a
pattern names the layer that owns the variable or any layer or model that
contains it (a nested backbone, an RNN layer around its cell). Patterns are
matched with `fnmatch.fnmatchcase` (case-sensitive, `*`, `?`, `[seq]`).

A pattern that matches no variable is an error: a typo must not silently
decay (or freeze) nothing.
"""

import fnmatch
import warnings

from keras_decay._validation import check_non_negative_float
from keras_decay._validation import fail

NDIM_NOTE = "ndim <= 1"
EXCLUDED_NOTE = "excluded"

_PATTERNS = "a pattern string or a list of pattern strings"


class Choice:
    """What the rules decided for one variable.

    Attributes:
        path: `variable.path`.
        shape: The variable's shape, a tuple.
        decay_multiplier: The decay multiplier (0 when not decayed).
        lr_multiplier: The learning-rate multiplier (1 unless `lr_mult`).
        notes: Tuple of short reasons (`"ndim <= 1"`, `"excluded"`,
            `"decay_mult 0"`, `"lr_mult 0"`).
    """

    __slots__ = ("path", "shape", "decay_multiplier", "lr_multiplier", "notes")

    def __init__(self, path, shape, decay_multiplier, lr_multiplier, notes):
        self.path = path
        self.shape = tuple(shape)
        self.decay_multiplier = decay_multiplier
        self.lr_multiplier = lr_multiplier
        self.notes = tuple(notes)


def check_patterns(value, name):
    """Returns `value` (`None`, a string or a list of strings) as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (set, frozenset)) and all(
        isinstance(pattern, str) for pattern in value
    ):
        return tuple(sorted(value))
    if not isinstance(value, (list, tuple)):
        fail(TypeError, name, _PATTERNS, value)
    if not all(isinstance(pattern, str) for pattern in value):
        fail(TypeError, name, _PATTERNS, value)
    return tuple(value)


def check_multipliers(value, name):
    """Returns `{pattern: multiplier}` with float multipliers >= 0."""
    if value is None:
        return {}
    expected = "a dict {layer-name pattern: multiplier}"
    if not isinstance(value, dict):
        fail(TypeError, name, expected, value)
    checked = {}
    for pattern, multiplier in value.items():
        if not isinstance(pattern, str):
            fail(TypeError, name, "string keys (layer-name patterns)", value)
        checked[pattern] = check_non_negative_float(
            multiplier, f"{name}[{pattern!r}]"
        )
    return checked


def layer_names(path):
    """The layer names on a variable path: every component but the last."""
    return path.split("/")[:-1]


def path_matches(path, pattern):
    """Whether an `exclude` pattern matches the whole variable path."""
    return fnmatch.fnmatchcase(path, pattern)


def names_match(path, pattern):
    """Whether a multiplier pattern matches a layer name on `path`."""
    return any(fnmatch.fnmatchcase(n, pattern) for n in layer_names(path))


def _first(multipliers, path, used):
    """The first matching `(pattern, multiplier)`, else `(None, 1.0)`.

    Every matching pattern is added to `used`, also one that an earlier
    pattern shadows for this variable.
    """
    matching = [p for p in multipliers if names_match(path, p)]
    used.update(matching)
    if not matching:
        return None, 1.0
    return matching[0], multipliers[matching[0]]


def select(
    variables,
    *,
    ndim_rule=True,
    exclude=(),
    decay_mult=None,
    lr_mult=None,
    exclude_name="exclude",
    decay_mult_name="decay_mult",
    lr_mult_name="lr_mult",
    extra_excluded=None,
    empty_ok=False,
    strict=True,
):
    """Applies the rules to `variables`; returns one `Choice` per variable.

    Args:
        variables: Variables (anything with `.path` and `.shape`).
        ndim_rule: Whether variables with `ndim <= 1` are not decayed.
        exclude: Tuple of fnmatch patterns on `variable.path`.
        decay_mult, lr_mult: Dicts `{layer-name pattern: multiplier}`
            (already checked with `check_multipliers`).
        exclude_name, decay_mult_name, lr_mult_name: The argument names the
            user knows them by, for the error message.
        extra_excluded: Optional predicate `variable -> bool` for variables
            excluded otherwise (the optimizers' `exclude_from_weight_decay`).
        empty_ok: Whether no variable at all is fine (an optimizer of a
            model without trainable weights); else a `ValueError`.
        strict: Whether a pattern that matches no variable is a
            `ValueError`; else a `RuntimeWarning` (an optimizer loaded from
            a file: Keras may rename the paths, keras-team/keras#23251).

    Raises:
        ValueError: A pattern matches no variable, or there is no variable.
    """
    decay_mult = decay_mult or {}
    lr_mult = lr_mult or {}
    variables = list(variables)
    if not variables:
        if empty_ok:
            return []
        raise ValueError(
            "There are no trainable variables to select weight decay for."
        )
    used_exclude, used_decay, used_lr = set(), set(), set()
    choices = []
    for variable in variables:
        path = variable_path(variable)
        notes = []
        excluded = [p for p in exclude if path_matches(path, p)]
        used_exclude.update(excluded)
        pattern, decay = _first(decay_mult, path, used_decay)
        if pattern is not None and decay == 0.0:
            notes.append("decay_mult 0")
        if ndim_rule and len(variable.shape) <= 1:
            decay, notes = 0.0, [NDIM_NOTE]
        elif excluded or (extra_excluded and extra_excluded(variable)):
            decay, notes = 0.0, [EXCLUDED_NOTE]
        _, lr = _first(lr_mult, path, used_lr)
        if lr == 0.0:
            notes.append("lr_mult 0")
        choices.append(Choice(path, variable.shape, decay, lr, notes))
    for patterns, used, name, what in (
        (exclude, used_exclude, exclude_name, "path"),
        (decay_mult, used_decay, decay_mult_name, "name"),
        (lr_mult, used_lr, lr_mult_name, "name"),
    ):
        try:
            _check_all_used(patterns, used, name, variables, what)
        except ValueError as error:
            if strict:
                raise
            warnings.warn(str(error), RuntimeWarning, stacklevel=3)
    return choices


def variable_path(variable):
    """`variable.path`; the name of a backend variable without one (a
    `tf.Variable` passed to `apply_gradients` in a custom loop)."""
    path = getattr(variable, "path", None)
    return path if path is not None else variable.name


def _check_all_used(patterns, used, name, variables, what):
    unused = [pattern for pattern in patterns if pattern not in used]
    if not unused:
        return
    target = "variable path" if what == "path" else "layer name on a path"
    example = variable_path(variables[0])
    fail(
        ValueError,
        name,
        f"patterns that each match a {target} of the trainable variables "
        f"(such as {example!r}); {', '.join(repr(p) for p in unused)} "
        "matches none",
        patterns if isinstance(patterns, dict) else list(patterns),
    )
