"""Per-variable groups on one optimizer: which variables decay, how much.

`DecayGroups` is a mixin for the `keras_decay.optimizers` classes (first in
their bases). It adds three keyword arguments and resolves them, once, when
the optimizer is built, with the selection rules shared with
`apply_weight_decay` (`keras_decay/_selection.py`):

- `decay_exclude="auto"`: no decoupled weight decay for variables with
  `ndim <= 1` (biases, normalization scales and offsets); a list of
  fnmatch patterns on `variable.path` excludes those too; `None` decays
  every variable (Keras' behaviour);
- `decay_mult={layer-name pattern: float}`: the decay of the matching
  variables is `weight_decay * mult` (Caffe's `decay_mult`; 0 excludes);
- `lr_mult={layer-name pattern: float}`: the whole update of the matching
  variables, decoupled decay included, uses `learning_rate * mult`
  (Caffe's `lr_mult`, PyTorch's per-group `lr`; 0 freezes them).

The result is read by the two per-variable hooks of
`ScheduledHyperparameters` (`_decay_multiplier`, `_lr_multiplier`), so the
update of a variable is

    lr_v = lr_t * lr_mult_v
    w <- w - lr_v * (wd_t * decay_mult_v) * w
    (then the optimizer's own step with learning rate lr_v)

Saving: `get_config` holds the three arguments, the names given to
`exclude_from_weight_decay(var_names=...)` (`"excluded_names"`) and, once
built, the resolved multipliers of every variable in build order
(`"decay_groups"`: `[shape, decay_mult, lr_mult, note]` each). `load_model`
builds the optimizer of the loaded model with the same variables in the
same order, and uses the saved multipliers rather than resolving the
patterns again: Keras 3.15 does not keep `variable.path` across
`load_model` (a Sequential's or nested model's name is dropped from its
layers' paths, keras-team/keras#23251), so patterns on paths could match
other variables after loading.
"""

import re

from keras_decay import _keras_compat
from keras_decay._selection import check_multipliers
from keras_decay._selection import check_patterns
from keras_decay._selection import select
from keras_decay._selection import variable_path
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import fail
from keras_decay.apply import DecayReport
from keras_decay.apply import DecayRow

__all__ = ["DecayGroups"]

_EXPECTED_EXCLUDE = "'auto', None or a list of fnmatch patterns"


def _check_decay_exclude(value):
    """Returns `(ndim_rule, patterns)` for `decay_exclude`."""
    if value is None:
        return False, ()
    if isinstance(value, str):
        if value != "auto":
            fail(ValueError, "decay_exclude", _EXPECTED_EXCLUDE, value)
        return True, ()
    if not isinstance(value, (list, tuple)):
        fail(TypeError, "decay_exclude", _EXPECTED_EXCLUDE, value)
    return True, check_patterns(list(value), "decay_exclude")


def _check_names(value, name):
    """Keras' `var_names`: a list of strings (regular expressions)."""
    if value is None:
        return []
    expected = "a list of strings"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        fail(TypeError, name, expected, value)
    for item in value:
        if not isinstance(item, str):
            fail(TypeError, name, expected, value)
        try:
            re.compile(item)
        except re.error:
            fail(ValueError, name, "valid regular expressions", value)
    return list(value)


class _Groups:
    """The per-variable state of a `DecayGroups` optimizer."""

    def __init__(self, ndim_rule, patterns, decay_mult, lr_mult):
        self.ndim_rule = ndim_rule
        self.patterns = patterns
        self.decay_mult = decay_mult
        self.lr_mult = lr_mult
        self.names = []  # exclude_from_weight_decay(var_names=...)
        self.excluded_ids = set()  # exclude_from_weight_decay(var_list=...)
        self.saved = None  # [[shape, decay, lr, note]] from a saved config
        self.loaded = False  # made by `from_config`
        self.choices = None  # resolved: [(decay, lr, notes)], build order

    def excluded(self, variable):
        if id(variable) in self.excluded_ids:
            return True
        return any(re.search(name, variable.name) for name in self.names)


