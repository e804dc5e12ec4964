"""The regularization experiment: one CNN plain, with L2, with L2 + dropout.

This is `../shared/REFERENCE.md` section 6 made runnable. The same small
Sequential CNN is trained once per run on the same data, with the same
initial weights and the same mini-batches in the same order, so the runs
differ only by their regularization:

| run          | regularization                                        |
| ------------ | ----------------------------------------------------- |
| `plain`      | none                                                  |
| `l2`         | `WeightDecay(weight_decay)` on every kernel           |
| `l2_dropout` | the same, plus `Dropout(dropout)` before the classifier |

Everything is written inside one log folder: a sub-folder per run (the run's
TensorBoard directory), `results.json` and `comparison.png`. The command line
is `keras-decay compare` (see `keras_decay.cli`); from Python:

```python
from keras_decay import compare

options = compare.CompareOptions(epochs=2, logdir="logs/try")
results, models = compare.run_comparison(options)
```

scikit-learn (the bundled digits data, stratified splits) and matplotlib
(the figure) come with the `examples` extra: `pip install
"keras-decay[examples]"`. They are imported only when needed.
"""

import dataclasses
import datetime
import json
import math
import os
import time

import keras
import numpy as np

from keras_decay import schedules
from keras_decay._validation import check_choice
from keras_decay._validation import check_float
from keras_decay._validation import check_int
from keras_decay._validation import check_non_negative_float
from keras_decay._validation import check_positive_float
from keras_decay._validation import check_positive_int
from keras_decay.callbacks import WeightNormLogger
from keras_decay.regularizers import WeightDecay

__all__ = [
    "DATASETS",
    "LR_SCHEDULES",
    "RUN_NAMES",
    "CompareError",
    "CompareOptions",
    "build_callbacks",
    "build_model",
    "build_optimizer",
    "format_table",
    "global_weight_norm",
    "load_data",
    "plot_comparison",
    "run_comparison",
]

RUN_NAMES = ("plain", "l2", "l2_dropout")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
LR_SCHEDULES = ("none", "exponential", "step")

# Exponential schedule: lr * EXPONENTIAL_DECAY_RATE ** (step / steps_per_epoch)
EXPONENTIAL_DECAY_RATE = 0.9
# Step schedule: lr * 0.5 ** floor(epoch / STEP_DECAY_EPOCHS)
STEP_DECAY_EPOCHS = 5
STEP_DECAY_FACTOR = 0.5
# Share of the bundled digits data held out, stratified, for validation.
DIGITS_VALIDATION_FRACTION = 0.3

_EXTRAS_HINT = 'pip install "keras-decay[examples]"'


class CompareError(Exception):
    """A user-facing failure (missing extra, offline download): one line."""


