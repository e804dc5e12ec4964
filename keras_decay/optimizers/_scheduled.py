"""The mechanism behind `keras_decay.optimizers`: scheduled hyperparameters.

Keras resolves `learning_rate` inside the optimizer's own update: a float
becomes an optimizer variable (settable from the host, read by the compiled
update), a `LearningRateSchedule` is evaluated at the step being taken.
`ScheduledHyperparameters` does the same for the hyperparameters a Keras
optimizer keeps as Python floats (`momentum`, `beta_1`, `weight_decay`):

- a float becomes a scalar optimizer variable when the optimizer is built
  (`optimizer.momentum = 0.5` assigns it: no retrace);
- a `LearningRateSchedule` is evaluated at the step the learning-rate
  schedule sees (0-based `optimizer.iterations` before the update) and
  clipped into the hyperparameter's range (`[0, 1]` for `momentum` and
  `beta_1`, `>= 0` for `weight_decay`);
- `weight_decay=None` means no decay, as in Keras.

Decoupled weight decay is applied per variable at the start of its update,
`w <- w - c_t * mult * wd_t * w` with `mult = _decay_multiplier(w)` (0 for
the variables `exclude_from_weight_decay` excludes), and the learning rate
of the variable's update is `lr_v = lr_t * _lr_multiplier(w)`, both Python
floats resolved when the update is traced. `c_t` is `lr_v` in
`weight_decay_mode="lr"` (Keras' rule, the default), `lr_v / eta_max` in
`"independent"`, `lr_v * lr_t / eta_max` in `"corrected"` (`eta_max`: the
largest `lr_t` so far, an optimizer variable updated once per step). With
`cautious_weight_decay=True` the decay is applied after the class's step,
from the weight before it, where the step and the weight agree in sign.

Each class lists the attributes it schedules in `_hyperparameter_names`;
the Keras update reads them through properties that return the resolved
value (a variable or a tensor). Keras' SGD and RMSprop branch on the Python
value of `momentum` (`if self.momentum != 0`) to create and use momentum
slots: their classes here always have the slots and run the momentum
update (with momentum 0 it equals the plain update exactly), written in
`keras_decay/optimizers/__init__.py`.
"""

import inspect
import numbers

import keras
import numpy as np
from keras import ops

from keras_decay import _keras_compat
from keras_decay._validation import check_bool
from keras_decay._validation import check_choice

__all__ = [
    "WEIGHT_DECAY_MODES",
    "ScheduledHyperparameters",
    "current_hyperparameters",
]

# The coefficient `c_t` of the decoupled decay `w <- w - c_t * wd_t * w`.
WEIGHT_DECAY_MODES = ("lr", "independent", "corrected")

_Schedule = keras.optimizers.schedules.LearningRateSchedule

# Closed range of each schedulable hyperparameter (None: unbounded).
_RANGES = {
    "momentum": (0.0, 1.0),
    "beta_1": (0.0, 1.0),
    "weight_decay": (0.0, None),
    "adam_weight_decay": (0.0, None),  # Muon's decay of its AdamW variables
}
_DECAYS = ("weight_decay", "adam_weight_decay")


def _range_text(name, open_below=False):
    low, high = _RANGES[name]
    if high is None:
        return f"> {low}" if open_below else f">= {low}"
    return f"in {'(' if open_below else '['}{low}, {high}]"


