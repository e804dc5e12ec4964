"""The experiment's data: digits or keras.datasets, with label noise.

scikit-learn (the bundled digits, stratified splits) comes with the
`examples` extra and is imported only here, when data is loaded.
"""

import numpy as np

from keras_decay._validation import check_choice
from keras_decay_cli.options import DATASETS

__all__ = [
    "DIGITS_VALIDATION_FRACTION",
    "ExperimentError",
    "Data",
    "add_label_noise",
    "import_extra",
    "load_data",
]

# Share of the bundled digits data held out, stratified, for validation.
DIGITS_VALIDATION_FRACTION = 0.3
EXTRAS_HINT = 'pip install "keras-decay[examples]"'


class ExperimentError(Exception):
    """A failure the user can fix (missing extra, offline, bad folder)."""


def import_extra(module, command="keras-decay"):
    """Imports `module` or raises `ExperimentError` naming the extra."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ExperimentError(
            f"{command} needs {module.split('.')[0]} ({error}); install it "
            f"with: {EXTRAS_HINT}"
        ) from None


class Data:
    """Training and validation arrays of one seed.

    Attributes:
        x_train, x_val: float32 `(n, height, width, channels)` in [0, 1].
        y_train: int32 training labels as trained on (noisy).
        y_train_clean: int32 true training labels.
        flipped: bool mask of the training examples whose label was
            replaced (`y_train != y_train_clean` exactly there).
        y_val: int32 clean validation labels.
        num_classes: Int.
    """

    def __init__(self, x_train, y_train_clean, x_val, y_val, noise, seed):
        self.x_train, self.x_val = x_train, x_val
        self.y_train_clean, self.y_val = y_train_clean, y_val
        self.num_classes = int(max(y_train_clean.max(), y_val.max())) + 1
        self.y_train, self.flipped = add_label_noise(
            y_train_clean, noise, self.num_classes, seed
        )


def add_label_noise(labels, fraction, num_classes, seed):
    """Replaces `round(fraction * n)` labels by a different random class.

    The examples to flip are drawn without replacement; each gets a class
    drawn uniformly from the `num_classes - 1` other classes, so every
    flipped label is wrong. Seeded by `seed` only.

    Returns:
        `(noisy_labels, flipped_mask)`.
    """
    labels = np.asarray(labels).astype("int32")
    rng = np.random.default_rng([seed, 7919])
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.permutation(len(labels))[: round(fraction * len(labels))]] = (
        True
    )
    offsets = rng.integers(1, num_classes, size=len(labels))
    noisy = np.where(flipped, (labels + offsets) % num_classes, labels)
    return noisy.astype("int32"), flipped


def load_data(dataset="digits", train_fraction=1.0, seed=1, label_noise=0.0):
    """Loads a `Data` for one seed.

    `digits` is scikit-learn's bundled 8x8 digits (1,797 images, no
    download), split 70/30 into training and validation, stratified by
    class, the split seeded by `seed`. The `keras.datasets` sets use their
    own test split for validation. Then a stratified `train_fraction` of the
    training split is kept and `label_noise` of its labels are flipped
    (`add_label_noise`); validation labels stay clean.

    Raises:
        ExperimentError: scikit-learn is missing, or a `keras.datasets`
            set is neither cached nor downloadable (offline).
    """
    check_choice(dataset, "dataset", DATASETS)
    model_selection = import_extra("sklearn.model_selection")
    if dataset == "digits":
        digits = import_extra("sklearn.datasets").load_digits()
        x_train, x_val, y_train, y_val = model_selection.train_test_split(
            digits.images.astype("float32") / 16.0,
            digits.target,
            test_size=DIGITS_VALIDATION_FRACTION,
            stratify=digits.target,
            random_state=seed,
        )
    else:
        (x_train, y_train), (x_val, y_val) = _keras_dataset(dataset)
    if train_fraction < 1.0:
        x_train, _, y_train, _ = model_selection.train_test_split(
            x_train,
            y_train,
            train_size=train_fraction,
            stratify=y_train,
            random_state=seed,
        )
    return Data(
        _add_channels(x_train),
        np.asarray(y_train).reshape(-1).astype("int32"),
        _add_channels(x_val),
        np.asarray(y_val).reshape(-1).astype("int32"),
        label_noise,
        seed,
    )


def _keras_dataset(dataset):
    import keras

    try:
        (x_train, y_train), (x_val, y_val) = getattr(
            keras.datasets, dataset
        ).load_data()
    except Exception as error:  # noqa: BLE001 (get_file raises Exception)
        reason = str(error).splitlines()[0] if str(error) else error
        raise ExperimentError(
            f"the {dataset} data set is downloaded by keras.datasets and "
            f"needs internet access the first time (download failed: "
            f"{reason}); use --dataset digits to run offline"
        ) from None
    scale = np.float32(1.0 / 255.0)
    return (x_train.astype("float32") * scale, y_train), (
        x_val.astype("float32") * scale,
        y_val,
    )


def _add_channels(x):
    return x[..., np.newaxis] if x.ndim == 3 else x