@dataclasses.dataclass
class CompareOptions:
    """The experiment's settings; the defaults are the command's defaults.

    Args:
        epochs: Int >= 1. Epochs per run. Defaults to 20.
        batch_size: Int >= 1. Mini-batch size. Defaults to 32.
        lr: Float > 0. SGD learning rate (initial, with a schedule).
            Defaults to 0.1.
        weight_decay: Float >= 0. `WeightDecay` rate on kernels in the `l2`
            and `l2_dropout` runs (penalty `rate / 2 * sum(w**2)`).
            Defaults to 5e-4.
        dropout: Float in [0, 1). Dropout rate before the classifier in the
            `l2_dropout` run. Defaults to 0.5.
        lr_schedule: One of `"none"`, `"exponential"` (times 0.9 per epoch,
            continuous), `"step"` (halved every 5 epochs). Defaults to
            `"none"`.
        momentum: Float in [0, 1). SGD momentum. Defaults to 0.0.
        runs: Tuple of run names, a subset of `RUN_NAMES`. Defaults to all.
        seed: Int >= 0. Seeds initial weights, batches and dropout masks.
            Defaults to 1.
        logdir: Str or None. Output folder; `None` means
            `logs/compare-<timestamp>`. Defaults to None.
        dataset: One of `DATASETS`. Defaults to `"digits"`.
        train_fraction: Float in (0, 1]. Stratified share of the training
            split used for training. Defaults to 0.5.
        quiet: Bool. No progress lines. Defaults to False.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.1
    weight_decay: float = 5e-4
    dropout: float = 0.5
    lr_schedule: str = "none"
    momentum: float = 0.0
    runs: tuple = RUN_NAMES
    seed: int = 1
    logdir: str = None
    dataset: str = "digits"
    train_fraction: float = 0.5
    quiet: bool = False

    def __post_init__(self):
        self.epochs = check_positive_int(self.epochs, "epochs")
        self.batch_size = check_positive_int(self.batch_size, "batch_size")
        self.lr = check_positive_float(self.lr, "lr")
        self.weight_decay = check_non_negative_float(
            self.weight_decay, "weight_decay"
        )
        self.dropout = check_float(
            self.dropout, "dropout", low=0.0, high=1.0, high_inclusive=False
        )
        self.lr_schedule = check_choice(
            self.lr_schedule, "lr_schedule", LR_SCHEDULES
        )
        self.momentum = check_float(
            self.momentum, "momentum", low=0.0, high=1.0, high_inclusive=False
        )
        self.runs = check_runs(self.runs)
        self.seed = check_int(self.seed, "seed", low=0)
        self.dataset = check_choice(self.dataset, "dataset", DATASETS)
        self.train_fraction = check_float(
            self.train_fraction,
            "train_fraction",
            low=0.0,
            high=1.0,
            low_inclusive=False,
        )
        if self.logdir is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            self.logdir = os.path.join("logs", f"compare-{stamp}")
        self.logdir = str(self.logdir)

    def hparams(self):
        """The hyperparameters as a JSON-ready dict (no output settings)."""
        config = dataclasses.asdict(self)
        for key in ("logdir", "quiet", "runs"):
            config.pop(key)
        return config


def check_runs(runs):
    """Returns `runs` as a tuple of distinct names from `RUN_NAMES`."""
    if isinstance(runs, str):
        runs = [name.strip() for name in runs.split(",") if name.strip()]
    runs = tuple(runs)
    expected = "a non-empty subset of " + ",".join(RUN_NAMES)
    if (
        not runs
        or len(set(runs)) != len(runs)
        or any(name not in RUN_NAMES for name in runs)
    ):
        raise ValueError(
            f"Invalid value received for argument `runs`. Expected "
            f"{expected}. Received: runs={','.join(map(str, runs))!r}"
        )
    return runs


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def _import_extra(module):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise CompareError(
            f"`keras-decay compare` needs {module.split('.')[0]} "
            f"({error}); install it with: {_EXTRAS_HINT}"
        ) from None


def load_data(dataset="digits", train_fraction=1.0, seed=1):
    """Loads `(x_train, y_train), (x_val, y_val)`, pixels scaled to [0, 1].

    `digits` is scikit-learn's bundled 8x8 digits (1,797 images, no
    download), split 70/30 into training and validation, stratified by
    class. The `keras.datasets` sets use their own test split for
    validation. Then a stratified `train_fraction` of the training split is
    kept. Images are float32 `(n, height, width, channels)`, labels int32.

    Raises:
        CompareError: scikit-learn is missing, or a `keras.datasets` set is
            neither cached nor downloadable (offline).
    """
    model_selection = _import_extra("sklearn.model_selection")
    if dataset == "digits":
        sk_datasets = _import_extra("sklearn.datasets")
        digits = sk_datasets.load_digits()
        x = digits.images.astype("float32") / 16.0
        y = digits.target
        x_train, x_val, y_train, y_val = model_selection.train_test_split(
            x,
            y,
            test_size=DIGITS_VALIDATION_FRACTION,
            stratify=y,
            random_state=seed,
        )
    else:
        check_choice(dataset, "dataset", DATASETS)
        loader = getattr(keras.datasets, dataset)
        try:
            (x_train, y_train), (x_val, y_val) = loader.load_data()
        except Exception as error:  # noqa: BLE001 (get_file raises Exception)
            reason = str(error).splitlines()[0] if str(error) else error
            raise CompareError(
                f"the {dataset} data set is downloaded by keras.datasets and "
                f"needs internet access the first time (download failed: "
                f"{reason}); use --dataset digits to run offline"
            ) from None
        x_train = x_train.astype("float32") / 255.0
        x_val = x_val.astype("float32") / 255.0
    if train_fraction < 1.0:
        x_train, _, y_train, _ = model_selection.train_test_split(
            x_train,
            y_train,
            train_size=train_fraction,
            stratify=y_train,
            random_state=seed,
        )
    x_train, x_val = _add_channels(x_train), _add_channels(x_val)
    y_train = np.asarray(y_train).reshape(-1).astype("int32")
    y_val = np.asarray(y_val).reshape(-1).astype("int32")
    return (x_train, y_train), (x_val, y_val)


def _add_channels(x):
    return x[..., np.newaxis] if x.ndim == 3 else x


class _SeededBatches(keras.utils.PyDataset):
    """Shuffled mini-batches whose order depends on `seed` only.

    Every run gets the same permutation per epoch, whatever random
    operations its model draws (dropout masks), so runs see identical
    batches.
    """

    def __init__(self, x, y, batch_size, seed):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        start = index * self.batch_size
        batch = self._order[start : start + self.batch_size]
        return self.x[batch], self.y[batch]

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.x))


# --------------------------------------------------------------------------
# Model, optimizer, callbacks
# --------------------------------------------------------------------------


def build_model(
    run, input_shape, num_classes, *, weight_decay=5e-4, dropout=0.5, seed=1
):
    """The CNN for one run: identical layers and initial weights for all runs.

    `Conv2D(16, 3) -> MaxPooling2D -> Conv2D(32, 3) -> MaxPooling2D ->
    Flatten -> Dense(64) -> [Dropout] -> Dense(num_classes, softmax)`.
    The `l2` runs put `WeightDecay(weight_decay)` on every kernel (not on
    biases); `l2_dropout` adds `Dropout(dropout)` before the classifier.
    Every initializer has its own fixed seed, so adding a layer or a
    regularizer does not change the other layers' initial weights.
    """
    check_choice(run, "run", RUN_NAMES)
    regularizer = WeightDecay(weight_decay) if run != "plain" else None

    def init(index):
        return keras.initializers.GlorotUniform(seed=seed * 100 + index)

    layers = [
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(
            16,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init(0),
            kernel_regularizer=regularizer,
        ),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(
            32,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init(1),
            kernel_regularizer=regularizer,
        ),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(
            64,
            activation="relu",
            kernel_initializer=init(2),
            kernel_regularizer=regularizer,
        ),
    ]
    if run == "l2_dropout":
        layers.append(keras.layers.Dropout(dropout, seed=seed))
    layers.append(
        keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_initializer=init(3),
            kernel_regularizer=regularizer,
        )
    )
    return keras.Sequential(layers, name=run)


def build_optimizer(options, steps_per_epoch):
    """SGD with the learning-rate schedule and momentum from `options`.

    - `"none"`: constant `lr`.
    - `"exponential"`: `keras_decay.schedules.ExponentialDecay`,
      `lr * 0.9 ** (step / steps_per_epoch)`.
    - `"step"`: `keras_decay.schedules.StepDecay`,
      `lr * 0.5 ** floor(epoch / 5)`: halved every 5 epochs.
    """
    learning_rate = options.lr
    if options.lr_schedule == "exponential":
        learning_rate = schedules.ExponentialDecay(
            options.lr,
            decay_steps=steps_per_epoch,
            decay_rate=EXPONENTIAL_DECAY_RATE,
        )
    elif options.lr_schedule == "step":
        learning_rate = schedules.StepDecay(
            options.lr,
            steps_per_epoch=steps_per_epoch,
            drop=STEP_DECAY_FACTOR,
            epochs_per_drop=STEP_DECAY_EPOCHS,
        )
    return keras.optimizers.SGD(
        learning_rate=learning_rate, momentum=options.momentum
    )


def build_callbacks(run, run_dir, options, recorder):
    """The callbacks list of one run.

    `recorder` records the per-epoch history that `results.json` and the
    figure are made from; it comes first so later callbacks see the epoch's
    `logs` unchanged. `WeightNormLogger` writes the run's TensorBoard
    scalars (weight norms, update ratios, the penalty, the learning rate)
    and its hyperparameters for the HParams dashboard.
    """
    callbacks = [
        recorder,
        WeightNormLogger(
            log_dir=run_dir, hparams=dict(options.hparams(), run=run)
        ),
    ]
    if not options.quiet:
        callbacks.append(_EpochPrinter(options.epochs))
    return callbacks


def global_weight_norm(model):
    """`sqrt(sum(sum(w**2) for w in model.trainable_variables))`, a float."""
    total = 0.0
    for variable in model.trainable_variables:
        value = keras.ops.convert_to_numpy(variable).astype("float64")
        total += float(np.sum(np.square(value)))
    return math.sqrt(total)


def _accuracy(model, x, y, batch_size=512):
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def _current_learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class _HistoryRecorder(keras.callbacks.Callback):
    """Records per epoch: losses, accuracies, weight norm, learning rate.

    `train_accuracy` is measured on the whole training set after the epoch,
    in inference mode (no dropout), like `val_accuracy`; Keras' `accuracy`
    is the running mean over the epoch's batches in training mode.
    """

    def __init__(self, x_train, y_train):
        super().__init__()
        self.x_train, self.y_train = x_train, y_train
        keys = (
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "train_accuracy",
            "weight_norm",
            "learning_rate",
        )
        self.history = {key: [] for key in keys}

    def on_epoch_begin(self, epoch, logs=None):
        # The rate of the epoch's first step (the schedule at `iterations`).
        lr = _current_learning_rate(self.model.optimizer)
        self.history["learning_rate"].append(lr)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            self.history[key].append(float(logs[key]))
        self.history["train_accuracy"].append(
            _accuracy(self.model, self.x_train, self.y_train)
        )
        self.history["weight_norm"].append(global_weight_norm(self.model))


class _EpochPrinter(keras.callbacks.Callback):
    """One line per epoch: loss, accuracy, val_accuracy."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        width = len(str(self.epochs))
        print(
            f"  epoch {epoch + 1:>{width}}/{self.epochs}"
            f"  loss {logs.get('loss', float('nan')):.4f}"
            f"  acc {logs.get('accuracy', float('nan')):.4f}"
            f"  val_acc {logs.get('val_accuracy', float('nan')):.4f}",
            flush=True,
        )


