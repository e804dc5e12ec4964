"""Tests for keras_decay.experiment: data, runner, report, compare.

Every number is recomputed here in NumPy from the trained model or from the
written trials. Backend-neutral, except where marked (WeightNormLogger's
TensorBoard tags).
"""

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from keras_decay import schedules
from keras_decay.experiment import compare
from keras_decay.experiment import data as data_lib
from keras_decay.experiment import report
from keras_decay.experiment import runner
from keras_decay.experiment.data import ExperimentError
from keras_decay.experiment.trial import Trial
from keras_decay.regularizers import WeightDecay
from keras_decay_cli import options

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Tiny: 2 epochs on 10 % of the digits training split (126 images, 2 batches).
TINY = {"epochs": 2, "train_fraction": 0.1, "label_noise": 0.3}


def _config(**overrides):
    return options.settings(
        "compare", **dict(TINY, **overrides)
    ).hyperparameters()


def test_label_noise_flips_exactly_the_share_to_other_classes():
    labels = np.arange(1000) % 10
    noisy, flipped = data_lib.add_label_noise(labels, 0.3, 10, seed=4)
    assert flipped.sum() == 300
    np.testing.assert_array_equal(flipped, noisy != labels)
    again, _ = data_lib.add_label_noise(labels, 0.3, 10, seed=4)
    other, _ = data_lib.add_label_noise(labels, 0.3, 10, seed=5)
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, other)
    # The new class is uniform over the 9 others: 300 draws, each class
    # 300/9 = 33.3 expected; a chi-square of 9 cells stays below 26 (p=0.002).
    offsets = (noisy[flipped] - labels[flipped]) % 10
    counts = np.bincount(offsets, minlength=10)[1:]
    assert ((counts - 300 / 9) ** 2 / (300 / 9)).sum() < 26.0
    clean, none = data_lib.add_label_noise(labels, 0.0, 10, seed=4)
    np.testing.assert_array_equal(clean, labels)
    assert not none.any()


def test_digits_split_is_stratified_scaled_and_validation_clean():
    data = data_lib.load_data("digits", 1.0, seed=1, label_noise=0.3)
    assert data.x_train.shape[1:] == (8, 8, 1)
    assert len(data.x_train) + len(data.x_val) == 1797
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.flipped.sum() == round(0.3 * len(data.x_train))
    np.testing.assert_array_equal(
        data.flipped, data.y_train != data.y_train_clean
    )
    clean = data_lib.load_data("digits", 1.0, seed=1, label_noise=0.0)
    np.testing.assert_array_equal(clean.y_val, data.y_val)
    np.testing.assert_array_equal(clean.y_train, data.y_train_clean)
    y_all = np.concatenate([data.y_train_clean, data.y_val])
    for label in range(10):
        share = np.mean(y_all == label)
        assert abs(np.sum(data.y_val == label) - share * len(data.y_val)) <= 1


