"""Keras' own optimizer tests, run against `keras_decay.optimizers`.

Keras ships its tests in site-packages (`keras/src/optimizers/*_test.py`).
Each file is loaded here as it is, with the class it tests replaced by ours
(with `decay_exclude=None`: Keras' rule, every variable decayed), so that a
drop-in class passes what Keras' class passes. Where ours differs on
purpose, the test is marked with the reason (a strict xfail: it must keep
failing, or the mark goes).
"""

import importlib.util
import os

import keras
import pytest

from keras_decay import optimizers

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

_FILES = {
    "SGD": "sgd_test",
    "RMSprop": "rmsprop_test",
    "Adam": "adam_test",
    "AdamW": "adamw_test",
    "Nadam": "nadam_test",
    "Adamax": "adamax_test",
    "Lion": "lion_test",
    "Muon": "muon_test",  # where keras_decay has Muon (not Keras 3.10)
}

# Deliberate differences: (class, test) -> why ours differs.
_SLOTS = (
    "SGD and RMSprop always have momentum slots and a variable per float "
    "hyperparameter (a schedule may be given later): more optimizer "
    "variables than Keras counts"
)
_VARIABLES = (
    "a float hyperparameter is held in an optimizer variable (settable "
    "without a retrace): one more optimizer variable than Keras counts"
)
_MESSAGE = (
    "the same ValueError in keras_decay's message template (names the "
    "argument, states the range, echoes the value), not Keras' wording"
)
_DECAY_IN_UPDATE = (
    "the decoupled decay is part of each variable's update_step (decay "
    "groups, decay modes, cautious decay), not of the private "
    "_apply_weight_decay: calling one of them alone differs by the decay "
    "(Muon decays by default)"
)
DIFFERENCES = {
    ("Muon", "test_adamw_single_step"): _DECAY_IN_UPDATE,
    ("Muon", "test_muon_weight_decay"): _DECAY_IN_UPDATE,
    ("Muon", "test_adamw_weight_decay"): _DECAY_IN_UPDATE,
    ("SGD", "test_single_step"): _SLOTS,
    ("SGD", "test_invalid_momentum"): _MESSAGE,
    ("Lion", "test_invalid_beta_1"): _MESSAGE,
}


def _keras_rule(cls):
    """Makes a `cls` with Keras' weight-decay rule as the default."""

    def make(*args, **kwargs):
        kwargs.setdefault("decay_exclude", None)
        return cls(*args, **kwargs)

    return make


def _load(name, file):
    path = os.path.join(
        os.path.dirname(keras.__file__), "src", "optimizers", f"{file}.py"
    )
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location(f"keras_{file}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(optimizers, name):
        return None
    setattr(module, name, _keras_rule(getattr(optimizers, name)))
    return module


def _mark_differences(name, case):
    for (cls, test), reason in DIFFERENCES.items():
        if cls == name and hasattr(case, test):  # older Keras: fewer tests
            method = getattr(case, test)
            setattr(
                case,
                test,
                pytest.mark.xfail(strict=True, reason=reason)(method),
            )
    return case


def _collect():
    found = False
    for name, file in _FILES.items():
        module = _load(name, file)
        if module is None:
            continue
        for attribute, value in vars(module).items():
            if isinstance(value, type) and attribute.endswith("Test"):
                globals()[f"Keras{attribute}"] = _mark_differences(name, value)
                found = True
    if not found:
        pytest.skip(
            f"Keras {keras.__version__} ships no optimizer tests "
            "(keras/src/optimizers/*_test.py)",
            allow_module_level=True,
        )


_collect()