def check_hyperparameter(name, value, open_below=False):
    """Returns `value` (a float, a schedule or None) after checking it.

    A float must lie in the hyperparameter's range (`open_below`: its low
    end excluded, as Keras' Lion excludes `beta_1=0`) and be representable
    in `floatx()`, the dtype of the variable that holds it.
    """
    if isinstance(value, _Schedule):
        return value
    if value is None and name in _DECAYS:
        return None
    expected = (
        f"a float {_range_text(name, open_below)} or a "
        "keras.optimizers.schedules.LearningRateSchedule"
    )
    if name in _DECAYS:
        expected += " or None"
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"Invalid value received for argument `{name}`. Expected "
            f"{expected}. Received: {name}={value!r}"
        )
    value = float(value)
    low, high = _RANGES[name]
    largest = float(np.finfo(keras.config.floatx()).max)
    if not (
        (value > low or (value == low and not open_below))
        and (high is None or value <= high)
        and value <= largest
    ):
        if value > largest:
            expected += (
                f" (at most {largest:g}, the largest {keras.config.floatx()})"
            )
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected "
            f"{expected}. Received: {name}={value!r}"
        )
    return value


def _clip(name, value):
    low, high = _RANGES[name]
    if high is None:
        return ops.maximum(value, low)
    return ops.clip(value, low, high)