def test_models_differ_only_by_regularization():
    plain = runner.build_model((8, 8, 1), 10)
    l2 = runner.build_model((8, 8, 1), 10, weight_decay=1e-3)
    drop = runner.build_model((8, 8, 1), 10, weight_decay=1e-3, dropout=0.3)
    for model in (l2, drop):
        for a, b in zip(plain.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not plain.losses
    kernels = [layer for layer in l2.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 4 and all(
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


def _trial(run="l2_dropout", weight_decay=5e-3, dropout=0.5, seed=1):
    return Trial(run, weight_decay, dropout, seed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("trial"))
    config = _config()
    result, model = runner.train_trial(
        config, _trial(), run_dir, return_model=True
    )
    return config, result, model


def test_trial_result_matches_independent_recomputation(trained):
    config, result, model = trained
    data = data_lib.load_data("digits", 0.1, seed=1, label_noise=0.3)

    def predict(x):
        return np.argmax(
            keras.ops.convert_to_numpy(model(x, training=False)), -1
        )

    predicted_train, predicted_val = predict(data.x_train), predict(data.x_val)
    tol = {"atol": 1e-6}
    np.testing.assert_allclose(
        result["val_accuracy"], np.mean(predicted_val == data.y_val), **tol
    )
    np.testing.assert_allclose(
        result["train_accuracy"],
        np.mean(predicted_train == data.y_train),
        **tol,
    )
    np.testing.assert_allclose(
        result["train_accuracy_clean"],
        np.mean(predicted_train == data.y_train_clean),
        **tol,
    )
    flipped = data.y_train != data.y_train_clean
    np.testing.assert_allclose(
        result["memorized"],
        np.mean(predicted_train[flipped] == data.y_train[flipped]),
        **tol,
    )
    norm = np.sqrt(
        sum(np.sum(np.square(w.astype("float64"))) for w in model.get_weights())
    )
    np.testing.assert_allclose(result["weight_norm"], norm, rtol=1e-6)
    # tau of coupled L2 under SGD momentum: (1 - mu) / (lr * lambda).
    np.testing.assert_allclose(result["tau_steps"], 0.1 / (0.1 * 5e-3))
    steps = len(data.x_train) // 64  # whole batches only
    assert result["steps_trained"] == 2 * steps
    history = result["history"]
    assert all(len(history[k]) == 2 for k in runner.HISTORY_KEYS)
    best = int(np.argmax(history["val_accuracy"]))
    assert result["best_epoch"] == best + 1
    assert result["best_val_accuracy"] == history["val_accuracy"][best]
    np.testing.assert_allclose(history["learning_rate"], [0.1, 0.1])
    assert result["num_flipped"] == flipped.sum()
    assert (result["seed"], result["weight_decay"]) == (1, 5e-3)


def test_trial_writes_a_tensorboard_run_with_hparams(trained):
    from tensorboard.backend.event_processing import event_accumulator

    _, result, _ = trained

    def run(name):
        accumulator = event_accumulator.EventAccumulator(
            os.path.join(result["log_dir"], name),
            size_guidance={event_accumulator.TENSORS: 0},
        )
        accumulator.Reload()
        return accumulator

    trial = run("trial")  # the package's own writer, on every backend
    tags = trial.Tags()["tensors"]
    events = trial.Tensors("trial/val_accuracy")
    assert [e.step for e in events] == [0, 1]
    np.testing.assert_allclose(
        float(events[-1].tensor_proto.float_val[0]),
        result["val_accuracy"],
        rtol=1e-6,
    )
    assert "_hparams_/session_start_info" in tags
    # One writer per run folder: no run diverted to `trial-<host>-<pid>`.
    folders = sorted(os.listdir(result["log_dir"]))
    assert "trial" in folders and all("-" not in f for f in folders), folders
    if keras.backend.backend() == "tensorflow":
        assert folders == ["train", "trial"]
        # WeightNormLogger's run, beside it: one writer per run folder.
        assert "weight_norm/global" in run("train").Tags()["tensors"]


def test_zero_regularization_trains_exactly_like_plain(tmp_path):
    config = _config()
    weights = []
    for trial in (
        _trial("plain", None, None),
        _trial("l2_dropout", 0.0, 0.0),
    ):
        _, model = runner.train_trial(
            config, trial, str(tmp_path / trial.run), return_model=True
        )
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_seeded_trials_are_reproducible_and_seed_matters(tmp_path):
    config = _config(epochs=1)

    def weights(seed, name):
        _, model = runner.train_trial(
            config,
            _trial(seed=seed),
            str(tmp_path / name),
            return_model=True,
        )
        return model.get_weights()

    first, again, other = weights(3, "a"), weights(3, "b"), weights(4, "c")
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("schedule", ["exponential", "step"])
def test_learning_rate_schedules(schedule):
    spe, lr, epochs = 3, 0.2, 12
    optimizer = runner.build_optimizer(lr, 0.5, schedule, steps_per_epoch=spe)
    assert optimizer.momentum == 0.5
    schedule_fn = keras.saving.deserialize_keras_object(
        optimizer.get_config()["learning_rate"]
    )
    assert isinstance(
        schedule_fn,
        {
            "exponential": schedules.ExponentialDecay,
            "step": schedules.StepDecay,
        }[schedule],
    )
    steps = np.arange(epochs * spe)
    got = np.array([float(schedule_fn(int(s))) for s in steps])
    if schedule == "exponential":
        expected = lr * 0.9 ** (steps / spe)
    else:
        expected = lr * 0.5 ** np.floor(steps // spe / 5)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_timescale_formula():
    # Independent of keras_decay.rules: tau = 1/(lr*wd), (1-mu)/(lr*wd).
    assert runner.timescale(0.1, 5e-4) == pytest.approx(20000.0)
    assert runner.timescale(
        0.1, 5e-3, momentum=0.9, decoupled=False
    ) == pytest.approx(200.0)


def _fake(run, seed, val, norm, epochs=3):
    return {
        "run": run,
        "seed": seed,
        "val_accuracy": val,
        "best_val_accuracy": val + 0.01,
        "train_accuracy": 0.5,
        "train_accuracy_clean": 0.6,
        "memorized": 0.1 * seed,
        "weight_norm": norm,
        "tau_steps": None if run == "plain" else 200.0,
        "steps_trained": 60,
        "history": {
            curve: list(np.arange(epochs) * seed)
            for curve in ("val_accuracy", "memorized", "weight_norm")
        }
        | {"learning_rate": [0.1] * epochs},
    }


def test_aggregate_is_mean_and_sample_sd_per_run():
    results = [
        _fake("plain", 1, 0.70, 20.0),
        _fake("l2", 1, 0.90, 11.0),
        _fake("plain", 2, 0.80, 22.0),
        _fake("l2", 2, 0.86, 12.0),
        _fake("plain", 3, 0.75, 21.0),
    ]
    rows = report.aggregate(results, ("run",))
    assert [r["run"] for r in rows] == ["plain", "l2"]
    plain, l2 = rows
    assert plain["seeds"] == [1, 2, 3] and l2["n"] == 2
    np.testing.assert_allclose(plain["val_accuracy"]["mean"], 0.75)
    np.testing.assert_allclose(
        plain["val_accuracy"]["sd"], np.std([0.7, 0.8, 0.75], ddof=1)
    )
    np.testing.assert_allclose(
        l2["weight_norm"]["sd"], np.std([11, 12], ddof=1)
    )
    assert plain["tau_steps"] == {"mean": None, "sd": None}
    np.testing.assert_allclose(
        plain["curves"]["memorized"]["mean"], np.arange(3) * 2.0
    )
    np.testing.assert_allclose(
        plain["curves"]["memorized"]["sd"],
        np.std([np.arange(3) * s for s in (1, 2, 3)], axis=0, ddof=1),
    )
    table = report.format_compare_table(rows).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| plain | 3 | 0.750 ± 0.050 |")
    assert "∞ / 60" in table[2] and "200 / 60" in table[3]


def test_write_json_turns_nan_and_infinity_into_null(tmp_path):
    path = str(tmp_path / "r.json")
    report.write_json(path, {"a": [1.0, math.nan], "b": {"c": math.inf}})
    with open(path) as file:
        assert json.load(file) == {"a": [1.0, None], "b": {"c": None}}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("compare") / "out")
    config = options.settings(
        "compare",
        logdir=logdir,
        seeds="1,2",
        runs="plain,dropout",
        quiet=True,
        workers=0,  # in this process: the worker processes are tested in
        # tests/test_sweep.py
        **TINY,
    )
    return config, compare.run(config)


def test_compare_writes_trials_aggregate_and_figure(compared):
    config, payload = compared
    with open(os.path.join(config.logdir, "results.json")) as file:
        written = json.load(file)
    trials = written["trials"]
    assert sorted((t["run"], t["seed"]) for t in trials) == [
        ("dropout", 1),
        ("dropout", 2),
        ("plain", 1),
        ("plain", 2),
    ]
    for row in written["aggregate"]:
        values = [t["val_accuracy"] for t in trials if t["run"] == row["run"]]
        np.testing.assert_allclose(row["val_accuracy"]["mean"], np.mean(values))
        np.testing.assert_allclose(
            row["val_accuracy"]["sd"], np.std(values, ddof=1)
        )
        assert row["seeds"] == [1, 2]
    for trial in trials:
        assert trial["weight_decay"] == 0.0
        assert trial["dropout"] == (0.5 if trial["run"] == "dropout" else 0.0)
        assert os.path.isdir(trial["log_dir"])
    with open(os.path.join(config.logdir, "comparison.png"), "rb") as file:
        assert file.read(8) == PNG_SIGNATURE
    assert written["settings"]["label_noise"] == 0.3


def test_compare_refuses_a_logdir_with_results_unless_overwrite(compared):
    config, payload = compared
    with pytest.raises(ExperimentError, match="--overwrite"):
        compare.run(config)
    with pytest.raises(ExperimentError, match="not a directory"):
        compare.run(
            options.settings(
                "compare", logdir=os.path.join(config.logdir, "results.json")
            )
        )


def test_missing_extra_names_the_pip_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.model_selection", None)
    with pytest.raises(ExperimentError, match=r"keras-decay\[examples\]"):
        data_lib.load_data("digits")


def test_offline_download_is_a_one_line_error(monkeypatch):
    def offline():
        raise ConnectionError(
            "URL fetch failure on https://example/mnist.npz: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(ExperimentError, match="needs internet") as info:
        data_lib.load_data("mnist")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"dropout": 1.0}, "dropout"),
        ({"momentum": 1.5}, "momentum"),
        ({"label_noise": 1.0}, "label_noise"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"runs": ("plain", "plain")}, "runs"),
        ({"runs": ("l3",)}, "runs"),
        ({"runs": ()}, "runs"),
        ({"seeds": "1,1"}, "seeds"),
        ({"seeds": "-1"}, "seeds"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"workers": -1}, "workers"),
    ],
)
def test_bad_options_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=f"argument `{name}`"):
        options.settings("compare", **kwargs)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="trials"):
        options.settings("compare", trials=3)


def test_epoch_order_is_whole_batches_of_a_fresh_permutation():
    indices, steps, batch = runner.epoch_order(130, 32, 3, seed=5)
    assert (steps, batch) == (4, 32) and indices.shape == (3, 128)
    for epoch in indices:
        assert len(set(epoch.tolist())) == 128 and epoch.max() < 130
    assert not np.array_equal(indices[0], indices[1])
    again, _, _ = runner.epoch_order(130, 32, 3, seed=5)
    np.testing.assert_array_equal(indices, again)
    small, steps, batch = runner.epoch_order(10, 32, 2, seed=5)
    assert (steps, batch) == (1, 10) and sorted(small[0]) == list(range(10))


def test_gathered_and_per_batch_feeding_train_alike(tmp_path, monkeypatch):
    config = _config(epochs=2, batch_size=32)  # 3 batches an epoch
    _, gathered = runner.train_trial(
        config, _trial(), str(tmp_path / "a"), return_model=True
    )
    monkeypatch.setattr(runner, "_GATHER_LIMIT", 0)  # a batch generator
    _, per_batch = runner.train_trial(
        config, _trial(), str(tmp_path / "b"), return_model=True
    )
    for a, b in zip(gathered.get_weights(), per_batch.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
