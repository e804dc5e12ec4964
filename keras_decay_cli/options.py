"""Every option of `keras-decay compare` and `keras-decay sweep`, once.

Each `Option` holds its name, default, help text and check; the argparse
parsers (`keras_decay_cli.parser`), the Python entry point (`settings`) and
the immutable `Settings` records are all built from `OPTIONS`, so a default
or a bound is written in one place.
A check takes the value (already parsed from text on the command line) and
returns it normalised, or raises `ValueError` / `TypeError` in Keras'
message template, naming the option's Python name.

No Keras or TensorFlow here, and no `keras_decay` package import (which
registers every class with Keras): `--help` and argument errors stay fast.
"""

import dataclasses
import datetime
import math
import os

from _keras_decay_validation import check_choice
from _keras_decay_validation import check_float
from _keras_decay_validation import check_int
from _keras_decay_validation import check_positive_int
from _keras_decay_validation import fail

__all__ = [
    "COMMANDS",
    "DATASETS",
    "LR_SCHEDULES",
    "OPTIONS",
    "PRUNERS",
    "RUNS",
    "Option",
    "Settings",
    "Values",
    "options_for",
    "settings",
]

COMMANDS = ("compare", "sweep")
# run name -> (uses WeightDecay on the kernels, uses Dropout before the head)
RUNS = {
    "plain": (False, False),
    "l2": (True, False),
    "dropout": (False, True),
    "l2_dropout": (True, True),
}
DEFAULT_RUNS = ("plain", "l2", "l2_dropout")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
LR_SCHEDULES = ("none", "exponential", "step")
PRUNERS = ("none", "median", "hyperband")
STORAGE_SCHEMES = ("postgresql", "mysql", "sqlite", "journal")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: `--name-with-dashes` on the command line.

    Args:
        name: Python name (`weight_decay` is `--weight-decay`).
        default: The value when the option is not given (already checked).
        help: One line for `--help`.
        check: `check(value) -> value`, raising `ValueError`/`TypeError`;
            `None` accepts the value as it is.
        parse: Text to value before `check` on the command line.
        commands: The commands that take the option.
        metavar: What `--help` shows for the value.
        flag: A switch without a value (`store_true`).
        training: A training setting, the same for every trial of a run
            (what `hyperparameters` returns and a study records); not an
            output, execution or per-trial setting.
    """

    name: str
    default: object
    help: str
    check: object = None
    parse: object = str
    commands: tuple = COMMANDS
    metavar: str = None
    flag: bool = False
    training: bool = False

    @property
    def flag_name(self):
        return "--" + self.name.replace("_", "-")

    def validate(self, value):
        return value if self.check is None else self.check(value)


@dataclasses.dataclass(frozen=True)
class Values:
    """The values of a swept hyperparameter: a grid, a range or `auto`.

    `grid` is a tuple of values; `low`/`high` a range to draw `--trials`
    values from (log-uniform for the weight decay, uniform for dropout);
    `auto` (the weight decay only) a grid the sweep derives from the
    timescale rule (`keras_decay.rules.weight_decay_range`).
    """

    grid: tuple = None
    low: float = None
    high: float = None
    auto: bool = False

    @property
    def is_range(self):
        return self.grid is None and not self.auto

    def __str__(self):
        if self.auto:
            return "auto"
        if self.is_range:
            return f"{self.low:g}:{self.high:g}"
        return ",".join(f"{v:g}" for v in self.grid)


# -- parsers and checks (one per kind of value) -------------------------------


def _number(text):
    """`"3"` -> 3, `"2.5"` -> 2.5; other text is returned for the check."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _bounded(name, **bounds):
    return lambda value: check_float(value, name, **bounds)


def _positive_int(name):
    return lambda value: check_positive_int(value, name)


def _choice(name, choices):
    return lambda value: check_choice(value, name, choices)


def _split(value):
    """The items of a comma-separated list; an empty item (`"0,,1e-3"`, a
    trailing comma) is a `ValueError`: it is a typo, not a value."""
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if any(not part for part in parts):
            raise ValueError(f"an empty item in {value!r}")
        return parts
    return list(value)


