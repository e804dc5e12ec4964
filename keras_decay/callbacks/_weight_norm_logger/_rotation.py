"""The logger's `rotation=True` statistics: how far each output unit turns
in one step, and the angle the rotational equilibrium predicts.

Kosson, Messmer, Jaggi, "Rotational Equilibrium: How Weight Decay Balances
Learning Across Neural Networks", ICML 2024 (arXiv 2305.17212); formulas as
in the authors' code (epfml/REQ, `adamw_etar_func`, `sgdm_etar_func`,
`lion_etar_func`).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_decay import rules

# The rule that predicts each variable's equilibrium angle (module doc of
# `equilibrium_angle`); None: no formula applies.
DECOUPLED, SGD, LION = "decoupled", "sgd", "lion"


def _copy(value):
    """A copy of a variable's value in a buffer of its own (the next train
    step may update the variable's buffer in place, or donate it)."""
    if keras.backend.backend() == "torch":
        return value.detach().clone()
    return value * 1


def _unit_chords(w, previous):
    """Per output unit `j` (last-axis slice), with `keras.ops` in float32:
    `sum((w_j / norm(w_j) - p_j / norm(p_j))**2)`, and
    `norm(w_j) * norm(p_j)` (0: the unit has no angle)."""
    units = w.shape[-1]
    w = ops.reshape(ops.cast(w, "float32"), (-1, units))
    p = ops.reshape(ops.cast(previous, "float32"), (-1, units))
    a = ops.sqrt(ops.sum(ops.square(w), axis=0))
    b = ops.sqrt(ops.sum(ops.square(p), axis=0))
    safe_a = ops.where(a == 0, ops.ones_like(a), a)
    safe_b = ops.where(b == 0, ops.ones_like(b), b)
    chords = ops.sum(ops.square(w / safe_a - p / safe_b), axis=0)
    return chords, a * b


def unit_angles(chords):
    """The angle of each unit from `_unit_chords`, float64, on the host:
    `2 * arcsin(sqrt(chord) / 2)`, which equals `arccos(clip(cos, -1, 1))`
    and keeps small angles accurate in float32 (a float32 cosine near 1
    does not)."""
    chords = np.asarray(chords, np.float64)
    return 2.0 * np.arcsin(np.clip(np.sqrt(chords) / 2.0, 0.0, 1.0))


class Rotation:
    """The mean unit angle of each variable with `ndim > 1` over one step.

    `capture()` copies those variables (at the start of the step to log);
    `angles()` returns, per variable, `(sum of unit angles, units with an
    angle)` against that copy, and drops the copy.

    Args:
        variables: The logger's variables.
    """

    def __init__(self, variables):
        self.variables = list(variables)
        self.indices = [
            i for i, v in enumerate(self.variables) if len(v.shape) > 1
        ]
        self._previous = None
        if keras.backend.backend() == "jax":
            import jax

            self._chords = jax.jit(_unit_chords)
        else:
            self._chords = _unit_chords

    @property
    def captured(self):
        return self._previous is not None

    def capture(self):
        values = [self.variables[i].value for i in self.indices]
        if keras.backend.backend() == "torch":
            import torch

            with torch.no_grad():
                self._previous = [_copy(v) for v in values]
        else:
            self._previous = [_copy(v) for v in values]

    def drop(self):
        self._previous = None

    def angles(self):
        """`(sums, counts)`: float64 arrays over all variables (0 for those
        with `ndim <= 1`): the sum of the unit angles and the number of
        units with both norms positive (NaN sum: a non-finite entry)."""
        sums = np.zeros(len(self.variables))
        counts = np.zeros(len(self.variables))
        rows = []
        if keras.backend.backend() == "torch":
            import torch

            with torch.no_grad():
                rows = self._rows()
        else:
            rows = self._rows()
        for i, (chords, norms) in zip(self.indices, rows):
            # A unit with a zero norm has no angle; a non-finite entry
            # (a NaN norm or chord) makes the sum NaN.
            valid = np.asarray(ops.convert_to_numpy(norms)) != 0
            angle = unit_angles(ops.convert_to_numpy(chords))
            sums[i] = np.sum(angle[valid])
            counts[i] = np.count_nonzero(valid)
        self._previous = None
        return sums, counts

    def _rows(self):
        return [
            self._chords(self.variables[i].value, previous)
            for i, previous in zip(self.indices, self._previous)
        ]


