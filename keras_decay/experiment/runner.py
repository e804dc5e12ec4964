"""One trial of the experiment: build, train, measure.

A trial is one model trained with one weight decay, one dropout rate and
one seed. Every trial on a seed starts from the same initial weights (each
initializer has its own seed, so adding a regularizer or a dropout layer
changes no other weight) and sees the same mini-batches in the same order
(a seeded batch order that does not depend on the model).

Written with `keras.ops` and `keras.Model` only, so trials run on the
TensorFlow, JAX and PyTorch backends. `WeightNormLogger` adds its weight-norm
scalars to each trial's TensorBoard folder (run `train`) where the backend
supports it; the trial's own scalars and HParams (run `trial`) are written
with the package's TF-free event writer on every backend.
"""

import math
import os
import threading
import time

import keras
import numpy as np

from keras_decay import schedules
from keras_decay.callbacks._weight_norm_logger._summaries import hparams_summary
from keras_decay.callbacks._weight_norm_logger._summaries import log_summary
from keras_decay.callbacks._weight_norm_logger._writer import EventWriter
from keras_decay.experiment import data as data_lib
from keras_decay.optimizers import current_hyperparameters
from keras_decay.regularizers import WeightDecay
from keras_decay.rules import timescale

__all__ = [
    "EXPONENTIAL_DECAY_RATE",
    "STEP_DECAY_EPOCHS",
    "build_model",
    "build_optimizer",
    "global_weight_norm",
    "train_lockstep",
    "train_trial",
]

# Exponential schedule: lr * EXPONENTIAL_DECAY_RATE ** (step / steps_per_epoch)
EXPONENTIAL_DECAY_RATE = 0.9
# Step schedule: lr * STEP_DECAY_FACTOR ** floor(epoch / STEP_DECAY_EPOCHS)
STEP_DECAY_EPOCHS = 5
STEP_DECAY_FACTOR = 0.5


def build_model(
    input_shape, num_classes, *, weight_decay=None, dropout=None, seed=1
):
    """The CNN of every trial.

    `Conv2D(16, 3) -> MaxPooling2D -> Conv2D(32, 3) -> MaxPooling2D ->
    Flatten -> Dense(64) -> [Dropout(dropout)] -> Dense(num_classes,
    softmax)`. With `weight_decay` not `None`, `WeightDecay(weight_decay)`
    is on every kernel (not on biases); with `dropout` not `None`, the
    `Dropout` layer is there. Initial weights depend on `seed` only.
    """
    regularizer = None if weight_decay is None else WeightDecay(weight_decay)

    def init(index):
        return keras.initializers.GlorotUniform(seed=seed * 100 + index)

    def conv(filters, index):
        return keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init(index),
            kernel_regularizer=regularizer,
        )

    layers = [
        keras.Input(shape=input_shape),
        conv(16, 0),
        keras.layers.MaxPooling2D(2),
        conv(32, 1),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(
            64,
            activation="relu",
            kernel_initializer=init(2),
            kernel_regularizer=regularizer,
        ),
    ]
    if dropout is not None:
        layers.append(keras.layers.Dropout(dropout, seed=seed))
    layers.append(
        keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_initializer=init(3),
            kernel_regularizer=regularizer,
        )
    )
    return keras.Sequential(layers)


def build_optimizer(lr, momentum, lr_schedule, steps_per_epoch):
    """SGD with momentum and the learning-rate schedule.

    - `"none"`: constant `lr`.
    - `"exponential"`: `keras_decay.schedules.ExponentialDecay`,
      `lr * 0.9 ** (step / steps_per_epoch)`.
    - `"step"`: `keras_decay.schedules.StepDecay`,
      `lr * 0.5 ** floor(epoch / 5)`: halved every 5 epochs.
    """
    learning_rate = lr
    if lr_schedule == "exponential":
        learning_rate = schedules.ExponentialDecay(
            lr, decay_steps=steps_per_epoch, decay_rate=EXPONENTIAL_DECAY_RATE
        )
    elif lr_schedule == "step":
        learning_rate = schedules.StepDecay(
            lr,
            steps_per_epoch=steps_per_epoch,
            drop=STEP_DECAY_FACTOR,
            epochs_per_drop=STEP_DECAY_EPOCHS,
        )
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)


def global_weight_norm(model):
    """`sqrt(sum(sum(w**2) for w in model.trainable_variables))`, a float."""
    total = 0.0
    for variable in model.trainable_variables:
        value = keras.ops.convert_to_numpy(variable).astype("float64")
        total += float(np.sum(np.square(value)))
    return math.sqrt(total)