class DecayGroups:
    """Mixin: `decay_exclude`, `decay_mult`, `lr_mult` and `decay_report`.

    Put it first in the bases of a `ScheduledHyperparameters` optimizer.
    See the module docstring for the rules.
    """

    def __init__(
        self,
        *args,
        decay_exclude="auto",
        decay_mult=None,
        lr_mult=None,
        **kwargs,
    ):
        ndim_rule, patterns = _check_decay_exclude(decay_exclude)
        groups = _Groups(
            ndim_rule,
            patterns,
            check_multipliers(decay_mult, "decay_mult"),
            check_multipliers(lr_mult, "lr_mult"),
        )
        super().__init__(*args, **kwargs)
        vars(self)["_decay_groups"] = groups

    def _groups(self):
        return vars(self)["_decay_groups"]

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Excludes variables from weight decay, adding to earlier calls.

        Unlike Keras' method, which replaces what an earlier call excluded,
        each call adds: `exclude_from_weight_decay(var_names=["bias"])`
        then `(var_names=["gamma"])` excludes both. Call it before the
        optimizer is built.

        Args:
            var_list: A list of variables to exclude.
            var_names: A list of strings; a variable whose `name` contains
                one of them (`re.search`, as in Keras) is excluded. Unlike
                the patterns of `decay_exclude`, a name that matches
                nothing is not an error (Keras' behaviour).
        """
        groups = self._groups()
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configured before "
                "the optimizer is built."
            )
        names = _check_names(var_names, "var_names")
        if var_list is not None:
            if not isinstance(var_list, (list, tuple)):
                fail(TypeError, "var_list", "a list of variables", var_list)
            groups.excluded_ids.update(id(v) for v in var_list)
        groups.names.extend(n for n in names if n not in groups.names)

    def _make_hyperparameter_variables(self):
        # The last step of every `build`: the groups are resolved here,
        # once, for the built variables.
        super()._make_hyperparameter_variables()
        if self._groups().choices is None:
            self._resolve_groups()

    def _resolve_groups(self):
        groups = self._groups()
        variables = _keras_compat.built_variables(self)
        saved = groups.saved
        if saved is not None and [tuple(row[0]) for row in saved] == [
            tuple(v.shape) for v in variables
        ]:
            groups.choices = [
                (decay, lr, tuple(note.split("; ")) if note else ())
                for _, decay, lr, note in saved
            ]
            return
        chosen = select(
            variables,
            ndim_rule=groups.ndim_rule,
            exclude=groups.patterns,
            decay_mult=groups.decay_mult,
            lr_mult=groups.lr_mult,
            exclude_name="decay_exclude",
            extra_excluded=groups.excluded,
            empty_ok=True,  # a model without trainable weights trains
            strict=not groups.loaded,
        )
        groups.choices = [
            (c.decay_multiplier, c.lr_multiplier, c.notes) for c in chosen
        ]

    def _choice(self, variable):
        groups = self._groups()
        if groups.choices is None:
            self._resolve_groups()
        return groups.choices[self._get_variable_index(variable)]

    def _decay_multiplier(self, variable):
        return self._choice(variable)[0]

    def _lr_multiplier(self, variable):
        return self._choice(variable)[1]

    def decay_report(self):
        """Which variables this optimizer decays, and how much.

        Returns:
            A `DecayReport` (`kind="decoupled"`) with one row per variable
            the optimizer was built with: path, shape, decay multiplier,
            effective weight decay `weight_decay * decay_mult` (at the
            current step, for a schedule), lr multiplier and note.

        Raises:
            ValueError: The optimizer is not built yet.
        """
        if not self.built:
            raise ValueError(
                "decay_report() needs a built optimizer: call it after "
                "`fit` (or `optimizer.build(model.trainable_variables)`)."
            )
        weight_decay = self.current_hyperparameters()["weight_decay"]
        rows = []
        for variable in _keras_compat.built_variables(self):
            decay = self._decay_multiplier(variable)
            lr = self._lr_multiplier(variable)
            notes = self._choice(variable)[2]
            rows.append(
                DecayRow(
                    variable_path(variable),
                    variable.shape,
                    decay,
                    weight_decay * decay,
                    "; ".join(notes),
                    lr_multiplier=lr,
                )
            )
        return DecayReport(rows, "decoupled")

    def get_config(self):
        config = super().get_config()
        groups = self._groups()
        if groups.ndim_rule:
            exclude = list(groups.patterns) if groups.patterns else "auto"
        else:
            exclude = None
        config["decay_exclude"] = exclude
        config["decay_mult"] = dict(groups.decay_mult) or None
        config["lr_mult"] = dict(groups.lr_mult) or None
        if groups.names:
            config["excluded_names"] = list(groups.names)
        if self.built:
            config["decay_groups"] = [
                [list(v.shape), decay, lr, "; ".join(notes)]
                for v in _keras_compat.built_variables(self)
                for decay, lr, notes in [self._choice(v)]
            ]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        names = config.pop("excluded_names", None)
        saved = config.pop("decay_groups", None)
        optimizer = super().from_config(config, custom_objects=custom_objects)
        if names:
            optimizer.exclude_from_weight_decay(var_names=names)
        groups = optimizer._groups()
        groups.loaded = True
        if saved is not None:
            groups.saved = _check_saved_groups(saved)
        return optimizer


def _check_saved_groups(saved):
    """The `decay_groups` rows of a saved config, checked as arguments are.

    Each row is `[shape, decay_mult, lr_mult, note]`; a multiplier gets the
    checks of `decay_mult` / `lr_mult` (a finite float >= 0).
    """
    expected = "a list of [shape, decay_mult, lr_mult, note] rows"
    if not isinstance(saved, (list, tuple)):
        fail(ValueError, "decay_groups", expected, saved)
    rows = []
    for i, row in enumerate(saved):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            fail(ValueError, f"decay_groups[{i}]", expected, row)
        shape, decay, lr, note = row
        if not isinstance(shape, (list, tuple)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0
            for n in shape
        ):
            fail(ValueError, f"decay_groups[{i}]", expected, row)
        if not isinstance(note, str):
            fail(ValueError, f"decay_groups[{i}]", expected, row)
        rows.append(
            [
                tuple(shape),
                check_non_negative_float(
                    decay, f"decay_groups[{i}] decay_mult"
                ),
                check_non_negative_float(lr, f"decay_groups[{i}] lr_mult"),
                note,
            ]
        )
    return rows