def equilibrium_rule(optimizer, decayed, l2):
    """Which formula of `equilibrium_angle` predicts a variable, or None.

    `decayed`: whether the optimizer's decoupled decay applies to it;
    `l2`: the gradient coefficient of its L2 regularizer (0 without).
    """
    if not decayed and l2 == 0.0:
        return None  # No decay: no equilibrium.
    if isinstance(optimizer, keras.optimizers.SGD):
        return None if optimizer.nesterov else SGD
    if l2 != 0.0:
        return None  # Coupled L2 through an adaptive or sign step.
    if isinstance(optimizer, keras.optimizers.Adam):  # AdamW included
        return DECOUPLED
    if isinstance(optimizer, keras.optimizers.Lion):
        return LION
    return None


def equilibrium_angle(rule, decoupled, coupled, momentum, beta_2=None):
    """The predicted equilibrium angle of one step (radians).

    `decoupled = c * wd * decay_mult` is the per-step factor of the
    decoupled decay `w <- w - decoupled * w`, `coupled = lr_v * l2` that of
    an L2 gradient `l2 * w` (`keras_decay.rules.step_decay`), `momentum`
    SGD's momentum or `beta_1`:

    ```python
    # DECOUPLED (Adam, AdamW): sqrt(2 * decoupled * (1 - beta_1) / (1 + beta_1))
    # SGD: sqrt(2 * (decoupled * (1 - momentum) + coupled) / (1 + momentum))
    # LION: sqrt(pi / 2) * sqrt(2 * decoupled)
    #       * sqrt((1 - beta_1)**2 + beta_1**2 * (1 - beta_2) / (1 + beta_2))
    ```
    """
    if rule == DECOUPLED:
        return math.sqrt(2.0 * decoupled * (1.0 - momentum) / (1.0 + momentum))
    if rule == SGD:
        return math.sqrt(
            2.0 * (decoupled * (1.0 - momentum) + coupled) / (1.0 + momentum)
        )
    spread = (1.0 - momentum) ** 2 + momentum**2 * (1.0 - beta_2) / (
        1.0 + beta_2
    )
    return (
        math.sqrt(math.pi / 2.0)
        * math.sqrt(2.0 * decoupled)
        * math.sqrt(spread)
    )


def multipliers(optimizer, variables):
    """`(decay_mult, lr_mult)` float64 arrays of the variables: keras_decay's
    per-variable multipliers, 0 decay where the variable is excluded from
    decay (Keras' `exclude_from_weight_decay` too); 1 for a Keras
    optimizer."""
    from keras_decay._keras_compat import uses_weight_decay

    decay = getattr(optimizer, "_decay_multiplier", None)
    lr = getattr(optimizer, "_lr_multiplier", None)
    decays = [
        0.0
        if not uses_weight_decay(optimizer, v)
        else (1.0 if decay is None else decay(v))
        for v in variables
    ]
    rates = [1.0 if lr is None else lr(v) for v in variables]
    return np.array(decays, np.float64), np.array(rates, np.float64)


class Equilibrium:
    """The predicted angle of each variable with a rule, at a step.

    Args:
        optimizer: The (unwrapped) optimizer, built.
        variables: The logger's variables.
        indices: Those with `ndim > 1`.
    """

    def __init__(self, optimizer, variables, indices):
        self.optimizer = optimizer
        decay, lr = multipliers(optimizer, variables)
        has_decay = getattr(optimizer, "weight_decay", None) is not None
        self.rows = []  # (variable index, rule, decay_mult, lr_mult, l2)
        for i in indices:
            l2 = rules.l2_coefficient(
                getattr(variables[i], "regularizer", None)
            )
            rule = equilibrium_rule(optimizer, has_decay and decay[i] > 0, l2)
            if rule is not None:
                self.rows.append((i, rule, decay[i], lr[i], l2))

    def angles(self, current):
        """`{variable index: predicted angle}` at `current` (the optimizer's
        `current_hyperparameters` of the logged step)."""
        momentum = current.get("momentum") or 0.0
        beta_2 = getattr(self.optimizer, "beta_2", None)
        out = {}
        for i, rule, decay_mult, lr_mult, l2 in self.rows:
            decoupled, coupled = rules.step_decay(
                self.optimizer,
                current,
                decay_mult=decay_mult,
                lr_mult=lr_mult,
                l2=l2,
            )
            out[i] = equilibrium_angle(
                rule, decoupled, coupled, momentum, beta_2
            )
        return out