def check_runs(value):
    """Returns a tuple of distinct run names from `RUNS`."""
    try:
        runs = tuple(_split(value))
    except ValueError:
        runs = ()
    if not runs or len(set(runs)) != len(runs) or set(runs) - set(RUNS):
        fail(
            ValueError,
            "runs",
            "a non-empty comma-separated subset of " + ",".join(RUNS),
            ",".join(map(str, runs)),
        )
    return runs


def check_seeds(value):
    """Returns a tuple of distinct integer seeds >= 0."""
    expected = "distinct integers >= 0, comma-separated (e.g. 1,2,3)"
    try:
        parts = _split(value) if not isinstance(value, int) else [value]
        seeds = tuple(check_int(_number(p), "seeds", low=0) for p in parts)
    except (TypeError, ValueError):
        seeds = None
    if not seeds or len(set(seeds)) != len(seeds):
        fail(ValueError, "seeds", expected, value)
    return seeds


def _values_check(name, low, high, high_inclusive, log, auto=False):
    """A check for a grid (`"0,1e-3"`), a range (`"1e-5:1e-1"`) or, with
    `auto`, the word `auto`."""
    bounds = f"in [{low}, {high}{']' if high_inclusive else ')'}"
    expected = (
        f"comma-separated values {bounds} (a grid){',' if auto else ' or'} "
        f"LOW:HIGH with {'0 < ' if log else ''}LOW < HIGH (a range)"
        + (" or auto (from the timescale rule)" if auto else "")
    )

    def number(text):
        value = _number(text.strip()) if isinstance(text, str) else text
        return check_float(
            value, name, low=low, high=high, high_inclusive=high_inclusive
        )

    def check(value):
        if isinstance(value, Values):
            value = str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if auto and isinstance(value, str) and value.strip() == "auto":
            return Values(auto=True)
        try:
            if isinstance(value, str) and ":" in value:
                low_text, _, high_text = value.partition(":")
                start, stop = number(low_text), number(high_text)
                if not start < stop or (log and start <= 0):
                    raise ValueError
                return Values(low=start, high=stop)
            grid = tuple(dict.fromkeys(number(v) for v in _split(value)))
            if not grid:
                raise ValueError
            return Values(grid=grid)
        except (TypeError, ValueError):
            fail(ValueError, name, expected, value)

    return check


# More values than this is a typo (each value trains a model per seed), and
# the stratified plan of 10^8 values would take minutes to build.
MAX_TRIALS = 10_000


def check_trials(value):
    """Returns the number of range values to draw, 1 to `MAX_TRIALS`."""
    trials = check_positive_int(value, "trials")
    if trials > MAX_TRIALS:
        fail(ValueError, "trials", f"an integer in [1, {MAX_TRIALS}]", value)
    return trials