# Above this many bytes of training images for all epochs together, the
# batches are gathered one at a time (`_gather`) instead of in advance.
_GATHER_LIMIT = 256 * 2**20


def epoch_order(num_examples, batch_size, epochs, seed):
    """The training examples of every epoch, batch after batch.

    Each epoch is a fresh permutation drawn from `seed` only (not from the
    model), cut to whole batches: `num_examples // batch_size` batches, the
    remainder left out of that epoch (a different one each epoch). With
    fewer examples than `batch_size`, one batch of all of them.

    Returns:
        `(indices, steps_per_epoch, batch_size)`, `indices` of shape
        `(epochs, steps_per_epoch * batch_size)`.
    """
    batch_size = min(batch_size, num_examples)
    steps = num_examples // batch_size
    rng = np.random.default_rng(seed)
    indices = np.stack(
        [
            rng.permutation(num_examples)[: steps * batch_size]
            for _ in range(epochs)
        ]
    )
    return indices, steps, batch_size


def _gather(x, y, indices, batch_size):
    """Yields the batches of `epoch_order`, epoch after epoch."""
    for epoch in indices:
        for start in range(0, len(epoch), batch_size):
            batch = epoch[start : start + batch_size]
            yield x[batch], y[batch]


def _batches(data, indices, steps, batch_size):
    """The fit arguments for the epochs of `indices` (`epoch_order`)."""
    if data.x_train[0].nbytes * indices.size <= _GATHER_LIMIT:
        # All epochs gathered once: Keras slices them in order, no
        # per-batch Python (`steps_per_epoch` keeps its place between
        # epochs).
        flat = indices.reshape(-1)
        return {
            "x": data.x_train[flat],
            "y": data.y_train[flat],
            "batch_size": batch_size,
            "steps_per_epoch": steps,
            "shuffle": False,
        }
    # One generator over all epochs: its order cannot depend on when
    # Keras prefetches.
    return {
        "x": _gather(data.x_train, data.y_train, indices, batch_size),
        "steps_per_epoch": steps,
        "shuffle": False,
    }


HISTORY_KEYS = (
    "loss",
    "running_accuracy",
    "val_loss",
    "val_accuracy",
    "train_accuracy",
    "train_accuracy_clean",
    "memorized",
    "weight_norm",
    "learning_rate",
)


