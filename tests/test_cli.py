"""Tests for the `keras-decay` command line (keras_decay_cli)."""

import json
import os
import runpy
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

import keras_decay_cli as cli
from keras_decay_cli import options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs the CLI in a fresh interpreter, then prints whether a backend or
# Keras was imported.
_PROBE = """
import sys
import keras_decay_cli
try:
    keras_decay_cli.main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("tensorflow", "keras", "jax", "torch", "optuna", "matplotlib")
print("IMPORTED", sorted({m.split(".")[0] for m in sys.modules} & set(heavy)))
"""


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["compare", "--help"],
        ["sweep", "--help"],
        ["compare", "--dropout", "2"],
        ["sweep", "--weight-decay", "1e-5:"],
        ["sweep", "--storage", "redis://localhost"],
    ],
)
def test_help_and_argument_errors_import_no_backend(argv):
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "IMPORTED []" in completed.stdout, completed.stdout[-400:]
    assert "Traceback" not in completed.stderr


@pytest.mark.backend_independent
def test_help_lists_every_declared_option_with_its_default(capsys):
    for command in options.COMMANDS:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for option in options.options_for(command):
            assert option.flag_name in out
        assert "(default: 1,2,3)" in out
    assert "(default: plain,l2,l2_dropout)" in out or command == "sweep"


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "command, option, value",
    [
        ("compare", "--epochs", "0"),
        ("compare", "--epochs", "two"),
        ("compare", "--batch-size", "2.5"),
        ("compare", "--lr", "-0.1"),
        ("compare", "--lr", "nan"),
        ("compare", "--weight-decay", "-1"),
        ("compare", "--dropout", "1"),
        ("compare", "--momentum", "-0.5"),
        ("compare", "--label-noise", "1.5"),
        ("compare", "--lr-schedule", "cosine"),
        ("compare", "--runs", "plain,l3"),
        ("compare", "--seeds", "1,x"),
        ("compare", "--dataset", "imagenet"),
        ("compare", "--train-fraction", "0"),
        ("compare", "--workers", "-1"),
        ("sweep", "--weight-decay", ""),
        ("sweep", "--weight-decay", "1e-2:1e-3"),
        ("sweep", "--weight-decay", "0:1e-1"),
        ("sweep", "--weight-decay", "1e-3,-1"),
        ("sweep", "--dropout", "0.2:1.5"),
        ("sweep", "--trials", "0"),
        ("sweep", "--trials", "100000000"),
        ("sweep", "--weight-decay", "0,,1e-3"),
        ("sweep", "--weight-decay", "1e-3,"),
        ("compare", "--seeds", "1,,2"),
        ("compare", "--runs", "plain,,l2"),
        ("sweep", "--storage", "sqlite:///:memory:"),
        ("sweep", "--storage", "sqlite://"),
        ("sweep", "--storage", "redis://host/0"),
        ("sweep", "--storage", "no-scheme"),
    ],
)
def test_invalid_option_exits_with_one_line_naming_it(
    command, option, value, capsys
):
    with pytest.raises(SystemExit) as info:
        cli.main([command, option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"argument {option}" in err
    assert "Traceback" not in err


@pytest.mark.backend_independent
def test_range_without_trials_is_one_line(tmp_path, capsys):
    status = cli.main(
        ["sweep", "--weight-decay", "1e-5:1e-1", "--logdir", str(tmp_path)]
    )
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`trials`" in err


@pytest.mark.backend_independent
def test_missing_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code != 0
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.backend_independent
@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_unusable_logdir_is_one_line_before_training(kind, tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("x")
    logdir = path if kind == "file" else path / "sub"
    status = cli.main(["compare", "--logdir", str(logdir)])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"keras-decay compare: error: --logdir {logdir}")
    assert not list(tmp_path.glob("**/*.journal"))


@pytest.mark.backend_independent
def test_unknown_backend_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "mxnet")
    status = cli.main(["compare", "--logdir", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "KERAS_BACKEND='mxnet'" in err


def _python_dash_m(argv, monkeypatch, capsys):
    """`python -m keras_decay ARGV` in this process: `(status, out, err)`."""
    monkeypatch.setattr(sys, "argv", ["keras_decay", *argv])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("keras_decay", run_name="__main__", alter_sys=True)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _command(argv, capsys):
    """`keras-decay ARGV` in this process: `(status, out, err)`."""
    try:
        status = cli.main(argv)
    except SystemExit as error:
        status = error.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["sweep", "--help"],
        ["compare", "--dropout", "2"],
        ["sweep", "--trials", "0"],
        ["train"],
    ],
)
def test_python_dash_m_answers_as_the_command(argv, monkeypatch, capsys):
    expected = _command(argv, capsys)
    assert expected[0] in (0, 2)
    assert _python_dash_m(argv, monkeypatch, capsys) == expected


def test_python_dash_m_compare_end_to_end(tmp_path, monkeypatch, capsys):
    # In this process (`--workers 0`); the worker processes and the command
    # as a process of its own are tested in tests/test_sweep.py.
    logdir = tmp_path / "out"
    argv = [
        "compare",
        "--epochs",
        "2",
        "--train-fraction",
        "0.1",
        "--runs",
        "plain,l2",
        "--seeds",
        "3",
        "--weight-decay",
        "1e-3",
        "--lr-schedule",
        "exponential",
        "--workers",
        "0",
        "--logdir",
        str(logdir),
    ]
    status, out, err = _python_dash_m(argv, monkeypatch, capsys)
    assert status == 0, err[-2000:]
    assert "[plain seed 3] epoch 1/2  batch-mean acc (noisy labels" in out
    assert "inference acc: train" in out
    assert "| run | seeds | val acc (final) |" in out
    assert f"tensorboard --logdir {logdir}" in out
    written = json.loads((logdir / "results.json").read_text())
    rates = {t["run"]: t["weight_decay"] for t in written["trials"]}
    assert rates == {"plain": 0.0, "l2": 1e-3}
    for trial in written["trials"]:
        # Exponential schedule, x0.9 per epoch.
        assert trial["history"]["learning_rate"] == pytest.approx(
            [0.1, 0.09], rel=1e-6
        )
        assert f"| {trial['run']} | 1 | {trial['val_accuracy']:.3f} |" in out
    # The logdir now holds results: a second run is refused in one line.
    status, _, err = _python_dash_m(argv, monkeypatch, capsys)
    assert status == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "pass --overwrite to replace them, or choose another --logdir"
        )
    )


@pytest.mark.backend_independent
def test_settings_are_an_immutable_record_of_the_declared_options():
    config = options.settings("compare", epochs=3)
    assert [o.name for o in options.options_for("compare")] == list(
        config.as_dict()
    )
    with pytest.raises(AttributeError, match="immutable"):
        config.epochs = 4
    with pytest.raises(AttributeError, match="no option 'trials'"):
        config.trials  # noqa: B018 (a sweep option)
    changed = config.replace(epochs=4)
    assert (changed.epochs, config.epochs) == (4, 3)
    assert changed == options.settings(
        "compare", epochs=4, logdir=config.logdir
    )
    with pytest.raises(ValueError, match=r"Received: epochs=0"):
        config.replace(epochs=0)
    with pytest.raises(TypeError, match="Unknown option for `compare`"):
        config.replace(trials=3)
    training = [o.name for o in options.OPTIONS if o.training]
    assert list(config.hyperparameters()) == training
