"""Tests for the `keras-decay` command line (keras_decay.cli)."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from keras_decay import cli

# TensorFlow backend only: compare logs with WeightNormLogger.
pytestmark = pytest.mark.tensorflow_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compare_writes_outputs_and_prints_progress(tmp_path, capsys):
    logdir = tmp_path / "out"
    status = cli.main(
        [
            "compare",
            "--epochs",
            "2",
            "--train-fraction",
            "0.05",
            "--runs",
            "plain,l2_dropout",
            "--weight-decay",
            "1e-3",
            "--dropout",
            "0.25",
            "--lr-schedule",
            "exponential",
            "--momentum",
            "0.9",
            "--lr",
            "0.05",
            "--batch-size",
            "16",
            "--seed",
            "7",
            "--logdir",
            str(logdir),
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "run 1 of 2: plain" in out and "run 2 of 2: l2_dropout" in out
    assert out.count("epoch 1/2") == 2 and out.count("epoch 2/2") == 2
    assert f"tensorboard --logdir {logdir}" in out
    results = json.loads((logdir / "results.json").read_text())
    assert [r["run"] for r in results] == ["plain", "l2_dropout"]
    for result in results:
        assert os.path.isdir(logdir / result["run"])
        history = result["history"]
        best = int(np.argmax(history["val_accuracy"]))
        assert result["best_epoch"] == best + 1
        assert f"| {result['run']} | {result['train_accuracy']:.4f}" in out
        # Exponential schedule, x0.9 per epoch: 63 images / 16 = 4 batches.
        np.testing.assert_allclose(
            history["learning_rate"], [0.05, 0.05 * 0.9], rtol=1e-6
        )
        hparams = result["hparams"]
        assert hparams["momentum"] == 0.9 and hparams["batch_size"] == 16
        assert hparams["seed"] == 7 and hparams["lr_schedule"] == "exponential"
    assert results[0]["hparams"]["weight_decay"] == 0.0
    assert results[1]["hparams"]["weight_decay"] == 1e-3
    assert results[1]["hparams"]["dropout"] == 0.25
    with open(logdir / "comparison.png", "rb") as file:
        assert file.read(4) == b"\x89PNG"


@pytest.mark.parametrize(
    "option, value",
    [
        ("--epochs", "0"),
        ("--epochs", "two"),
        ("--batch-size", "2.5"),
        ("--lr", "-0.1"),
        ("--lr", "nan"),
        ("--weight-decay", "-1"),
        ("--dropout", "1"),
        ("--momentum", "-0.5"),
        ("--lr-schedule", "cosine"),
        ("--runs", "plain,dropout"),
        ("--seed", "-3"),
        ("--dataset", "imagenet"),
        ("--train-fraction", "0"),
        ("--train-fraction", "1.5"),
    ],
)
def test_invalid_option_exits_with_one_line_naming_it(option, value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", option, value])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"argument {option}" in err
    assert "Traceback" not in err


def test_missing_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code != 0
    assert "COMMAND" in capsys.readouterr().err


def test_offline_dataset_is_one_line_error(tmp_path, monkeypatch, capsys):
    def offline():
        raise ConnectionError("URL fetch failure: [Errno -3] name resolution")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    status = cli.main(
        ["compare", "--dataset", "fashion_mnist", "--logdir", str(tmp_path)]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "fashion_mnist" in err and "internet" in err


def test_python_dash_m_reports_bad_option_without_traceback():
    completed = subprocess.run(
        [sys.executable, "-m", "keras_decay", "compare", "--dropout", "2"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    # TensorFlow's own start-up log lines may precede ours (absl logs that
    # a child process inherits from a parent that imported TensorFlow).
    assert "Traceback" not in completed.stderr
    ours = [
        line
        for line in completed.stderr.splitlines()
        if line.startswith("keras-decay")
    ]
    assert ours == [completed.stderr.strip().splitlines()[-1]]
    assert ours[0].startswith("keras-decay compare: error: argument --dropout")
    assert "Received: dropout=2.0" in ours[0]
