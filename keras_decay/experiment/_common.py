"""What `compare` and `sweep` share: the log folder, the run, the output."""

import importlib
import os
import time

from keras_decay.experiment import engine as engine_lib
from keras_decay.experiment import pool
from keras_decay.experiment import report
from keras_decay.experiment.data import ExperimentError
from keras_decay.experiment.data import import_extra


def prepare_logdir(logdir, command, keep=()):
    """Creates `logdir` or checks it: a writable directory.

    `keep` names files that mean "results already here": the folder is
    refused if it holds one (the caller removes them for `--overwrite`).

    Raises:
        ExperimentError: not a directory, not writable, or holds results.
    """
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise ExperimentError(f"--logdir {logdir} is not a directory")
    try:
        os.makedirs(logdir, exist_ok=True)
        probe = os.path.join(logdir, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        reason = error.strerror or error
        raise ExperimentError(
            f"--logdir {logdir} cannot be written: {reason}"
        ) from None
    found = [
        name for name in keep if os.path.exists(os.path.join(logdir, name))
    ]
    if found:
        raise ExperimentError(
            f"--logdir {logdir} already holds results ({', '.join(found)}); "
            f"pass --overwrite to replace them, or choose another --logdir"
        )


def check_extras(command):
    """Fails fast, before any training, when an extra is missing."""
    for module in ("sklearn", "matplotlib", "optuna"):
        import_extra(module, f"keras-decay {command}")


def journal_url(logdir):
    path = os.path.abspath(os.path.join(logdir, engine_lib.JOURNAL_NAME))
    return "journal://" + path


def environment():
    """The backend and versions this process trains with (a JSON dict)."""
    import platform

    import keras

    backend = keras.backend.backend()
    module = importlib.import_module(backend)
    return {
        "backend": backend,
        "versions": {
            "keras": keras.__version__,
            backend: getattr(module, "__version__", "unknown"),
            "python": platform.python_version(),
        },
    }


def study_settings(config):
    """What a study records and every rerun must match: the training
    settings, the backend (numbers from two backends never mix) and, for a
    sweep, the pruner (a pruned and a full sweep never mix)."""
    settings = dict(config.hyperparameters(), backend=environment()["backend"])
    if config.command == "sweep":
        settings["pruner"] = config.pruner
    return settings


def train(config, plan, storage, study, say):
    """Trains the plan; returns `(results, seconds)` or raises on errors."""
    start = time.perf_counter()
    try:
        engine = pool.execute(
            storage,
            study,
            config.logdir,
            study_settings(config),
            plan,
            workers=config.workers,
            quiet=config.quiet,
            say=say,
        )
        results, missing, errors = engine.results([t.key for t in plan])
    except OSError as error:  # the journal or the log folder: a full disk
        raise engine_lib.write_error(error) from None
    seconds = time.perf_counter() - start
    if errors:
        key, message = errors[0]
        raise ExperimentError(
            f"{len(errors)} trial(s) failed in training, e.g. {key}: {message}"
        )
    if missing:
        say(
            f"{len(missing)} of {len(plan)} trial(s) not complete yet "
            f"(running on other workers): the results below cover "
            f"{len(results)}; run the command again to finish them"
        )
    return results, missing, seconds


def title(config):
    """The settings in one line, for a figure's title."""
    rates = ""
    if config.command == "compare":
        rates = (
            f"weight decay {config.weight_decay:g}, dropout "
            f"{config.dropout:g}, "
        )
    return rates + (
        f"{config.dataset}, label noise {config.label_noise:g}, SGD lr "
        f"{config.lr:g} momentum {config.momentum:g}, batch "
        f"{config.batch_size}, {config.epochs} epochs, "
        f"lr schedule {config.lr_schedule}, seeds "
        f"{','.join(map(str, config.seeds))}"
    )


def write_outputs(config, payload, figure, draw, table, say):
    """Writes results.json and the figure; prints the table."""
    results_path = os.path.join(config.logdir, "results.json")
    figure_path = os.path.join(config.logdir, figure)
    try:
        report.write_json(results_path, payload)
        draw(figure_path)
    except OSError as error:
        raise engine_lib.write_error(error) from None
    say("")
    say(table)
    say("")
    say(f"results: {results_path}")
    say(f"figure:  {figure_path}")
    say(f"TensorBoard: tensorboard --logdir {config.logdir}")
    return results_path, figure_path
