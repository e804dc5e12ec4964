"""Tests for keras_decay.compare: results checked against recomputation."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from keras_decay import compare
from keras_decay import schedules
from keras_decay.regularizers import WeightDecay

# TensorFlow backend only: compare logs with WeightNormLogger.
pytestmark = pytest.mark.tensorflow_only

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Tiny: 2 epochs on 5% of the digits training split (63 images, 2 batches).
TINY = {"epochs": 2, "batch_size": 32, "train_fraction": 0.05, "quiet": True}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("compare")
    options = compare.CompareOptions(logdir=str(logdir), **TINY)
    results, models = compare.run_comparison(options)
    return logdir, results, models


def test_results_json_matches_independent_recomputation(tiny_run):
    logdir, _results, models = tiny_run
    with open(logdir / "results.json") as file:
        written = json.load(file)
    assert [r["run"] for r in written] == list(compare.RUN_NAMES)
    (x_train, y_train), (x_val, y_val) = compare.load_data(
        "digits", TINY["train_fraction"], seed=1
    )
    for result in written:
        model = models[result["run"]]
        weights = model.get_weights()
        expected_norm = np.sqrt(
            sum(np.sum(np.square(w.astype("float64"))) for w in weights)
        )
        np.testing.assert_allclose(result["weight_norm"], expected_norm, 1e-6)
        history = result["history"]
        assert len(history["val_accuracy"]) == TINY["epochs"]
        best = int(np.argmax(history["val_accuracy"]))
        assert result["best_epoch"] == best + 1
        assert result["best_val_accuracy"] == history["val_accuracy"][best]
        # Final accuracies, recomputed from the trained model in NumPy.
        train_pred = np.argmax(model(x_train, training=False), axis=-1)
        val_pred = np.argmax(model(x_val, training=False), axis=-1)
        np.testing.assert_allclose(
            result["train_accuracy"], np.mean(train_pred == y_train), atol=1e-6
        )
        np.testing.assert_allclose(
            result["val_accuracy"], np.mean(val_pred == y_val), atol=1e-6
        )
        np.testing.assert_allclose(
            result["gap"],
            result["train_accuracy"] - result["val_accuracy"],
            atol=1e-12,
        )
        np.testing.assert_allclose(history["weight_norm"][-1], expected_norm)
        np.testing.assert_allclose(history["learning_rate"], [0.1, 0.1])
        assert result["num_train"] == len(x_train)
        assert result["hparams"]["run"] == result["run"]
        assert os.path.isdir(result["log_dir"])


@pytest.mark.tensorflow_only
def test_each_run_is_a_tensorboard_run_with_norms_and_hparams(tiny_run):
    from tests._events import read_events

    logdir, results, models = tiny_run
    for result in results:
        events = read_events(result["log_dir"])
        # The last logged global norm is the final weights' norm.
        *_, (_, last, _) = events["weight_norm/global"]
        np.testing.assert_allclose(float(last), result["weight_norm"], 1e-5)
        assert len(events["weight_norm/global"]) == TINY["epochs"]
        assert "optimizer/learning_rate" in events
        *_, (_, penalty, _) = events["regularization/loss"]
        assert (float(penalty) > 0.0) == (result["run"] != "plain")
        hparams = [tag for tag in events if tag.startswith("_hparams_")]
        assert hparams, sorted(events)


def test_comparison_png_is_written(tiny_run):
    logdir, _, _ = tiny_run
    with open(logdir / "comparison.png", "rb") as file:
        assert file.read(8) == PNG_SIGNATURE


def test_digits_split_is_stratified_and_scaled():
    (x_train, y_train), (x_val, y_val) = compare.load_data("digits", 1.0)
    assert x_train.shape[1:] == (8, 8, 1)
    assert len(x_train) + len(x_val) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    # Stratified: each class's share of the validation set matches its share
    # of the whole data set to within one image.
    y_all = np.concatenate([y_train, y_val])
    for label in range(10):
        share = np.mean(y_all == label)
        assert abs(np.sum(y_val == label) - share * len(y_val)) <= 1.0


def test_models_differ_only_by_regularization():
    shape, classes = (8, 8, 1), 10
    plain = compare.build_model("plain", shape, classes)
    l2 = compare.build_model("l2", shape, classes, weight_decay=1e-3)
    drop = compare.build_model("l2_dropout", shape, classes, dropout=0.3)
    for model in (l2, drop):
        for a, b in zip(plain.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not plain.losses
    kernels = [layer for layer in l2.layers if hasattr(layer, "kernel")]
    assert all(
        isinstance(layer.kernel_regularizer, WeightDecay)
        and layer.kernel_regularizer.rate == 1e-3
        and layer.bias_regularizer is None
        for layer in kernels
    )
    dropouts = [
        layer
        for layer in drop.layers
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert [layer.rate for layer in dropouts] == [0.3]
    assert drop.layers[-2] is dropouts[0]  # right before the classifier


def test_zero_regularization_runs_equal_plain_exactly(tmp_path):
    options = compare.CompareOptions(
        logdir=str(tmp_path), weight_decay=0.0, dropout=0.0, **TINY
    )
    results, models = compare.run_comparison(options)
    reference = models["plain"].get_weights()
    for run in ("l2", "l2_dropout"):
        for a, b in zip(reference, models[run].get_weights()):
            np.testing.assert_array_equal(a, b)
    histories = [r["history"]["val_loss"] for r in results]
    assert histories[0] == histories[1] == histories[2]


def test_seeded_runs_are_reproducible_and_seed_matters(tmp_path):
    def weights(seed, name):
        options = compare.CompareOptions(
            logdir=str(tmp_path / name), runs=("l2_dropout",), seed=seed, **TINY
        )
        _, models = compare.run_comparison(options)
        return models["l2_dropout"].get_weights()

    first, again, other = weights(3, "a"), weights(3, "b"), weights(4, "c")
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("schedule", ["exponential", "step"])
def test_learning_rate_schedules(schedule):
    spe, lr, epochs = 3, 0.2, 12
    options = compare.CompareOptions(
        lr=lr, epochs=epochs, lr_schedule=schedule, momentum=0.5
    )
    optimizer = compare.build_optimizer(options, steps_per_epoch=spe)
    assert optimizer.momentum == 0.5
    schedule_fn = keras.saving.deserialize_keras_object(
        optimizer.get_config()["learning_rate"]
    )
    assert (
        type(schedule_fn)
        is {
            "exponential": schedules.ExponentialDecay,
            "step": schedules.StepDecay,
        }[schedule]
    )
    steps = np.arange(epochs * spe)
    got = np.array([float(schedule_fn(int(s))) for s in steps])
    if schedule == "exponential":
        expected = lr * 0.9 ** (steps / spe)
    else:
        expected = lr * 0.5 ** np.floor(steps // spe / 5)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_step_schedule_is_constant_for_five_epochs_or_fewer():
    options = compare.CompareOptions(epochs=5, lr_schedule="step")
    optimizer = compare.build_optimizer(options, steps_per_epoch=4)
    assert float(optimizer.learning_rate) == pytest.approx(0.1)


def test_recorded_learning_rate_follows_step_schedule(tmp_path):
    options = compare.CompareOptions(
        logdir=str(tmp_path),
        runs=("plain",),
        epochs=7,
        lr_schedule="step",
        train_fraction=0.05,
        quiet=True,
    )
    results, _ = compare.run_comparison(options)
    expected = 0.1 * 0.5 ** np.floor(np.arange(7) / 5)
    np.testing.assert_allclose(
        results[0]["history"]["learning_rate"], expected, rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"dropout": 1.0}, "dropout"),
        ({"momentum": 1.5}, "momentum"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"runs": ("plain", "plain")}, "runs"),
        ({"runs": ("l3",)}, "runs"),
        ({"runs": ()}, "runs"),
        ({"seed": -1}, "seed"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"train_fraction": 0.0}, "train_fraction"),
    ],
)
def test_bad_options_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=f"argument `{name}`"):
        compare.CompareOptions(**kwargs)


def test_offline_download_is_a_one_line_compare_error(monkeypatch):
    def offline():
        raise ConnectionError(
            "URL fetch failure on https://example/mnist.npz: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(compare.CompareError, match="needs internet") as info:
        compare.load_data("mnist")
    assert "\n" not in str(info.value)


def test_missing_extra_names_the_pip_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.model_selection", None)
    with pytest.raises(compare.CompareError, match=r"keras-decay\[examples\]"):
        compare.load_data("digits")


def test_format_table_has_one_row_per_run(tiny_run):
    _, results, _ = tiny_run
    lines = compare.format_table(results).splitlines()
    assert len(lines) == 2 + len(results)
    for line, result in zip(lines[2:], results):
        assert line.startswith(f"| {result['run']} |")
        assert f"{result['val_accuracy']:.4f}" in line
