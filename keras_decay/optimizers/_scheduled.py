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
`w <- w - lr_t * mult * wd_t * w` with `mult = _decay_multiplier(w)` (0 for
the variables `exclude_from_weight_decay` excludes), and the learning rate
of the variable's update is `lr_t * _lr_multiplier(w)`, both Python floats
resolved when the update is traced.

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

__all__ = ["ScheduledHyperparameters", "current_hyperparameters"]

_Schedule = keras.optimizers.schedules.LearningRateSchedule

# Closed range of each schedulable hyperparameter (None: unbounded).
_RANGES = {
    "momentum": (0.0, 1.0),
    "beta_1": (0.0, 1.0),
    "weight_decay": (0.0, None),
}


def _range_text(name):
    low, high = _RANGES[name]
    return f"in [{low}, {high}]" if high is not None else f">= {low}"


def check_hyperparameter(name, value):
    """Returns `value` (a float, a schedule or None) after checking it."""
    if isinstance(value, _Schedule):
        return value
    if value is None and name == "weight_decay":
        return None
    expected = (
        f"a float {_range_text(name)} or a "
        "keras.optimizers.schedules.LearningRateSchedule"
    )
    if name == "weight_decay":
        expected += " or None"
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"Invalid value received for argument `{name}`. Expected "
            f"{expected}. Received: {name}={value!r}"
        )
    value = float(value)
    low, high = _RANGES[name]
    if not (value >= low and (high is None or value <= high)):
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
    return float(ops.convert_to_numpy(value))


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


