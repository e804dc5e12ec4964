"""Keras optimizers whose momentum and weight decay may be scheduled.

Drop-in subclasses of Keras' optimizers, with Keras' names, arguments and
update rules: change `keras.optimizers.SGD` to `keras_decay.optimizers.SGD`
and pass a schedule where Keras takes a float.

| class     | schedulable (float or `LearningRateSchedule`) |
| --------- | --------------------------------------------- |
| `SGD`     | `momentum`, `weight_decay`                    |
| `RMSprop` | `momentum`, `weight_decay`                    |
| `Adam`    | `beta_1`, `weight_decay`                      |
| `AdamW`   | `beta_1`, `weight_decay`                      |
| `Nadam`   | `beta_1`, `weight_decay`                      |
| `Adamax`  | `beta_1`, `weight_decay`                      |
| `Lion`    | `beta_1`, `weight_decay`                      |
| `Muon`    | `weight_decay`, `adam_weight_decay` (*)       |

(*) On a Keras whose Muon has `adam_weight_decay`: not Keras 3.10's.

A schedule is evaluated at the step being taken, exactly as Keras evaluates
`learning_rate`: `schedule(t)` with `t` the 0-based `optimizer.iterations`
before the update (with `gradient_accumulation_steps`, the same count the
learning-rate schedule sees). Its value is clipped into the
hyperparameter's range: `[0, 1]` for `momentum` and `beta_1`, `>= 0` for
`weight_decay` (a float outside it is a `ValueError` at construction). A
float is held in a scalar optimizer variable, like Keras' float learning
rate, so `optimizer.momentum = 0.5` takes effect at the next step without a
retrace. Reading `optimizer.momentum` gives the value of the step being
taken (a variable or a tensor); `optimizer.current_hyperparameters()` gives
all of them as Python floats.

Weight decay is decoupled, applied before the gradient step, for the
variables `exclude_from_weight_decay` does not exclude:
`w <- w - c_t * wd_t * mask * w`. `weight_decay_mode` chooses `c_t`
(`lr_v = lr_t * lr_mult` of the variable, `eta_max` the largest learning
rate applied so far, this step included: an optimizer variable, saved,
exposed as `optimizer.max_learning_rate`; a step with `eta_max = 0` does not
decay):

| `weight_decay_mode` | `c_t`                   | from                        |
| ------------------- | ----------------------- | --------------------------- |
| `"lr"` (default)    | `lr_v`                  | Keras, PyTorch, optax       |
| `"independent"`     | `lr_v / eta_max`        | Loshchilov & Hutter 2019; 1 |
| `"corrected"`       | `lr_v * lr_t / eta_max` | AdamC: Defazio 2025, 2      |

1: Wortsman et al. 2023 (arXiv 2309.14322). 2: arXiv 2506.02285.

`cautious_weight_decay=True` (Chen et al. 2025, arXiv 2510.12402,
Algorithm 1) sets `mask = 1[u * w >= 0]`, `u` the step the class subtracts
(`w <- w - lr_v * u`) before decay, entry by entry: the variable decays only
where its update pulls it the same way; otherwise `mask = 1`. Each class's
docstring says what its `u` is. (The sign of `u` is read from the change the
step made; a change below float resolution reads as `u = 0`: decayed.)

`SGD` and `RMSprop` always have momentum slots (a momentum schedule may
start at 0); with momentum 0 their update equals Keras' plain update
exactly.

Everything is saved with the optimizer (`get_config` serializes the
schedules), so a `.keras` checkpoint taken at any batch resumes exactly.
"""

import inspect

import keras
from keras import ops

from keras_decay import _keras_compat
from keras_decay.optimizers._groups import DecayGroups
from keras_decay.optimizers._scheduled import ScheduledHyperparameters
from keras_decay.optimizers._scheduled import _slots
from keras_decay.optimizers._scheduled import current_hyperparameters

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "Nadam",
    "RMSprop",
    "current_hyperparameters",
    "from_keras",
]