def check_logdir(value):
    """Returns `value` as a str path; existence is checked before training."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        fail(TypeError, "logdir", "a non-empty path", value)
    return os.fspath(value)


def check_storage(value):
    """Returns an Optuna storage URL (`postgresql://...`) or `None`."""
    if value is None:
        return None
    text = str(value)
    scheme, _, rest = text.partition("://")
    scheme = scheme.split("+")[0]
    if "://" not in text or scheme not in STORAGE_SCHEMES:
        fail(
            ValueError,
            "storage",
            "an Optuna storage URL: "
            + ", ".join(f"{s}://..." for s in STORAGE_SCHEMES),
            value,
        )
    if scheme == "sqlite" and rest.strip("/") in ("", ":memory:"):
        # A database in one process's memory: the worker processes (and
        # other machines) would each see an empty study of their own.
        fail(
            ValueError,
            "storage",
            "a storage other processes can open (sqlite:///path/to/file.db, "
            "not an in-memory database)",
            value,
        )
    return text


def check_study(value):
    text = str(value)
    if not text.strip() or "\n" in text:
        fail(ValueError, "study", "a non-empty one-line name", value)
    return text


# -- the options --------------------------------------------------------------

_PROBABILITY = {"low": 0.0, "high": 1.0, "high_inclusive": False}

OPTIONS = (
    Option(
        "dataset",
        "digits",
        "digits is bundled with scikit-learn; the others are downloaded by "
        "keras.datasets (internet the first time)",
        _choice("dataset", DATASETS),
        metavar="{" + ",".join(DATASETS) + "}",
        training=True,
    ),
    Option(
        "train_fraction",
        1.0,
        "stratified share of the training split used for training",
        _bounded("train_fraction", low=0.0, high=1.0, low_inclusive=False),
        _number,
        training=True,
    ),
    Option(
        "label_noise",
        0.3,
        "share of the training labels replaced by a different random "
        "class (validation labels stay clean)",
        _bounded("label_noise", **_PROBABILITY),
        _number,
        training=True,
    ),
    Option(
        "epochs",
        30,
        "epochs per run",
        _positive_int("epochs"),
        _number,
        training=True,
    ),
    Option(
        "batch_size",
        64,
        "mini-batch size",
        _positive_int("batch_size"),
        _number,
        training=True,
    ),
    Option(
        "lr",
        0.1,
        "SGD learning rate (the initial rate with a schedule)",
        _bounded("lr", low=0.0, low_inclusive=False),
        _number,
        training=True,
    ),
    Option(
        "momentum",
        0.9,
        "SGD momentum",
        _bounded("momentum", **_PROBABILITY),
        _number,
        training=True,
    ),
    Option(
        "lr_schedule",
        "none",
        "exponential: x0.9 per epoch; step: halved every 5 epochs",
        _choice("lr_schedule", LR_SCHEDULES),
        metavar="{" + ",".join(LR_SCHEDULES) + "}",
        training=True,
    ),
    Option(
        "weight_decay",
        5e-3,
        "WeightDecay rate on every kernel (penalty rate/2*sum(w**2)) in "
        "the l2 runs",
        _bounded("weight_decay", low=0.0),
        _number,
        commands=("compare",),
    ),
    Option(
        "dropout",
        0.5,
        "dropout rate before the classifier in the dropout runs",
        _bounded("dropout", **_PROBABILITY),
        _number,
        commands=("compare",),
    ),
    Option(
        "runs",
        DEFAULT_RUNS,
        "comma-separated runs out of " + ",".join(RUNS),
        check_runs,
        commands=("compare",),
        metavar="RUN,...",
    ),
    Option(
        "weight_decay",
        Values(grid=(0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
        "weight decay rates: a grid 0,1e-3,..., a log-uniform range "
        "LOW:HIGH with --trials, or auto: 0 and the rates whose timescale "
        "runs from 10x to 1/10 of the steps trained, 2 a decade",
        _values_check("weight_decay", 0.0, math.inf, True, log=True, auto=True),
        commands=("sweep",),
        metavar="GRID|LOW:HIGH",
    ),
    Option(
        "dropout",
        Values(grid=(0.0,)),
        "dropout rates before the classifier: a grid or a uniform range "
        "LOW:HIGH with --trials",
        _values_check("dropout", 0.0, 1.0, False, log=False),
        commands=("sweep",),
        metavar="GRID|LOW:HIGH",
    ),
    Option(
        "trials",
        None,
        "with a LOW:HIGH range: how many values to draw (stratified, "
        "reproducible); each is trained on every seed",
        lambda v: None if v is None else check_trials(v),
        _number,
        commands=("sweep",),
        metavar="N",
    ),
    Option(
        "pruner",
        "none",
        "stop a weight decay early on Optuna's MedianPruner or "
        "HyperbandPruner, judged each epoch on the mean val accuracy over "
        "its seeds (trained together in one trial); none by default: on "
        "the README's sweep median saved 19 %% of the epochs, hyperband "
        "pruned the best λ (early accuracy favours weak decay)",
        _choice("pruner", PRUNERS),
        commands=("sweep",),
        metavar="{" + ",".join(PRUNERS) + "}",
    ),
    Option(
        "seeds",
        (1, 2, 3),
        "seeds: every run is trained on each (initial weights, batch "
        "order, dropout masks, split, label noise)",
        check_seeds,
        metavar="S,...",
    ),
    Option(
        "workers",
        2,
        "local worker processes training trials at the same time; 0 "
        "trains them one after another in this process (no start-up, as "
        "in a notebook)",
        lambda v: check_int(v, "workers", low=0, expected="an integer >= 0"),
        _number,
        metavar="N",
    ),
    Option(
        "storage",
        None,
        "Optuna storage URL shared by several machines, e.g. "
        "postgresql://user@host/db (default: a journal file in --logdir)",
        check_storage,
        commands=("sweep",),
        metavar="URL",
    ),
    Option(
        "study",
        "keras-decay-sweep",
        "study name in the storage; workers with the same --storage and "
        "--study share the trials",
        check_study,
        commands=("sweep",),
        metavar="NAME",
    ),
    Option(
        "logdir",
        None,
        "output folder (default: logs/compare-<timestamp>, logs/sweep)",
        check_logdir,
        metavar="DIR",
    ),
    Option(
        "overwrite",
        False,
        "replace the results already in --logdir",
        commands=("compare",),
        flag=True,
    ),
    Option("quiet", False, "print only errors", flag=True),
)


def options_for(command):
    """The `Option`s of one command, in `--help` order."""
    check_choice(command, "command", COMMANDS)
    return tuple(o for o in OPTIONS if command in o.commands)


class Settings:
    """The checked options of one command: an immutable record.

    Made by `settings(command, ...)`; an option is an attribute
    (`config.epochs`), and assigning one is an `AttributeError`: a changed
    run is a new record, `config.replace(epochs=2)`, checked the same way.
    The fields are the command's `OPTIONS`, so nothing here declares them
    again.
    """

    __slots__ = ("command", "_values")

    def __init__(self, command, values):
        names = tuple(o.name for o in options_for(command))
        if tuple(values) != names:
            raise TypeError(
                f"Settings of `{command}` take exactly {', '.join(names)}. "
                f"Received: {', '.join(values)}"
            )
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return object.__getattribute__(self, "_values")[name]
        except KeyError:
            raise AttributeError(
                f"`{self.command}` has no option {name!r}"
            ) from None

    def __setattr__(self, name, value):
        raise AttributeError(
            f"Settings are immutable: use .replace({name}=...) for a "
            "changed copy"
        )

    __delattr__ = __setattr__

    def __eq__(self, other):
        if not isinstance(other, Settings):
            return NotImplemented
        return (self.command, self._values) == (other.command, other._values)

    def __hash__(self):
        return hash((self.command, tuple(map(repr, self._values.items()))))

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Settings({self.command!r}, {fields})"

    def __reduce__(self):
        return (Settings, (self.command, self._values))

    def as_dict(self):
        """Every option's value, by Python name (a new dict)."""
        return dict(self._values)

    def replace(self, **changes):
        """A copy with `changes` checked as `settings` checks them."""
        unknown = sorted(set(changes) - set(self._values))
        if unknown:
            raise TypeError(
                f"Unknown option for `{self.command}`: {', '.join(unknown)}."
                f" Expected some of: {', '.join(self._values)}"
            )
        return settings(self.command, **dict(self._values, **changes))

    def hyperparameters(self):
        """The training settings (the options declared `training`): the
        same for every trial of a run; what a study records."""
        return {
            option.name: self._values[option.name]
            for option in options_for(self.command)
            if option.training
        }


def settings(command, **values):
    """The checked `Settings` of `command`, defaults filled.

    Unknown names are a `TypeError`; a bad value a `ValueError` naming it.
    With `logdir=None`, `compare` gets `logs/compare-<timestamp>` and
    `sweep` `logs/sweep` (a rerun of a sweep finds its journal there).
    """
    options = {o.name: o for o in options_for(command)}
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise TypeError(
            f"Unknown option for `{command}`: {', '.join(unknown)}. "
            f"Expected some of: {', '.join(options)}"
        )
    result = {}
    for name, option in options.items():
        value = values.get(name, option.default)
        result[name] = option.validate(value) if name in values else value
    if command == "sweep":
        ranged = [n for n in ("weight_decay", "dropout") if result[n].is_range]
        if ranged and result["trials"] is None:
            fail(
                ValueError,
                "trials",
                f"a number of values to draw from the range of "
                f"{' and '.join(ranged)}",
                None,
            )
    if result["logdir"] is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"compare-{stamp}" if command == "compare" else "sweep"
        result["logdir"] = os.path.join("logs", name)
    return Settings(command, result)