class _Measure(keras.callbacks.Callback):
    """After each epoch, in inference mode, from one compiled prediction.

    `train_accuracy` is against the labels trained on (noisy),
    `train_accuracy_clean` against the true ones, `memorized` the share of
    flipped training examples predicted as their flipped label.
    `running_accuracy` is Keras' `accuracy`: the mean over the epoch's
    batches in training mode (dropout on), against the noisy labels.
    """

    def __init__(self, data, progress=None, epochs=None, writer=None):
        super().__init__()
        self.data, self.progress = data, progress
        self.epochs, self.writer = epochs, writer
        self._x = np.concatenate([data.x_train, data.x_val])
        self.history = {key: [] for key in HISTORY_KEYS}

    def on_epoch_begin(self, epoch, logs=None):
        # The rate of the epoch's first step.
        values = current_hyperparameters(self.model.optimizer)
        self.history["learning_rate"].append(values["learning_rate"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        d, h = self.data, self.history
        probabilities = np.asarray(self.model.predict_on_batch(self._x))
        n = len(d.x_train)
        predicted = np.argmax(probabilities, axis=-1)
        train, val = predicted[:n], predicted[n:]
        p_val = probabilities[n:][np.arange(len(d.y_val)), d.y_val]
        h["loss"].append(float(logs.get("loss", math.nan)))
        h["running_accuracy"].append(float(logs.get("accuracy", math.nan)))
        h["val_loss"].append(float(-np.mean(np.log(np.maximum(p_val, 1e-7)))))
        h["val_accuracy"].append(float(np.mean(val == d.y_val)))
        h["train_accuracy"].append(float(np.mean(train == d.y_train)))
        h["train_accuracy_clean"].append(
            float(np.mean(train == d.y_train_clean))
        )
        h["memorized"].append(
            float(np.mean(train[d.flipped] == d.y_train[d.flipped]))
            if d.flipped.any()
            else 0.0
        )
        h["weight_norm"].append(global_weight_norm(self.model))
        if self.writer is not None:
            self.writer.scalars(
                epoch, {k: v[-1] for k, v in h.items() if k != "loss"}
            )
        if self.progress is not None:
            self.progress(
                f"epoch {epoch + 1:>{len(str(self.epochs))}}/{self.epochs}"
                f"  batch-mean acc (noisy labels, dropout on) "
                f"{h['running_accuracy'][-1]:.3f}"
                f"  inference acc: train {h['train_accuracy'][-1]:.3f}"
                f"  val {h['val_accuracy'][-1]:.3f}"
                f"  memorized {h['memorized'][-1]:.3f}"
            )


class _TrialWriter:
    """A trial's scalars (`trial/<name>`) and HParams, in the TensorBoard
    run `<run_dir>/trial`, through the package's own event writer (no
    TensorFlow; a failed write is a warning, training goes on).

    `WeightNormLogger` writes the run `<run_dir>/train`: one writer per run
    folder, as the writer's lock requires.
    """

    def __init__(self, run_dir, hparams):
        self._writer = EventWriter(os.path.join(run_dir, "trial"), "trial")
        self._writer.open()
        self._described = set()
        self._writer.write(0, hparams_summary(hparams))

    def scalars(self, step, values):
        scalars = {f"trial/{name}": value for name, value in values.items()}
        self._writer.write(step, log_summary(scalars, {}, self._described))

    def close(self):
        self._writer.close()


_SKIPPED_LOGGER = []


class _OptionalWeightNormLogger(keras.callbacks.Callback):
    """`WeightNormLogger`, skipped with one line where it cannot run."""

    def __init__(self, run_dir, say):
        super().__init__()
        from keras_decay.callbacks import WeightNormLogger

        self._logger = WeightNormLogger(log_dir=run_dir)
        self._say, self._on = say, True

    def set_model(self, model):
        super().set_model(model)
        self._logger.set_model(model)

    def on_train_begin(self, logs=None):
        try:
            self._logger.on_train_begin(logs)
        except (RuntimeError, NotImplementedError) as error:
            self._on = False
            if _SKIPPED_LOGGER:  # said once per process
                return
            _SKIPPED_LOGGER.append(True)
            backend = keras.backend.backend()
            message = str(error).splitlines()[0] if str(error) else error
            self._say(
                f"WeightNormLogger skipped on the {backend} backend "
                f"({message}); the trial's own scalars are still written"
            )

    def on_epoch_end(self, epoch, logs=None):
        if self._on:
            self._logger.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self._on:
            self._logger.on_train_end(logs)


_DATA_CACHE = {}


def _data(config, seed):
    key = (
        config["dataset"],
        config["train_fraction"],
        config["label_noise"],
        seed,
    )
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = data_lib.load_data(
            config["dataset"],
            config["train_fraction"],
            seed,
            label_noise=config["label_noise"],
        )
    return _DATA_CACHE[key]


class _SeedRun:
    """One seed of a trial: its model, batches, callbacks and writer,
    trained a span of epochs at a time (`fit`), then `result()`."""

    def __init__(self, config, trial, seed, run_dir, say, progress):
        self.config, self.trial, self.seed = config, trial, seed
        self.run_dir = run_dir
        self.data = data = _data(config, seed)
        keras.utils.set_random_seed(seed)
        self.model = build_model(
            data.x_train.shape[1:],
            data.num_classes,
            weight_decay=trial.weight_decay,
            dropout=trial.dropout,
            seed=seed,
        )
        self.indices, self.steps_per_epoch, self.batch_size = epoch_order(
            len(data.x_train), config["batch_size"], config["epochs"], seed
        )
        self.model.compile(
            optimizer=build_optimizer(
                config["lr"],
                config["momentum"],
                config["lr_schedule"],
                self.steps_per_epoch,
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            # One compiled call per epoch; PyTorch's trainer takes only 1.
            steps_per_execution=(
                1
                if keras.backend.backend() == "torch"
                else self.steps_per_epoch
            ),
        )
        os.makedirs(run_dir, exist_ok=True)
        self.hparams = {
            "run": trial.run,
            "weight_decay": trial.weight_decay or 0.0,
            "dropout": trial.dropout or 0.0,
            "seed": seed,
        }
        self.writer = _TrialWriter(run_dir, self.hparams)
        self.measure = _Measure(
            data,
            progress=say if progress else None,
            epochs=config["epochs"],
            writer=self.writer,
        )
        self.logger = _OptionalWeightNormLogger(run_dir, say)
        self.seconds = 0.0

    def fit(self, gate=None):
        """Trains every epoch in one `fit` (`gate`: a callback after the
        measurements, which may stop it); closes the writer."""
        begin = time.perf_counter()
        callbacks = [self.measure, self.logger]
        try:
            self.model.fit(
                **_batches(
                    self.data,
                    self.indices,
                    self.steps_per_epoch,
                    self.batch_size,
                ),
                epochs=self.config["epochs"],
                callbacks=callbacks + ([] if gate is None else [gate]),
                verbose=0,
            )
        finally:
            self.writer.close()
            self.seconds += time.perf_counter() - begin

    def result(self, pruned=False):
        config, trial = self.config, self.trial
        h = self.measure.history
        best = int(np.argmax(h["val_accuracy"]))
        epochs = len(h["val_accuracy"])
        # Coupled L2 (our WeightDecay) under SGD with momentum; none: inf.
        tau = (
            timescale(
                config["lr"],
                trial.weight_decay,
                momentum=config["momentum"],
                decoupled=False,
            )
            if trial.weight_decay
            else math.inf
        )
        final = {k: h[k][-1] for k in HISTORY_KEYS if k != "learning_rate"}
        return dict(
            self.hparams,
            **final,
            best_val_accuracy=h["val_accuracy"][best],
            best_epoch=best + 1,
            epochs_trained=epochs,
            pruned=pruned,
            tau_steps=None if math.isinf(tau) else tau,
            steps_trained=self.steps_per_epoch * epochs,
            num_train=len(self.data.x_train),
            num_val=len(self.data.x_val),
            num_flipped=int(self.data.flipped.sum()),
            seconds=self.seconds,
            log_dir=self.run_dir,
            history=h,
        )


def train_trial(
    config, trial, run_dir, *, say=None, progress=False, return_model=False
):
    """Trains one trial; returns its result (a JSON-ready dict).

    Args:
        config: Dict of the training settings (`options.hyperparameters`).
        trial: The `Trial` record (`weight_decay`, `dropout`: `None` for no
            such regularizer or layer).
        run_dir: The trial's TensorBoard folder.
        say: Callable printing one line, or `None`.
        progress: Bool. Whether to `say` one line per epoch.
        return_model: Bool. Whether to return `(result, model)`.
    """
    say = say or (lambda line: None)
    run = _SeedRun(config, trial, trial.seed, run_dir, say, progress)
    run.fit()
    result = run.result()
    return (result, run.model) if return_model else result


class _Lockstep:
    """The seeds of a lockstep trial, one `fit` each in its own thread,
    meet after every epoch (a barrier); the last to arrive reports their
    mean val accuracy and reads the verdict, which stops them all.

    One `fit` per seed: a `fit(initial_epoch=e, epochs=e + 1)` per seed and
    epoch instead costs a data pipeline and a callback set-up per epoch
    (measured: 2.8x the training time of the per-seed trials).
    """

    def __init__(self, runs, report, epochs):
        self.runs, self.report, self.epochs = runs, report, epochs
        self.barrier = threading.Barrier(len(runs), action=self._judge)
        self.pruned = False

    def _judge(self):
        trained = len(self.runs[0].measure.history["val_accuracy"])
        values = [run.measure.history["val_accuracy"][-1] for run in self.runs]
        if self.report(trained, float(np.mean(values))):
            self.pruned = trained < self.epochs

    def gate(self):
        lockstep = self

        class Gate(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                lockstep.barrier.wait()
                if lockstep.pruned:
                    self.model.stop_training = True

        return Gate()

    def train(self):
        errors = []

        def fit(run):
            try:
                run.fit(self.gate())
            except BaseException as error:  # noqa: BLE001 (re-raised)
                errors.append(error)
                self.barrier.abort()  # the other seeds stop waiting

        # Daemons: an interrupt (SIGTERM, Ctrl-C) in the joining thread
        # ends the process without waiting for the seeds' training.
        threads = [
            threading.Thread(target=fit, args=(run,), daemon=True)
            for run in self.runs
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self.barrier.abort()
            raise
        real = [
            e for e in errors if not isinstance(e, threading.BrokenBarrierError)
        ]
        if real or errors:
            raise (real or errors)[0]


def train_lockstep(config, trial, logdir, report, *, say=None, progress=False):
    """Trains every seed of `trial` (`trial.seeds`) in lockstep.

    Each seed trains in its own thread; after each epoch, once every seed
    has measured it, `report(epochs, value)` gets the epochs trained and
    the mean over the seeds of their validation accuracy; when it returns
    `True` (the pruner's verdict) every seed stops there, so a point is
    stopped only on evidence from all its seeds.

    Returns:
        `(results, pruned)`: one result per seed (as `train_trial`, with
        `pruned`), and whether the trial was stopped early.
    """
    say = say or (lambda line: None)
    runs = []
    for seed, folder in trial.runs:

        def said(line, seed=seed):
            say(f"seed {seed}: {line}")

        path = os.path.join(logdir, folder)
        runs.append(_SeedRun(config, trial, seed, path, said, progress))
    lockstep = _Lockstep(runs, report, config["epochs"])
    lockstep.train()
    return [run.result(lockstep.pruned) for run in runs], lockstep.pruned