_register = keras.saving.register_keras_serializable(package="keras_decay")
_MOMENTUM = ("momentum", "weight_decay")
_BETA_1 = ("beta_1", "weight_decay")


@_register
class SGD(DecayGroups, ScheduledHyperparameters, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with a schedulable momentum and weight decay.

    The update of step `t`, with `m_t = momentum(t)`, `lr_t =
    learning_rate(t)`, `wd_t = weight_decay(t)`:

    ```python
    w = w - lr_t * wd_t * w          # if weight_decay is not None
    velocity = m_t * velocity - lr_t * g
    w = w + velocity                 # nesterov: w + m_t * velocity - lr_t * g
    ```

    Momentum slots always exist: `momentum=0.0` gives plain SGD (exactly)
    and a schedule may start at 0.

    `u` of `cautious_weight_decay`: the momentum step, `-velocity / lr_t`
    (Nesterov: `-(m_t * velocity - lr_t * g) / lr_t`).

    Args:
        learning_rate: Float or `LearningRateSchedule`. Defaults to `0.01`.
        momentum: Float in [0, 1] or `LearningRateSchedule`. Defaults to
            `0.0`.
        nesterov: Bool. Defaults to `False`.
        weight_decay: Float >= 0, `LearningRateSchedule` or `None`.
            Defaults to `None`.
        weight_decay_mode: `"lr"`, `"independent"` or `"corrected"` (see
            the module docstring). Defaults to `"lr"`.
        cautious_weight_decay: Bool. Defaults to `False`.
        **kwargs: The other arguments of `keras.optimizers.SGD`.

    Example:

    >>> optimizer = keras_decay.optimizers.SGD(
    ...     learning_rate=0.1,
    ...     momentum=keras_decay.schedules.LinearRamp(0.0, 0.9, 500),
    ... )
    """

    _hyperparameter_names = _MOMENTUM

    def build(self, variables):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, variables)
        self.momentums = _slots(self, variables, "momentum")
        self._make_hyperparameter_variables()

    def _add_slots(self, variables):
        if not self.momentums:
            self.momentums = _slots(self, variables, "momentum")

    def _update(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        momentum = ops.cast(self.momentum, variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        self.assign(
            m,
            ops.subtract(
                ops.multiply(m, momentum),
                ops.multiply(gradient, learning_rate),
            ),
        )
        if self.nesterov:
            self.assign_add(
                variable,
                ops.subtract(
                    ops.multiply(m, momentum),
                    ops.multiply(gradient, learning_rate),
                ),
            )
        else:
            self.assign_add(variable, m)


@_register
class RMSprop(DecayGroups, ScheduledHyperparameters, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with a schedulable momentum, weight decay.

    The update of step `t`, with `m_t = momentum(t)`:

    ```python
    w = w - lr_t * wd_t * w          # if weight_decay is not None
    velocity = rho * velocity + (1 - rho) * g ** 2
    increment = lr_t * g / sqrt(velocity + epsilon)   # centered: see Keras
    mom = m_t * mom + increment
    w = w - mom
    ```

    Momentum slots always exist (with momentum 0, `w - increment` exactly).

    `u` of `cautious_weight_decay`: its step, momentum included,
    `mom / lr_t`.

    Args:
        learning_rate: Float or `LearningRateSchedule`. Defaults to `0.001`.
        momentum: Float in [0, 1] or `LearningRateSchedule`. Defaults to
            `0.0`.
        weight_decay: Float >= 0, `LearningRateSchedule` or `None`.
            Defaults to `None`.
        weight_decay_mode: `"lr"`, `"independent"` or `"corrected"`.
        cautious_weight_decay: Bool. Defaults to `False`.
        **kwargs: The other arguments of `keras.optimizers.RMSprop` (`rho`,
            `epsilon`, `centered`, ...).

    Example:

    >>> optimizer = keras_decay.optimizers.RMSprop(
    ...     momentum=keras_decay.schedules.LinearRamp(0.0, 0.9, 500))
    """

    _hyperparameter_names = _MOMENTUM

    def build(self, var_list):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        self._velocities = _slots(self, var_list, "velocity")
        self._momentums = _slots(self, var_list, "momentum")
        self._average_gradients = []
        if self.centered:
            self._average_gradients = _slots(self, var_list, "average_gradient")
        self._make_hyperparameter_variables()

    def _add_slots(self, variables):
        if not self._momentums and self.centered:
            # Keras saves by position: slots added now would come after the
            # average gradients, before them in a new instance.
            raise ValueError(
                "A built centered keras.optimizers.RMSprop without momentum "
                "cannot get a momentum schedule. Compile with "
                "keras_decay.optimizers.RMSprop instead."
            )
        if not self._momentums:
            self._momentums = _slots(self, variables, "momentum")

    def _update(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        momentum = self._momentums[index]
        rho = self.rho
        self.assign(
            velocity,
            ops.add(
                ops.multiply(rho, velocity),
                ops.multiply(1 - rho, ops.square(gradient)),
            ),
        )
        if self.centered:
            average_grad = self._average_gradients[index]
            self.assign(
                average_grad,
                ops.add(
                    ops.multiply(rho, average_grad),
                    ops.multiply(1 - rho, gradient),
                ),
            )
            denominator = velocity - ops.square(average_grad) + self.epsilon
        else:
            denominator = ops.add(velocity, self.epsilon)
        increment = ops.divide(
            ops.multiply(lr, gradient), ops.sqrt(denominator)
        )
        coefficient = ops.cast(self.momentum, variable.dtype)
        self.assign(
            momentum, ops.add(ops.multiply(coefficient, momentum), increment)
        )
        self.assign_sub(variable, momentum)


def _beta_1_doc(keras_name, formula, extra="", step="its step"):
    return f"""`keras.optimizers.{keras_name}` with a schedulable `beta_1`, wd.

    Keras' update with `beta_1 = beta_1(t)`, the value of the step being
    taken (bias correction included, as in Keras and PyTorch), after the
    decoupled weight decay `w = w - lr_t * wd_t * w`:

    ```python
    {formula}
    ```
    {extra}
    `u` of `cautious_weight_decay`: {step}.

    Args:
        learning_rate: Float or `LearningRateSchedule`.
        beta_1: Float in [0, 1] or `LearningRateSchedule`.
        weight_decay: Float >= 0, `LearningRateSchedule` or `None`.
        weight_decay_mode: `"lr"`, `"independent"` or `"corrected"` (see
            `keras_decay.optimizers`). Defaults to `"lr"`.
        cautious_weight_decay: Bool. Defaults to `False`.
        **kwargs: The other arguments of `keras.optimizers.{keras_name}`.

    Example:

    >>> optimizer = keras_decay.optimizers.{keras_name}(
    ...     beta_1=keras_decay.schedules.OneCycleMomentum(1000))
    """


@_register
class Adam(DecayGroups, ScheduledHyperparameters, keras.optimizers.Adam):
    __doc__ = _beta_1_doc(
        "Adam",
        "m = m + (g - m) * (1 - beta_1)\n"
        "    w = w - lr_t * sqrt(1 - beta_2 ** (t + 1))"
        " / (1 - beta_1 ** (t + 1)) * m / (sqrt(v) + epsilon)",
        step="`m_hat / (sqrt(v_hat) + epsilon)`",
    )
    _hyperparameter_names = _BETA_1


@_register
class AdamW(DecayGroups, ScheduledHyperparameters, keras.optimizers.AdamW):
    __doc__ = _beta_1_doc(
        "AdamW",
        "w = w - lr_t * wd_t * w\n    (then Adam's update)",
        "`weight_decay` defaults to `0.004` and may not be `None`.\n",
        step="`m_hat / (sqrt(v_hat) + epsilon)`",
    )
    _hyperparameter_names = _BETA_1


@_register
class Nadam(DecayGroups, ScheduledHyperparameters, keras.optimizers.Nadam):
    __doc__ = _beta_1_doc(
        "Nadam",
        "u_t = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))  # Keras' Nadam",
        step="its Nesterov step (the update divided by `lr_t`)",
    )
    _hyperparameter_names = _BETA_1

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras' Nadam, with `beta_1` cast to the product's dtype (Keras
        # multiplies a bfloat16 variable by the Python float).
        self._begin_step(learning_rate)
        dtype = self._u_product.dtype
        step = ops.cast(self.iterations + 1, dtype)
        self.assign(
            self._u_product,
            self._u_product
            * ops.cast(self.beta_1, dtype)
            * (1.0 - 0.5 * ops.power(0.96, step)),
        )
        keras.optimizers.Optimizer._backend_update_step(
            self, grads, trainable_variables, learning_rate
        )


@_register
class Adamax(DecayGroups, ScheduledHyperparameters, keras.optimizers.Adamax):
    __doc__ = _beta_1_doc(
        "Adamax",
        "m = m + (g - m) * (1 - beta_1)\n"
        "    w = w - lr_t * m / ((1 - beta_1 ** (t + 1)) * (u + epsilon))",
        step="`m_hat / (u + epsilon)`",
    )
    _hyperparameter_names = _BETA_1


@_register
class Lion(DecayGroups, ScheduledHyperparameters, keras.optimizers.Lion):
    __doc__ = _beta_1_doc(
        "Lion",
        "w = w - lr_t * sign(beta_1 * m + (1 - beta_1) * g)\n"
        "    m = beta_2 * m + (1 - beta_2) * g",
        "A float `beta_1` must lie in (0, 1] (Keras' check).\n",
        step="the sign step `sign(beta_1 * m + (1 - beta_1) * g)`",
    )
    _hyperparameter_names = _BETA_1
    _open_below = ("beta_1",)


# Keras' Muon with `adam_weight_decay` (Keras 3.15.1 checked). Keras 3.10's
# first Muon is left out: it cannot train on TensorFlow itself (its slots are
# looked up by `variable.path`, which the traced variables lack:
# "'ResourceVariable' object has no attribute 'path'", checked with
# `keras.optimizers.Muon()` and `fit`), and it has no `adam_weight_decay`.
_HAS_MUON = hasattr(keras.optimizers, "Muon") and "adam_weight_decay" in (
    inspect.signature(keras.optimizers.Muon.__init__).parameters
)

if _HAS_MUON:

    @_register
    class Muon(DecayGroups, ScheduledHyperparameters, keras.optimizers.Muon):
        """`keras.optimizers.Muon` with schedulable weight decays.

        Keras' Muon (Jordan et al. 2024, "Muon: An optimizer for hidden
        layers in neural networks"), with Keras' defaults and arguments.
        Which variables take which step is Keras' rule
        (`_should_use_adamw`): the Muon step (momentum, Nesterov by
        default, then `ns_steps` Newton-Schulz iterations that
        orthogonalize it, scaled by `rms_rate`) for 2-D variables; the
        AdamW step (`adam_beta_1`, `adam_beta_2`, learning rate times
        `adam_lr_ratio`) for every variable that is not 2-D (biases,
        normalization scales, convolution kernels), for those whose path
        contains "embedding" (with `exclude_embeddings=True`) and for those
        matching a pattern of `exclude_layers`.

        The decoupled decay of step `t` comes first, as in Keras:
        `w = w - c_t * wd_t * w` with `wd_t = weight_decay(t)` for the Muon
        variables and `adam_weight_decay(t)` for the AdamW ones (both
        floats or schedules, Keras' defaults), `c_t` as
        `weight_decay_mode` says, and the learning rate before
        `adam_lr_ratio`, as in Keras. With `decay_exclude="auto"` (the
        default) variables with `ndim <= 1` are not decayed; pass
        `decay_exclude=None` for Keras' rule.

        For `cautious_weight_decay`, `u` is the orthogonalized (and
        `rms_rate`-scaled) Muon update of a Muon variable, and the AdamW
        step `m_hat / (sqrt(v_hat) + epsilon)` of an AdamW variable.

        Args:
            learning_rate: Float or `LearningRateSchedule`. Defaults to
                `0.001`.
            weight_decay: Float >= 0, `LearningRateSchedule` or `None`:
                the decay of the Muon variables. Defaults to `0.004`.
            adam_weight_decay: Float >= 0, `LearningRateSchedule` or
                `None`: the decay of the AdamW variables. Defaults to
                `0.004`.
            weight_decay_mode: `"lr"`, `"independent"` or `"corrected"`.
            cautious_weight_decay: Bool. Defaults to `False`.
            **kwargs: The other arguments of `keras.optimizers.Muon`.

        Example:

        >>> optimizer = keras_decay.optimizers.Muon(
        ...     learning_rate=0.02,
        ...     weight_decay=keras_decay.schedules.LinearRamp(0.0, 0.1, 500),
        ...     weight_decay_mode="independent",
        ... )
        """

        _hyperparameter_names = ("weight_decay", "adam_weight_decay")

        def _weight_decay_name(self, model_variable):
            if self._should_use_adamw(model_variable):
                return "adam_weight_decay"
            return "weight_decay"

    __all__.append("Muon")


# Keras class -> ours, most derived first (AdamW subclasses Adam).
EQUIVALENTS = [
    (keras.optimizers.AdamW, AdamW),
    (keras.optimizers.Adam, Adam),
    (keras.optimizers.Nadam, Nadam),
    (keras.optimizers.Adamax, Adamax),
    (keras.optimizers.Lion, Lion),
    (keras.optimizers.RMSprop, RMSprop),
    (keras.optimizers.SGD, SGD),
]
if _HAS_MUON:
    EQUIVALENTS.append((keras.optimizers.Muon, Muon))


def from_keras(optimizer):
    """A new `keras_decay.optimizers` optimizer configured as a Keras one.

    `keras_decay.optimizers.from_keras(keras.optimizers.SGD(0.1,
    momentum=0.9))` is `keras_decay.optimizers.SGD(0.1, momentum=0.9,
    decay_exclude=None)`: the same `get_config()`, and Keras' rule for
    weight decay (every variable decayed, except what
    `exclude_from_weight_decay` excludes: call it on the new optimizer, Keras
    does not save it). The argument is left as it is; its state (step count,
    slots) is not copied: convert before `compile`. A `LossScaleOptimizer`
    is converted around its inner optimizer.

    Args:
        optimizer: One of Keras' built-in `SGD`, `RMSprop`, `Adam`, `AdamW`,
            `Nadam`, `Adamax`, `Lion` or `Muon` (where defined; not a
            subclass: its own code would be lost), or a
            `keras_decay.optimizers` one (copied the same way).

    Returns:
        The new optimizer.

    Raises:
        TypeError: Another class.

    Example:

    >>> optimizer = keras_decay.optimizers.from_keras(
    ...     keras.optimizers.AdamW(1e-3, weight_decay=0.05))
    >>> type(optimizer).__module__
    'keras_decay.optimizers'
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        config = optimizer.get_config()
        return keras.optimizers.LossScaleOptimizer(
            from_keras(optimizer.inner_optimizer),
            initial_scale=config["initial_scale"],
            dynamic_growth_steps=config["dynamic_growth_steps"],
        )
    if isinstance(optimizer, ScheduledHyperparameters):
        return type(optimizer).from_config(optimizer.get_config())
    for keras_class, own_class in EQUIVALENTS:
        if _keras_compat.is_builtin_optimizer(optimizer, keras_class):
            config = dict(optimizer.get_config(), decay_exclude=None)
            return own_class.from_config(config)
    names = ", ".join(f"keras.optimizers.{k.__name__}" for k, _ in EQUIVALENTS)
    raise TypeError(
        "Invalid value received for argument `optimizer`. Expected one of "
        f"{names} or a keras_decay.optimizers optimizer (a subclass of a "
        "Keras optimizer: subclass the keras_decay.optimizers class "
        f"instead). Received: optimizer={type(optimizer).__name__}"
    )