def _host_float(value):
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        return float(ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return float(value)  # an object that converts through float() only


def _slots(optimizer, variables, name):
    """One zero slot per model variable (None where Keras makes none)."""
    return [
        None
        if getattr(variable, "overwrite_with_gradient", False)
        else optimizer.add_variable_from_reference(variable, name=name)
        for variable in variables
    ]


def _make_property(name):
    def getter(self):
        return self._resolve(name)

    def setter(self, value):
        self._set_hyperparameter(name, value)

    return property(
        getter,
        setter,
        doc=f"The `{name}` of the step being taken (a variable or tensor).",
    )


def _constructor_signature(cls):
    """`cls(...)`'s arguments for `inspect.signature`, `help()` and the API
    reference: the Keras class's own, then the keyword-only ones each
    keras_decay base adds (their `__init__` take `*args, **kwargs` and
    pass Keras' on)."""
    try:
        keras_class = cls._keras_class()
    except TypeError:  # a mixin without a Keras optimizer base
        return None
    init = keras_class.__init__
    parameters = list(inspect.signature(init).parameters.values())
    own = [p for p in parameters[1:] if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    for base in cls.__mro__[: cls.__mro__.index(keras_class)]:
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name not in names:
                own.append(p)
                names.add(p.name)
    var_keyword = [p for p in parameters if p.kind is p.VAR_KEYWORD]
    return inspect.Signature(own + var_keyword)


class ScheduledHyperparameters:
    """Mixin for a Keras optimizer class: schedulable float hyperparameters.

    Put first in the bases, before the Keras class; set
    `_hyperparameter_names` to the attributes to schedule. See the module
    docstring for the rules.
    """

    _hyperparameter_names = ()
    # Hyperparameters whose float may not equal the low end of the range.
    _open_below = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("_hyperparameter_names", ()):
            setattr(cls, name, _make_property(name))
        # A subclass with its own `__init__` gets the default signature.
        own_init = "__init__" in cls.__dict__
        cls.__signature__ = None if own_init else _constructor_signature(cls)

    def __init__(
        self,
        *args,
        weight_decay_mode="lr",
        cautious_weight_decay=False,
        **kwargs,
    ):
        weight_decay_mode = check_choice(
            weight_decay_mode, "weight_decay_mode", WEIGHT_DECAY_MODES
        )
        cautious_weight_decay = check_bool(
            cautious_weight_decay, "cautious_weight_decay"
        )
        keras_class = self._keras_class()
        signature = inspect.signature(keras_class.__init__)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        schedules = {}
        for name in self._hyperparameter_names:
            value = self._check_hyperparameter(name, bound.arguments[name])
            if isinstance(value, _Schedule):
                schedules[name] = value
                # Keras' own checks see a valid float.
                bound.arguments[name] = _placeholder(signature, name)
            else:
                bound.arguments[name] = value
        super().__init__(*bound.args[1:], **bound.kwargs)
        vars(self)["_hyperparameters"].update(schedules)
        vars(self)["_weight_decay_mode"] = weight_decay_mode
        vars(self)["_cautious_weight_decay"] = cautious_weight_decay
        vars(self)["_max_learning_rate"] = None
        vars(self)["_cautious_counts"] = None
        vars(self)["_track_cautious_fraction"] = False
        # `(id(rate), dtype, rate, ratio)`: this step's `_mode_ratio`.
        vars(self)["_step_ratio"] = None
        # Set by `from_config`: hyperparameters whose variable the saved
        # optimizer had under a schedule.
        vars(self)["_variables_under_schedule"] = ()

    def _check_hyperparameter(self, name, value):
        return check_hyperparameter(name, value, name in self._open_below)

    @classmethod
    def _keras_class(cls):
        for base in cls.__mro__:
            if (
                base.__module__.split(".")[0] == "keras"
                and base is not keras.optimizers.Optimizer
                and issubclass(base, keras.optimizers.Optimizer)
            ):
                return base
        raise TypeError(f"{cls.__name__} has no Keras optimizer base.")

    # State: `_hyperparameters[name]` is a float (until built), a variable,
    # a schedule or None. Written through `vars(self)`: Keras' `__setattr__`
    # refuses attributes before `super().__init__` has run.

    def _set_hyperparameter(self, name, value):
        values = vars(self).setdefault("_hyperparameters", {})
        held = vars(self).setdefault("_held_variables", {})
        current = values.get(name)
        variable = held.get(name)
        if isinstance(current, keras.Variable):
            variable = current
        if variable is None:
            # Not built, or built with a schedule (no variable to hold a
            # float): the value is what the next build or trace sees.
            if isinstance(current, _Schedule) and not isinstance(
                value, _Schedule
            ):
                raise TypeError(
                    f"This optimizer was created with a schedule as `{name}`, "
                    f"which cannot be replaced by a value. Received: "
                    f"{name}={value!r}"
                )
            values[name] = self._check_hyperparameter(name, value)
            return
        if value is None:
            raise TypeError(
                f"`{name}` of a built optimizer can be set to a float or a "
                f"schedule. Received: {name}={value!r}"
            )
        value = self._check_hyperparameter(name, value)
        if isinstance(value, _Schedule):
            # The variable stays (Keras saves optimizer variables by
            # position) and takes the float again if one is set later.
            held[name] = variable
            values[name] = value
            return
        variable.assign(value)
        vars(self)["_hyperparameter_floats"][name] = value
        held.pop(name, None)
        values[name] = variable

    def _resolve(self, name):
        values = vars(self).get("_hyperparameters", {})
        if name not in values:
            raise AttributeError(name)
        value = values[name]
        if isinstance(value, _Schedule):
            step = _keras_compat.schedule_step(self)
            return _clip(name, value(step))
        return value

    def _make_hyperparameter_variables(self):
        """Turns the float hyperparameters into optimizer variables.

        Also makes the variable of a hyperparameter that a saved optimizer
        held under a schedule set after its build (`hyperparameter_variables`
        in the config), so that the saved variables load by position.
        """
        values = vars(self)["_hyperparameters"]
        held = vars(self).setdefault("_held_variables", {})
        under_schedule = vars(self).get("_variables_under_schedule", ())
        floats = vars(self).setdefault("_hyperparameter_floats", {})
        for name in self._hyperparameter_names:
            value = values.get(name)
            if isinstance(value, float) or name in under_schedule:
                initial = value if isinstance(value, float) else 0.0
                variable = self.add_variable(
                    shape=(),
                    initializer=keras.initializers.Constant(initial),
                    dtype=keras.config.floatx(),
                    aggregation="only_first_replica",
                    name=name,
                )
                if isinstance(value, float):
                    floats[name] = value
                    values[name] = variable
                else:
                    held[name] = variable
        if (
            self._weight_decay_mode != "lr"
            and vars(self)["_max_learning_rate"] is None
        ):
            # eta_max of the "independent" and "corrected" modes: the
            # largest learning rate applied so far (saved, so that a
            # checkpoint resumes exactly). Not made in "lr" mode: the
            # variables of today's optimizers, and their files, stay as
            # they were.
            vars(self)["_max_learning_rate"] = self.add_variable(
                shape=(),
                initializer="zeros",
                dtype=keras.config.floatx(),
                aggregation="only_first_replica",
                name="max_learning_rate",
            )
        if (
            self._cautious_weight_decay
            and vars(self)["_cautious_counts"] is None
        ):
            # The entries of the last applied step that cautious decay kept
            # decaying, and those it would decay (read by
            # `cautious_fraction`). Saved with the optimizer; not made
            # without cautious decay.
            vars(self)["_cautious_counts"] = tuple(
                self.add_variable(
                    shape=(),
                    initializer="zeros",
                    dtype="float32",
                    aggregation="only_first_replica",
                    name=name,
                )
                for name in ("cautious_kept", "cautious_decayed")
            )

    def _add_slots(self, variables):
        """Creates slots the Keras class makes only for some values."""

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._add_slots(variables)
        self._make_hyperparameter_variables()

    # Per-variable hooks, Python floats resolved when the update is traced.

    def _decay_multiplier(self, variable):
        """Factor on the weight decay of `variable` (0: not decayed).

        `variable` is the model's `keras.Variable`; called when the update
        is traced, returns a Python float.
        """
        return 1.0 if _keras_compat.uses_weight_decay(self, variable) else 0.0

    def _lr_multiplier(self, variable):
        """Factor on the learning rate of `variable`'s update (and decay).

        `variable` is the model's `keras.Variable`; a Python float.
        """
        return 1.0

    def _apply_weight_decay(self, variables):
        # Applied per variable in `update_step`, inside the same
        # (distributed) per-variable update as the gradient step.
        return

    @property
    def weight_decay_mode(self):
        """`"lr"`, `"independent"` or `"corrected"` (see the module doc)."""
        return self._weight_decay_mode

    @property
    def cautious_weight_decay(self):
        """Whether decay applies only where the update agrees in sign."""
        return self._cautious_weight_decay

    @property
    def max_learning_rate(self):
        """eta_max: the largest learning rate applied so far (a variable).

        None in `weight_decay_mode="lr"` (not needed) or before the build.
        """
        return vars(self).get("_max_learning_rate")

    @property
    def track_cautious_fraction(self):
        """Whether each step counts the entries cautious decay decayed.

        Off by default: the count is one more sum over every decayed
        variable in every step, 10-20 % of a small model's step on XLA's
        CPU backend (`benchmarks/bench_decay_modes.py`). `WeightNormLogger`
        turns it on at the start of `fit` for a cautious optimizer (and
        rebuilds the model's train function once, so that the step
        counts); it stays on. Set it yourself to read `cautious_fraction`
        without the logger, before the step is traced (before `fit`, or
        call `model.make_train_function(force=True)` after). Setting True
        needs `cautious_weight_decay=True`.
        """
        return vars(self)["_track_cautious_fraction"]

    @track_cautious_fraction.setter
    def track_cautious_fraction(self, value):
        value = check_bool(value, "track_cautious_fraction")
        if value and not self._cautious_weight_decay:
            raise ValueError(
                "track_cautious_fraction=True counts the entries cautious "
                "decay decays: it needs cautious_weight_decay=True. "
                f"Received: track_cautious_fraction={value!r} on an "
                "optimizer with cautious_weight_decay=False"
            )
        vars(self)["_track_cautious_fraction"] = value

    @property
    def cautious_fraction(self):
        """Of the entries the last step would decay, the fraction decayed.

        `sum(mask) / count`, over the variables the optimizer decays, of
        the last applied step (`mask = 1[u * w >= 0]`, see the module
        docstring): 1.0 where every update agreed in sign with its weight.
        Counted by the step itself while `track_cautious_fraction` is on.
        A Python float; NaN before the first counted step or when no
        entry is decayed; None without `cautious_weight_decay`, before
        the build, or while `track_cautious_fraction` is off. (On JAX,
        during `fit`, the optimizer's variables are written back only at
        the end of an epoch or when a callback syncs them.)
        """
        counts = vars(self).get("_cautious_counts")
        if counts is None or not self.track_cautious_fraction:
            return None
        kept, decayed = (float(ops.convert_to_numpy(c)) for c in counts)
        return kept / decayed if decayed > 0 else float("nan")

    def _begin_step(self, learning_rate):
        """Once per applied step, before the per-variable updates:
        `eta_max` takes this step's rate, the cautious counts restart."""
        vars(self)["_step_ratio"] = None
        variable = vars(self).get("_max_learning_rate")
        if variable is not None:
            self.assign(
                variable,
                ops.maximum(variable, ops.cast(learning_rate, variable.dtype)),
            )
        for count in vars(self).get("_cautious_counts") or ():
            self.assign(count, ops.zeros((), count.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Once per applied step, before the per-variable updates (as Keras'
        # Nadam updates its `u_product`; a Keras internal, noted in
        # `_keras_compat`). Each update also takes the maximum learning
        # rate itself; the counts are added to after this reset (each
        # backend runs the assignments of one step in program order).
        self._begin_step(learning_rate)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        # The hooks see the `keras.Variable` (with `.path`) on every
        # backend; the update works on what Keras passes.
        model_variable = _keras_compat.model_variable(self, variable)
        base_learning_rate = learning_rate
        lr_multiplier = self._lr_multiplier(model_variable)
        if lr_multiplier != 1.0:
            learning_rate = ops.multiply(learning_rate, lr_multiplier)
        rate = self._decay_rate(
            variable, learning_rate, base_learning_rate, model_variable
        )
        if rate is None:
            self._update(gradient, variable, learning_rate)
        elif not self._cautious_weight_decay:
            wd, coefficient = rate
            self.assign(variable, variable - variable * wd * coefficient)
            self._update(gradient, variable, learning_rate)
        else:
            # u is the step the class subtracts (`w <- w - lr_v * u`); its
            # sign is that of `before - after` (rounding keeps the sign;
            # a change below float resolution reads as u = 0: decayed).
            wd, coefficient = rate
            before = ops.copy(variable)
            self._update(gradient, variable, learning_rate)
            step = ops.subtract(before, variable)
            agree = ops.greater_equal(ops.multiply(step, before), 0)
            keep = ops.cast(agree, variable.dtype)
            self.assign_sub(variable, before * keep * (wd * coefficient))
            if self.track_cautious_fraction:  # Read when the step traces.
                kept, decayed = vars(self)["_cautious_counts"]
                self.assign_add(kept, ops.sum(ops.cast(agree, "float32")))
                self.assign_add(decayed, float(np.prod(variable.shape)))

    def _update(self, gradient, variable, learning_rate):
        """The Keras class's update (reads the resolved hyperparameters)."""
        super().update_step(gradient, variable, learning_rate)

    def _weight_decay_name(self, model_variable):
        """The hyperparameter that decays `model_variable`."""
        return "weight_decay"

    def _decay_rate(
        self, variable, learning_rate, base_learning_rate, model_variable
    ):
        """`(wd, c)` of `w <- w - wd * c * w` (tensors), None: no decay.

        `wd = weight_decay(t) * decay_mult`; `c` is `lr_v` ("lr"),
        `lr_v / eta_max` ("independent") or `lr_v * lr_t / eta_max`
        ("corrected"), with `lr_v = lr_t * lr_mult` and `eta_max` the
        largest base learning rate applied so far, this step included
        (0 when `eta_max` is 0).
        """
        name = self._weight_decay_name(model_variable)
        if vars(self)["_hyperparameters"].get(name) is None:
            return None
        multiplier = self._decay_multiplier(model_variable)
        if multiplier == 0.0:
            return None
        wd = ops.cast(self._resolve(name), variable.dtype)
        if multiplier != 1.0:
            wd = wd * multiplier
        if self._weight_decay_mode == "lr":
            return wd, ops.cast(learning_rate, variable.dtype)
        ratio = self._mode_ratio(base_learning_rate, variable.dtype)
        lr_multiplier = self._lr_multiplier(model_variable)
        if lr_multiplier != 1.0:
            ratio = ratio * lr_multiplier
        return wd, ratio

    def _mode_ratio(self, base_learning_rate, dtype):
        """`lr_t / eta_max` ("independent") or `lr_t * lr_t / eta_max`
        ("corrected") of this step, in `dtype` (0 when `eta_max` is 0).

        The same for every variable of a step: on PyTorch, which runs
        each operation as it comes, computed for the step's first decayed
        variable and reused (`_begin_step` forgets it); TensorFlow's and
        XLA's graphs compute it once anyway.
        """
        cached = vars(self)["_step_ratio"]
        if cached is not None and cached[:2] == (id(base_learning_rate), dtype):
            return cached[3]
        base = ops.cast(base_learning_rate, dtype)
        eta_max = ops.maximum(
            ops.cast(vars(self)["_max_learning_rate"], dtype), base
        )
        positive = ops.greater(eta_max, 0)
        # Where eta_max is 0, so is every learning rate: no decay.
        divisor = ops.where(positive, eta_max, ops.ones_like(eta_max))
        ratio = base / divisor
        if self._weight_decay_mode == "corrected":
            ratio = base * ratio
        if keras.backend.backend() == "torch":
            # The rate itself is kept with its id: the id cannot be reused.
            key = (id(base_learning_rate), dtype, base_learning_rate)
            vars(self)["_step_ratio"] = key + (ratio,)
        return ratio

    def get_config(self):
        config = super().get_config()
        config["weight_decay_mode"] = self._weight_decay_mode
        config["cautious_weight_decay"] = self._cautious_weight_decay
        for name in self._hyperparameter_names:
            value = vars(self)["_hyperparameters"].get(name)
            if isinstance(value, _Schedule):
                value = keras.saving.serialize_keras_object(value)
            elif isinstance(value, keras.Variable):
                value = self._variable_float(name, value)
            config[name] = value
        held = vars(self).get("_held_variables", {})
        if held:
            # Not a constructor argument: the variables this optimizer has
            # for hyperparameters now scheduled (see `from_config`).
            config["hyperparameter_variables"] = [
                name for name in self._hyperparameter_names if name in held
            ]
        return config

    def _variable_float(self, name, variable):
        """The variable's value: the float last set if it holds that one.

        (A float32 variable set to 0.9 holds 0.8999999762; the config says
        0.9, as a Keras optimizer's would.)
        """
        held = ops.convert_to_numpy(variable)
        last = vars(self).get("_hyperparameter_floats", {}).get(name)
        if last is not None and np.asarray(last, held.dtype) == held:
            return last
        return float(held)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        under_schedule = config.pop("hyperparameter_variables", None) or ()
        for name in cls._hyperparameter_names:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(
                    config[name], custom_objects=custom_objects
                )
        optimizer = super().from_config(config, custom_objects=custom_objects)
        names = [n for n in under_schedule if n in cls._hyperparameter_names]
        vars(optimizer)["_variables_under_schedule"] = tuple(names)
        return optimizer

    def current_hyperparameters(self, step=None):
        """The hyperparameters of a step, as Python floats, on the host.

        Args:
            step: Int. The 0-based step (the value of `optimizer.iterations`
                before that step's update). Defaults to the step about to
                be taken.

        Returns:
            `{"learning_rate": ..., "momentum": ..., "weight_decay": ...}`
            (`momentum` is `beta_1` for the Adam family and Lion;
            `weight_decay` is 0.0 when the optimizer has none); see
            `keras_decay.optimizers.current_hyperparameters`.
        """
        return current_hyperparameters(self, step)


def _placeholder(signature, name):
    """A valid float for Keras' own checks while a schedule is passed."""
    default = signature.parameters[name].default
    if isinstance(default, float) and name not in _DECAYS:
        return default
    return 0.0 if name in _DECAYS else 0.9


def _learning_rate_at(optimizer, step):
    value = _keras_compat.learning_rate_value(optimizer)
    if isinstance(value, _Schedule):
        return _host_float(value(step))
    if isinstance(value, keras.Variable) or ops.is_tensor(value):
        return _host_float(value)
    if callable(value):
        return _host_float(value())
    return float(value)


# The momentum coefficient has one key, `momentum`, whatever the class calls
# it: SGD's and RMSprop's `momentum`, the Adam family's and Lion's `beta_1`
# (the value PyTorch's OneCycleLR cycles as "momentum").
_MOMENTUM_ATTRIBUTES = ("momentum", "beta_1")


def _check_step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(
            "Invalid value received for argument `step`. Expected an "
            f"integer >= 0 or None. Received: step={step!r}"
        )
    if step < 0:
        raise ValueError(
            "Invalid value received for argument `step`. Expected an "
            f"integer >= 0 or None. Received: step={step!r}"
        )
    return int(step)


def _hyperparameter_at(optimizer, name, step):
    """The value of attribute `name` at `step` (float), None if it has none."""
    if isinstance(optimizer, ScheduledHyperparameters):
        if name not in optimizer._hyperparameter_names:
            return None
        value = vars(optimizer)["_hyperparameters"].get(name)
        if isinstance(value, keras.Variable):
            return optimizer._variable_float(name, value)
    else:
        value = getattr(optimizer, name, None)
    if value is None:
        return None
    if isinstance(value, _Schedule):
        return _host_float(_clip(name, value(step)))
    if callable(value) and not (
        isinstance(value, keras.Variable) or ops.is_tensor(value)
    ):
        value = value()  # Keras also takes a callable without arguments
    return _host_float(value)


def current_hyperparameters(optimizer, step=None):
    """The hyperparameters of `optimizer` at a step, as Python floats.

    The one reader of "the hyperparameters of step `t`": the
    `WeightNormLogger`, `keras_decay.rules` and the experiment use it. Works
    with any Keras optimizer (a `LossScaleOptimizer` is looked through) and
    always gives the same keys:

    - `learning_rate`;
    - `momentum`: the momentum coefficient (`momentum` of SGD and RMSprop,
      `beta_1` of the Adam family and Lion); absent for an optimizer
      without one;
    - `weight_decay`: the decoupled weight decay, 0.0 when there is none.

    Schedules are evaluated at `step` and clipped as in the update;
    variables and floats are read as they are now.

    Args:
        optimizer: A `keras.optimizers.Optimizer`.
        step: Optional int >= 0. The 0-based step (the value of
            `optimizer.iterations` before that step's update). Defaults to
            the step about to be taken.

    Returns:
        A dict of Python floats.

    Example:

    >>> optimizer = keras_decay.optimizers.SGD(
    ...     0.1, momentum=keras_decay.schedules.LinearRamp(0.0, 0.9, 10))
    >>> values = keras_decay.optimizers.current_hyperparameters(optimizer, 5)
    >>> {name: round(value, 6) for name, value in values.items()}
    {'learning_rate': 0.1, 'momentum': 0.45, 'weight_decay': 0.0}
    """
    optimizer = _keras_compat.unwrap_optimizer(optimizer)
    if step is None:
        step = int(_host_float(_keras_compat.schedule_step(optimizer)))
    step = ops.convert_to_tensor(_check_step(step), dtype="int64")
    result = {"learning_rate": _learning_rate_at(optimizer, step)}
    for name in _MOMENTUM_ATTRIBUTES:
        value = _hyperparameter_at(optimizer, name, step)
        if value is not None:
            result["momentum"] = value
            break
    result["weight_decay"] = (
        _hyperparameter_at(optimizer, "weight_decay", step) or 0.0
    )
    return result