# --------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------


def train_run(run, data, options):
    """Trains one run; returns `(result, model)` (result as in results.json)."""
    (x_train, y_train), (x_val, y_val) = data
    keras.utils.set_random_seed(options.seed)
    num_classes = int(max(y_train.max(), y_val.max())) + 1
    model = build_model(
        run,
        x_train.shape[1:],
        num_classes,
        weight_decay=options.weight_decay,
        dropout=options.dropout,
        seed=options.seed,
    )
    batches = _SeededBatches(x_train, y_train, options.batch_size, options.seed)
    optimizer = build_optimizer(options, steps_per_epoch=len(batches))
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    run_dir = os.path.join(options.logdir, run)
    os.makedirs(run_dir, exist_ok=True)
    recorder = _HistoryRecorder(x_train, y_train)
    start = time.perf_counter()
    model.fit(
        batches,
        epochs=options.epochs,
        validation_data=(x_val, y_val),
        callbacks=build_callbacks(run, run_dir, options, recorder),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    history = recorder.history
    best = int(np.argmax(history["val_accuracy"]))
    result = {
        "run": run,
        "train_accuracy": history["train_accuracy"][-1],
        "val_accuracy": history["val_accuracy"][-1],
        "gap": history["train_accuracy"][-1] - history["val_accuracy"][-1],
        "best_val_accuracy": history["val_accuracy"][best],
        "best_epoch": best + 1,
        "weight_norm": global_weight_norm(model),
        "seconds": seconds,
        "num_train": len(x_train),
        "num_val": len(x_val),
        "log_dir": run_dir,
        "hparams": dict(
            options.hparams(),
            run=run,
            weight_decay=options.weight_decay if run != "plain" else 0.0,
            dropout=options.dropout if run == "l2_dropout" else 0.0,
        ),
        "history": history,
    }
    return result, model


def run_comparison(options=None):
    """Trains every run in `options.runs`; writes results.json and the figure.

    Returns:
        `(results, models)`: the list written to `results.json` (one dict
        per run, `best_epoch` counted from 1) and `{run: trained model}`.
    """
    options = options or CompareOptions()
    _import_extra("sklearn")
    _import_extra("matplotlib")
    say = (lambda *a: None) if options.quiet else _print
    data = load_data(options.dataset, options.train_fraction, options.seed)
    (x_train, _), (x_val, _) = data
    say(
        f"{options.dataset}: {len(x_train)} training and {len(x_val)} "
        f"validation images of shape {x_train.shape[1:]}; "
        f"writing to {options.logdir}"
    )
    os.makedirs(options.logdir, exist_ok=True)
    results, models = [], {}
    for index, run in enumerate(options.runs, start=1):
        say(f"run {index} of {len(options.runs)}: {run}")
        result, model = train_run(run, data, options)
        results.append(result)
        models[run] = model
    results_path = os.path.join(options.logdir, "results.json")
    with open(results_path, "w") as file:
        json.dump(results, file, indent=2)
    figure_path = os.path.join(options.logdir, "comparison.png")
    plot_comparison(results, figure_path)
    say("")
    say(format_table(results))
    say("")
    say(f"results: {results_path}")
    say(f"figure:  {figure_path}")
    say(f"TensorBoard: tensorboard --logdir {options.logdir}")
    return results, models


def _print(*args):
    print(*args, flush=True)


def format_table(results):
    """A Markdown table: one row per run."""
    header = (
        "| run | train acc | val acc | gap | best val acc (epoch) "
        "| weight norm |"
    )
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(
            f"| {r['run']} | {r['train_accuracy']:.4f} "
            f"| {r['val_accuracy']:.4f} | {r['gap']:+.4f} "
            f"| {r['best_val_accuracy']:.4f} ({r['best_epoch']}) "
            f"| {r['weight_norm']:.3f} |"
        )
    return "\n".join(lines)


def plot_comparison(results, path):
    """Writes a 2x2 PNG: val accuracy, train-val gap, weight norm, lr."""
    matplotlib = _import_extra("matplotlib")
    matplotlib.use("Agg", force=True)
    pyplot = _import_extra("matplotlib.pyplot")
    ticker = _import_extra("matplotlib.ticker")
    figure, axes = pyplot.subplots(2, 2, figsize=(10, 7), sharex=True)
    panels = (
        ("validation accuracy", lambda h: h["val_accuracy"]),
        (
            "train - validation accuracy (gap)",
            lambda h: np.subtract(h["train_accuracy"], h["val_accuracy"]),
        ),
        ("global L2 norm of the weights", lambda h: h["weight_norm"]),
        ("learning rate (epoch start)", lambda h: h["learning_rate"]),
    )
    for axis, (title, values) in zip(axes.flat, panels):
        for result in results:
            history = result["history"]
            epochs = np.arange(1, len(history["val_accuracy"]) + 1)
            axis.plot(epochs, values(history), marker=".", label=result["run"])
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    for axis in axes[1]:
        axis.set_xlabel("epoch")
    axes[0, 0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