class ScheduledHyperparameters:
    """Mixin for a Keras optimizer class: schedulable float hyperparameters.

    Put first in the bases, before the Keras class; set
    `_hyperparameter_names` to the attributes to schedule. See the module
    docstring for the rules.
    """

    _hyperparameter_names = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("_hyperparameter_names", ()):
            setattr(cls, name, _make_property(name))

    def __init__(self, *args, **kwargs):
        keras_class = self._keras_class()
        signature = inspect.signature(keras_class.__init__)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        schedules = {}
        for name in self._hyperparameter_names:
            value = check_hyperparameter(name, bound.arguments[name])
            if isinstance(value, _Schedule):
                schedules[name] = value
                # Keras' own checks see a valid float.
                bound.arguments[name] = _placeholder(signature, name)
            else:
                bound.arguments[name] = value
        super().__init__(*bound.args[1:], **bound.kwargs)
        vars(self)["_hyperparameters"].update(schedules)

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
        current = values.get(name)
        if isinstance(current, keras.Variable):
            if isinstance(value, _Schedule) or value is None:
                raise TypeError(
                    f"`{name}` of a built optimizer can be set to a float "
                    f"only. Received: {name}={value!r}"
                )
            value = check_hyperparameter(name, value)
            current.assign(value)
            vars(self)["_hyperparameter_floats"][name] = value
            return
        if isinstance(current, _Schedule) and not isinstance(value, _Schedule):
            raise TypeError(
                f"This optimizer was created with a schedule as `{name}`, "
                f"which cannot be replaced by a value. Received: "
                f"{name}={value!r}"
            )
        values[name] = check_hyperparameter(name, value)

    def _resolve(self, name):
        values = vars(self).get("_hyperparameters", {})
        if name not in values:
            raise AttributeError(name)
        value = values[name]
        if isinstance(value, _Schedule):
            step = _keras_compat.schedule_step(self)
            return _clip(name, value(step))
        return value

    def _is_scheduled(self, name):
        return isinstance(vars(self)["_hyperparameters"].get(name), _Schedule)

    def _make_hyperparameter_variables(self):
        """Turns the float hyperparameters into optimizer variables."""
        values = vars(self)["_hyperparameters"]
        for name in self._hyperparameter_names:
            value = values.get(name)
            if isinstance(value, float):
                floats = vars(self).setdefault("_hyperparameter_floats", {})
                floats[name] = value
                values[name] = self.add_variable(
                    shape=(),
                    initializer=keras.initializers.Constant(value),
                    dtype=keras.config.floatx(),
                    aggregation="only_first_replica",
                    name=name,
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

    def update_step(self, gradient, variable, learning_rate):
        # The hooks see the `keras.Variable` (with `.path`) on every
        # backend; the update works on what Keras passes.
        model_variable = _keras_compat.model_variable(self, variable)
        lr_multiplier = self._lr_multiplier(model_variable)
        if lr_multiplier != 1.0:
            learning_rate = ops.multiply(learning_rate, lr_multiplier)
        self._decay(variable, learning_rate, model_variable)
        self._update(gradient, variable, learning_rate)

    def _update(self, gradient, variable, learning_rate):
        """The Keras class's update (reads the resolved hyperparameters)."""
        super().update_step(gradient, variable, learning_rate)

    def _decay(self, variable, learning_rate, model_variable):
        if vars(self)["_hyperparameters"].get("weight_decay") is None:
            return
        multiplier = self._decay_multiplier(model_variable)
        if multiplier == 0.0:
            return
        lr = ops.cast(learning_rate, variable.dtype)
        wd = ops.cast(self._resolve("weight_decay"), variable.dtype)
        if multiplier != 1.0:
            wd = wd * multiplier
        self.assign(variable, variable - variable * wd * lr)

    def get_config(self):
        config = super().get_config()
        for name in self._hyperparameter_names:
            value = vars(self)["_hyperparameters"].get(name)
            if isinstance(value, _Schedule):
                value = keras.saving.serialize_keras_object(value)
            elif isinstance(value, keras.Variable):
                value = self._variable_float(name, value)
            config[name] = value
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
        for name in cls._hyperparameter_names:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(
                    config[name], custom_objects=custom_objects
                )
        return super().from_config(config, custom_objects=custom_objects)

    def current_hyperparameters(self, step=None):
        """The hyperparameters of a step, as Python floats, on the host.

        Args:
            step: Int. The 0-based step (the value of `optimizer.iterations`
                before that step's update). Defaults to the step about to
                be taken.

        Returns:
            A dict `{"learning_rate": ..., <name>: ...}` with one entry per
            scheduled attribute (`momentum` or `beta_1`, and
            `weight_decay`; 0.0 when the optimizer has no weight decay).
        """
        return current_hyperparameters(self, step)

    def _take_over(self, model_variables):
        """State of a Keras optimizer whose class was just set to this one.

        Moves the attribute values Keras' `__init__` stored into the
        hyperparameter table, then (if built) adds the slots and variables
        this class always has. Returns whether a variable was created.
        """
        values = vars(self).setdefault("_hyperparameters", {})
        for name in self._hyperparameter_names:
            if name in vars(self):
                values[name] = check_hyperparameter(name, vars(self).pop(name))
        return self._complete(model_variables)

    def _complete(self, model_variables):
        # Keras saves optimizer variables by position: slots are made
        # before the hyperparameter variables, as `build` does, so that the
        # checkpoint of an optimizer taken over after `build` loads into a
        # new instance of this class.
        if not self.built:
            return False
        count = len(self.variables)
        self._add_slots(model_variables)
        self._make_hyperparameter_variables()
        return len(self.variables) != count


def _placeholder(signature, name):
    """A valid float for Keras' own checks while a schedule is passed."""
    default = signature.parameters[name].default
    if isinstance(default, float) and name != "weight_decay":
        return default
    return 0.0 if name == "weight_decay" else 0.9


def _learning_rate_at(optimizer, step):
    value = _keras_compat.learning_rate_value(optimizer)
    if isinstance(value, _Schedule):
        return _host_float(value(step))
    if isinstance(value, keras.Variable) or ops.is_tensor(value):
        return _host_float(value)
    if callable(value):
        return _host_float(value())
    return float(value)


def current_hyperparameters(optimizer, step=None):
    """The hyperparameters of `optimizer` at a step, as Python floats.

    Works with any Keras optimizer (a `LossScaleOptimizer` is looked
    through): `learning_rate`, the momentum coefficient under its own name
    (`momentum` for SGD and RMSprop, `beta_1` for the Adam family and Lion,
    absent for optimizers without one) and `weight_decay` (0.0 when the
    optimizer has none). Schedules are evaluated at `step` and clipped as in
    the update; variables and floats are read as they are now.

    Args:
        optimizer: A `keras.optimizers.Optimizer`.
        step: Int. The 0-based step. Defaults to the step about to be taken
            (the optimizer's step count now).

    Returns:
        A dict of Python floats.

    Example:

    >>> optimizer = keras_decay.optimizers.SGD(
    ...     0.1, momentum=keras_decay.schedules.LinearRamp(0.0, 0.9, 10))
    >>> keras_decay.optimizers.current_hyperparameters(optimizer, step=5)
    {'learning_rate': 0.1, 'momentum': 0.45, 'weight_decay': 0.0}
    """
    optimizer = _keras_compat.unwrap_optimizer(optimizer)
    if step is None:
        step = int(_host_float(_keras_compat.schedule_step(optimizer)))
    step = ops.convert_to_tensor(step, dtype="int64")
    result = {"learning_rate": _learning_rate_at(optimizer, step)}
    if isinstance(optimizer, ScheduledHyperparameters):
        values = vars(optimizer)["_hyperparameters"]
        names = optimizer._hyperparameter_names
    else:
        names = [n for n in _RANGES if hasattr(optimizer, n)]
        values = {n: getattr(optimizer, n) for n in names}
    for name in names:
        value = values.get(name)
        if value is None:
            result[name] = 0.0
        elif isinstance(value, _Schedule):
            result[name] = _host_float(_clip(name, value(step)))
        elif isinstance(optimizer, ScheduledHyperparameters):
            result[name] = optimizer._variable_float(name, value)
        else:
            result[name] = _host_float(value)
    return result


def take_over(optimizer, model_variables, equivalents):
    """Makes `optimizer` an instance of its `keras_decay.optimizers` class.

    Args:
        optimizer: A Keras optimizer (not wrapped).
        model_variables: The variables it is (or will be) built with.
        equivalents: `[(keras_class, keras_decay_class), ...]`, most
            derived first.

    Returns:
        Whether the optimizer changed (a new class or new variables), i.e.
        whether a traced train function is out of date.
    """
    if isinstance(optimizer, ScheduledHyperparameters):
        return optimizer._complete(model_variables)
    for keras_class, own_class in equivalents:
        if _keras_compat.is_builtin_optimizer(optimizer, keras_class):
            break
    else:
        raise TypeError(
            "Only Keras' built-in optimizers "
            f"({', '.join(k.__name__ for k, _ in equivalents)}) and "
            "keras_decay.optimizers can be scheduled. Received: "
            f"optimizer={type(optimizer).__name__}"
        )
    # The class, not an attribute or a method, changes: the state stays.
    optimizer.__class__ = own_class
    optimizer._take_over(model_variables)
    return True
