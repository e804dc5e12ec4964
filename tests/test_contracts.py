"""Contracts every registered public keras_decay class must keep.

The classes are found from Keras' registry of serializable objects (every
public class is registered under the package name "keras_decay"), so a new
class fails `test_every_registered_class_has_a_spec` until it is described
in `SPECS` below, and is then covered by every contract:

- config round trip, and `.keras` save/load with the default
  `safe_mode=True` inside a small model: outputs and losses identical;
- a fit under `mixed_float16` and under `bfloat16` that stays finite (for
  regularizers: penalties within 1e-3 of float32);
- a fit with `jit_compile=True` passed explicitly (Keras' "auto" turns XLA
  off on CPU, so nothing else exercises it here);
- bad-input cases per class, each a `ValueError`/`TypeError` in Keras'
  message template.
"""

import dataclasses
import math
import os
import tempfile

import keras
import numpy as np
import pytest

from keras_decay import callbacks
from keras_decay import layers
from keras_decay import optimizers
from keras_decay import regularizers
from keras_decay import schedules

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

PACKAGE = "keras_decay"
# A feature map for the functional `drop_block_2d`'s bad-input cases.
_FEATURES = np.ones((1, 4, 4, 1), "float32")


@dataclasses.dataclass
class Spec:
    """How to exercise one public class.

    Attributes:
        kind: "regularizer", "schedule", "layer", "callback" or
            "optimizer".
        make: Returns an instance with non-default arguments.
        bad: `(factory, error type, expected message tail)` triples.
        input_shape: The model's input shape (no batch axis).
        extra_layers: Returns layers the model needs besides the object
            (e.g. a dropout layer for a drop-rate callback).
        tensorflow_only: The class needs the TensorFlow backend.
    """

    kind: str
    make: callable
    bad: list
    input_shape: tuple = (6,)
    extra_layers: callable = tuple
    tensorflow_only: bool = False


SPECS = {
    "WeightDecay": Spec(
        "regularizer",
        lambda: regularizers.WeightDecay(0.05, num_examples=3),
        [
            (lambda: regularizers.WeightDecay(-1.0), ValueError, "rate=-1.0"),
            (
                lambda: regularizers.WeightDecay(math.nan),
                ValueError,
                "rate=nan",
            ),
            (
                lambda: regularizers.WeightDecay(math.inf),
                ValueError,
                "rate=inf",
            ),
            (lambda: regularizers.WeightDecay("1"), TypeError, "rate='1'"),
            (lambda: regularizers.WeightDecay(None), TypeError, "rate=None"),
            (lambda: regularizers.WeightDecay(True), TypeError, "rate=True"),
            (
                lambda: regularizers.WeightDecay(0.1, -5),
                ValueError,
                "num_examples=-5",
            ),
            (
                lambda: regularizers.WeightDecay(0.1, "9"),
                TypeError,
                "num_examples='9'",
            ),
            (
                lambda: regularizers.WeightDecay(1.0, num_examples=0),
                ValueError,
                "num_examples=0",
            ),
            (
                lambda: regularizers.WeightDecay(1.0, num_examples=1.5),
                TypeError,
                "num_examples=1.5",
            ),
        ],
    ),
    "L1Decay": Spec(
        "regularizer",
        lambda: regularizers.L1Decay(0.01, num_examples=2),
        [
            (lambda: regularizers.L1Decay(-0.1), ValueError, "rate=-0.1"),
            (lambda: regularizers.L1Decay(None), TypeError, "rate=None"),
            (
                lambda: regularizers.L1Decay(0.1, num_examples=-2),
                ValueError,
                "num_examples=-2",
            ),
            (
                lambda: regularizers.L1Decay(0.1, num_examples="n"),
                TypeError,
                "num_examples='n'",
            ),
        ],
    ),
    "ElasticDecay": Spec(
        "regularizer",
        lambda: regularizers.ElasticDecay(l1=0.01, l2=0.05),
        [
            (lambda: regularizers.ElasticDecay(l1=-1.0), ValueError, "l1=-1.0"),
            (
                lambda: regularizers.ElasticDecay(l2=math.inf),
                ValueError,
                "l2=inf",
            ),
            (lambda: regularizers.ElasticDecay(l1=True), TypeError, "l1=True"),
            (lambda: regularizers.ElasticDecay(l2=[1]), TypeError, "l2=[1]"),
            (
                lambda: regularizers.ElasticDecay(num_examples=0),
                ValueError,
                "num_examples=0",
            ),
        ],
    ),
    "ClassicDropout": Spec(
        "layer",
        lambda: layers.ClassicDropout(0.3, seed=4),
        [
            (lambda: layers.ClassicDropout(1.0), ValueError, "rate=1.0"),
            (lambda: layers.ClassicDropout(-0.1), ValueError, "rate=-0.1"),
            (lambda: layers.ClassicDropout("0.5"), TypeError, "rate='0.5'"),
            (
                lambda: layers.ClassicDropout(0.1, seed="a"),
                TypeError,
                "seed='a'",
            ),
            (
                lambda: layers.ClassicDropout(math.nan),
                ValueError,
                "rate=nan",
            ),
            (
                lambda: layers.ClassicDropout(0.1, seed=2**70),
                ValueError,
                f"seed={2**70}",
            ),
            (
                lambda: layers.ClassicDropout(0.1, noise_shape=(0, 1)),
                ValueError,
                "noise_shape=(0, 1)",
            ),
        ],
    ),
    "DropBlock2D": Spec(
        "layer",
        lambda: layers.DropBlock2D(0.2, (2, 3), seed=5),
        [
            (lambda: layers.DropBlock2D(1.5, 3), ValueError, "rate=1.5"),
            (lambda: layers.DropBlock2D(0.1, 0), ValueError, "block_size=0"),
            (
                lambda: layers.DropBlock2D(0.1, (3, -1)),
                ValueError,
                "block_size=(3, -1)",
            ),
            (
                lambda: layers.DropBlock2D(0.1, 2.5),
                TypeError,
                "block_size=2.5",
            ),
            (
                lambda: layers.DropBlock2D(0.1, 3, data_format="NHWC"),
                ValueError,
                "data_format='NHWC'",
            ),
            (
                lambda: layers.DropBlock2D(0.1, (3, 3, 3)),
                ValueError,
                "block_size=(3, 3, 3)",
            ),
            (
                lambda: layers.drop_block_2d(_FEATURES, 1.5, 2),
                ValueError,
                "rate=1.5",
            ),
            (
                lambda: layers.drop_block_2d(_FEATURES, math.nan, 2),
                ValueError,
                "rate=nan",
            ),
            (
                lambda: layers.drop_block_2d(_FEATURES, -1, 2),
                ValueError,
                "rate=-1.0",
            ),
        ],
        input_shape=(6, 5, 2),
    ),
    "DropConnectDense": Spec(
        "layer",
        lambda: layers.DropConnectDense(3, rate=0.25, seed=6),
        [
            (
                lambda: layers.DropConnectDense(4, rate=1.0),
                ValueError,
                "rate=1.0",
            ),
            (
                lambda: layers.DropConnectDense(4, rate=None),
                TypeError,
                "rate=None",
            ),
            (
                lambda: layers.DropConnectDense(4, rate=0.1, seed=1.5),
                TypeError,
                "seed=1.5",
            ),
        ],
    ),
    "DropPath": Spec(
        "layer",
        lambda: layers.DropPath(0.3, seed=7),
        [
            (lambda: layers.DropPath(1.0), ValueError, "rate=1.0"),
            (lambda: layers.DropPath(-0.5), ValueError, "rate=-0.5"),
            (lambda: layers.DropPath("0.1"), TypeError, "rate='0.1'"),
            (lambda: layers.DropPath(0.1, seed=-1), ValueError, "seed=-1"),
            (
                lambda: layers.DropPath(0.1, seed=2**70),
                ValueError,
                f"seed={2**70}",
            ),
            (
                lambda: layers.stochastic_depth_rates(0, 0.1),
                ValueError,
                "num_blocks=0",
            ),
            (
                lambda: layers.stochastic_depth_rates(4, 1.0),
                ValueError,
                "max_rate=1.0",
            ),
            (
                lambda: layers.stochastic_depth_rates(2.5, 0.1),
                TypeError,
                "num_blocks=2.5",
            ),
        ],
    ),
    "DropRateScheduler": Spec(
        "callback",
        lambda: callbacks.DropRateScheduler(schedules.LinearRamp(0.0, 0.2, 4)),
        [
            (
                lambda: callbacks.DropRateScheduler("linear"),
                TypeError,
                "schedule='linear'",
            ),
            (
                lambda: callbacks.DropRateScheduler(
                    keras.optimizers.schedules.PolynomialDecay(0.1, 2),
                    layers=3,
                ),
                TypeError,
                "layers=3",
            ),
        ],
        extra_layers=lambda: [layers.ClassicDropout(0.0, seed=1)],
    ),
    "ExponentialDecay": Spec(
        "schedule",
        lambda: schedules.ExponentialDecay(0.05, 3, 0.5, staircase=True),
        [
            (
                lambda: schedules.ExponentialDecay(0.1, 0, 0.9),
                ValueError,
                "decay_steps=0",
            ),
            (
                lambda: schedules.ExponentialDecay(0.1, 10, 0.0),
                ValueError,
                "decay_rate=0.0",
            ),
            (
                lambda: schedules.ExponentialDecay(-0.1, 10, 0.9),
                ValueError,
                "initial_learning_rate=-0.1",
            ),
            (
                lambda: schedules.ExponentialDecay(0.1, 10, 0.9, staircase=1),
                TypeError,
                "staircase=1",
            ),
            (
                lambda: schedules.ExponentialDecay(0.1, 10, -1),
                ValueError,
                "decay_rate=-1.0",
            ),
            (
                lambda: schedules.ExponentialDecay("a", 10, 0.9),
                TypeError,
                "initial_learning_rate='a'",
            ),
            (
                lambda: schedules.ExponentialDecay(0.1, 2.5, 0.9),
                TypeError,
                "decay_steps=2.5",
            ),
        ],
    ),
    "StepDecay": Spec(
        "schedule",
        lambda: schedules.StepDecay(0.05, steps_per_epoch=4, epochs_per_drop=1),
        [
            (
                lambda: schedules.StepDecay(0.1, 0),
                ValueError,
                "steps_per_epoch=0",
            ),
            (lambda: schedules.StepDecay(0.1, 10, 1.5), ValueError, "drop=1.5"),
            (lambda: schedules.StepDecay(0.1, 10, 0.0), ValueError, "drop=0.0"),
            (
                lambda: schedules.StepDecay(0.1, 10, 0.5, 0),
                ValueError,
                "epochs_per_drop=0",
            ),
            (
                lambda: schedules.StepDecay(0.1, 10, None),
                TypeError,
                "drop=None",
            ),
        ],
    ),
    "LinearRamp": Spec(
        "schedule",
        lambda: schedules.LinearRamp(0.01, 0.05, 5),
        [
            (
                lambda: schedules.LinearRamp(0.0, 0.9, 0),
                ValueError,
                "ramp_steps=0",
            ),
            (
                lambda: schedules.LinearRamp(-0.1, 0.9, 10),
                ValueError,
                "start=-0.1",
            ),
            (
                lambda: schedules.LinearRamp(0.0, math.nan, 10),
                ValueError,
                "end=nan",
            ),
        ],
    ),
    "Warmup": Spec(
        "schedule",
        lambda: schedules.Warmup(
            schedules.ExponentialDecay(0.05, 4, 0.5), 3, initial_value=0.01
        ),
        [
            (lambda: schedules.Warmup(0.1, 10), TypeError, "schedule=0.1"),
            (
                lambda: schedules.Warmup(schedules.LinearRamp(0, 1, 2), 0),
                ValueError,
                "warmup_steps=0",
            ),
            (
                lambda: schedules.Warmup(
                    schedules.LinearRamp(0, 1, 2), 5, initial_value=-1.0
                ),
                ValueError,
                "initial_value=-1.0",
            ),
        ],
    ),
    "WeightNormLogger": Spec(
        "callback",
        lambda: callbacks.WeightNormLogger(
            log_dir=tempfile.mkdtemp(prefix="contract-"),
            update_freq=2,
            norms=("l2", "max"),
            hparams={"decay": 0.1},
            group_by="layer",
        ),
        [
            (
                lambda: callbacks.WeightNormLogger(update_freq=0),
                ValueError,
                "update_freq=0",
            ),
            (
                lambda: callbacks.WeightNormLogger(update_freq="step"),
                ValueError,
                "update_freq='step'",
            ),
            (
                lambda: callbacks.WeightNormLogger(norms=("l3",)),
                ValueError,
                "norms=('l3',)",
            ),
            (
                lambda: callbacks.WeightNormLogger(histograms="yes"),
                TypeError,
                "histograms='yes'",
            ),
            (
                lambda: callbacks.WeightNormLogger(hparams=[1]),
                TypeError,
                "hparams=[1]",
            ),
        ],
    ),
    "MomentumScheduler": Spec(
        "callback",
        lambda: callbacks.MomentumScheduler(schedules.LinearRamp(0.0, 0.9, 6)),
        [
            (
                lambda: callbacks.MomentumScheduler(0.9),
                TypeError,
                "schedule=0.9",
            ),
            (
                lambda: callbacks.MomentumScheduler(None),
                TypeError,
                "schedule=None",
            ),
        ],
    ),
    "WeightDecayScheduler": Spec(
        "callback",
        lambda: callbacks.WeightDecayScheduler(
            schedules.StepDecay(1e-2, steps_per_epoch=4, epochs_per_drop=1)
        ),
        [
            (
                lambda: callbacks.WeightDecayScheduler("cosine"),
                TypeError,
                "schedule='cosine'",
            ),
        ],
    ),
    "OneCycle": Spec(
        "schedule",
        lambda: schedules.OneCycle(0.05, 8, pct_start=0.4, three_phase=True),
        [
            (lambda: schedules.OneCycle(0.1, 0), ValueError, "total_steps=0"),
            (
                lambda: schedules.OneCycle(0.1, 10, anneal="exp"),
                ValueError,
                "anneal='exp'",
            ),
            (
                lambda: schedules.OneCycle(0.1, 10, final_div_factor=-1.0),
                ValueError,
                "final_div_factor=-1.0",
            ),
        ],
    ),
    "OneCycleMomentum": Spec(
        "schedule",  # exercised as a learning rate: small values
        lambda: schedules.OneCycleMomentum(
            8, base_momentum=0.01, max_momentum=0.05, anneal="linear"
        ),
        [
            (
                lambda: schedules.OneCycleMomentum(10, max_momentum=-0.5),
                ValueError,
                "max_momentum=-0.5",
            ),
            (
                lambda: schedules.OneCycleMomentum(10, pct_start=0.0),
                ValueError,
                "pct_start=0.0",
            ),
        ],
    ),
    **{
        name: Spec(
            "optimizer",
            make,
            [
                (
                    lambda name=name, arg=arg, value=value: getattr(
                        optimizers, name
                    )(**{arg: value}),
                    error,
                    f"{arg}={value!r}",
                )
                for arg, value, error in bad
            ],
        )
        for name, make, bad in [
            (
                "SGD",
                lambda: optimizers.SGD(
                    0.05,
                    momentum=schedules.LinearRamp(0.0, 0.9, 6),
                    weight_decay=schedules.ExponentialDecay(1e-2, 4, 0.5),
                    nesterov=True,
                ),
                [("momentum", 1.5, ValueError), ("momentum", "0.9", TypeError)],
            ),
            (
                "RMSprop",
                lambda: optimizers.RMSprop(
                    0.01, momentum=schedules.LinearRamp(0.0, 0.5, 6)
                ),
                [("momentum", -0.1, ValueError)],
            ),
            (
                "Adam",
                lambda: optimizers.Adam(
                    0.01, beta_1=schedules.LinearRamp(0.5, 0.9, 6)
                ),
                [("beta_1", 2.0, ValueError), ("beta_1", None, TypeError)],
            ),
            (
                "AdamW",
                lambda: optimizers.AdamW(
                    0.01, weight_decay=schedules.LinearRamp(0.0, 0.1, 6)
                ),
                [("weight_decay", -1.0, ValueError)],
            ),
            (
                "Nadam",
                lambda: optimizers.Nadam(
                    0.01, beta_1=schedules.LinearRamp(0.5, 0.9, 6)
                ),
                [("beta_1", math.nan, ValueError)],
            ),
            (
                "Adamax",
                lambda: optimizers.Adamax(
                    0.01,
                    beta_1=schedules.LinearRamp(0.5, 0.9, 6),
                    weight_decay=1e-3,
                ),
                [("weight_decay", "a", TypeError)],
            ),
            (
                "Lion",
                lambda: optimizers.Lion(
                    1e-3, beta_1=schedules.LinearRamp(0.5, 0.9, 6)
                ),
                [("beta_1", True, TypeError)],
            ),
        ]
        + (
            [
                (
                    "Muon",
                    lambda: optimizers.Muon(
                        1e-3,
                        weight_decay=schedules.LinearRamp(0.0, 0.1, 6),
                        weight_decay_mode="corrected",
                        cautious_weight_decay=True,
                    ),
                    [
                        ("weight_decay", -1.0, ValueError),
                        ("weight_decay_mode", "lr_max", ValueError),
                    ],
                )
            ]
            if hasattr(optimizers, "Muon")  # not on Keras 3.10
            else []
        )
    },
}


def _registered():
    names = []
    for key, cls in keras.saving.get_custom_objects().items():
        package, _, name = key.partition(">")
        if package == PACKAGE and cls.__module__.startswith(PACKAGE):
            names.append(name)
    return sorted(set(names))


REGISTERED = _registered()


def _names():
    """The spec names as pytest params, TensorFlow-only ones marked."""
    return [
        pytest.param(
            name,
            marks=[pytest.mark.tensorflow_only]
            if SPECS[name].tensorflow_only
            else [],
        )
        for name in sorted(SPECS)
    ]


BAD_CASES = [
    pytest.param(factory, error, message, id=f"{name}-{i}")
    for name, spec in SPECS.items()
    for i, (factory, error, message) in enumerate(spec.bad)
]


def test_every_registered_class_has_a_spec():
    assert REGISTERED, "no keras_decay class is registered"
    assert set(REGISTERED) == set(SPECS)


# --- the small model each kind is exercised in ------------------------------


def _data(input_shape, m=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, *input_shape)).astype("float32")
    y = rng.normal(size=(m, 2)).astype("float32")
    return x, y


def _model(spec, obj):
    """A compiled model that uses `obj`; same weights for the same seed."""
    keras.utils.set_random_seed(1)
    learning_rate = 0.05
    regularizer = None
    layers = [keras.Input(spec.input_shape)]
    if spec.kind == "regularizer":
        regularizer = obj
    elif spec.kind == "schedule":
        learning_rate = obj
    elif spec.kind == "layer":
        layers.append(obj)
    elif spec.kind == "optimizer":
        learning_rate = obj  # `_compile` takes an optimizer as it is
    elif spec.kind != "callback":
        raise AssertionError(spec.kind)
    if isinstance(
        obj, (callbacks.MomentumScheduler, callbacks.WeightDecayScheduler)
    ):
        # They give their schedule to a keras_decay optimizer.
        learning_rate = optimizers.SGD(learning_rate, decay_exclude=None)
    layers += list(spec.extra_layers())
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(2, kernel_regularizer=regularizer, name="head"),
    ]
    model = keras.Sequential(layers)
    return model, learning_rate


def _compile(model, learning_rate, jit_compile=False):
    optimizer = learning_rate
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate)
    model.compile(
        optimizer=optimizer,
        loss="mse",
        jit_compile=jit_compile,
    )
    return model


def _fit(spec, obj, jit_compile=False):
    model, learning_rate = _model(spec, obj)
    _compile(model, learning_rate, jit_compile)
    x, y = _data(spec.input_shape)
    callbacks = [obj] if spec.kind == "callback" else []
    history = model.fit(
        x, y, batch_size=4, epochs=2, verbose=0, callbacks=callbacks
    )
    return model, history, (x, y)


# --- the contracts ----------------------------------------------------------


@pytest.mark.parametrize("name", _names())
def test_config_round_trip(name):
    obj = SPECS[name].make()
    config = obj.get_config()
    assert type(obj).from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"] == f"{PACKAGE}>{name}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(obj)
    assert restored.get_config() == config


@pytest.mark.parametrize("name", _names())
def test_keras_file_round_trip(name, tmp_path):
    spec = SPECS[name]
    model, _, (x, y) = _fit(spec, spec.make())
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert len(loaded.losses) == len(model.losses)
    for a, b in zip(loaded.losses, model.losses):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
    np.testing.assert_array_equal(
        np.asarray(loaded.optimizer.learning_rate),
        np.asarray(model.optimizer.learning_rate),
    )
    if spec.kind == "callback":
        return  # the callback is not part of the saved model
    # Training goes on identically from the loaded copy (layers: the seed
    # generators' states are saved with the weights).
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("policy", ["mixed_float16", "bfloat16"])
@pytest.mark.parametrize("name", _names())
def test_fit_under_reduced_precision(name, policy):
    if name == "Nadam" and policy == "bfloat16":
        pytest.skip("keras.optimizers.Nadam itself gives NaN under bfloat16")
    spec = SPECS[name]
    keras.config.set_dtype_policy(policy)
    model, history, (x, _) = _fit(spec, spec.make())
    assert np.all(np.isfinite(history.history["loss"]))
    for weight in model.get_weights():
        assert np.all(np.isfinite(np.asarray(weight, "float32")))
    assert np.all(np.isfinite(np.asarray(model.predict(x, verbose=0), "f4")))
    if spec.kind == "regularizer":
        kernel = model.get_layer("head").kernel
        (penalty,) = model.losses
        keras.config.set_dtype_policy("float32")
        reference = spec.make()(
            keras.ops.convert_to_tensor(np.asarray(kernel, "float32"))
        )
        np.testing.assert_allclose(float(penalty), float(reference), rtol=1e-3)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name", _names())
def test_fit_with_jit_compile(name):
    spec = SPECS[name]
    _, history, _ = _fit(spec, spec.make(), jit_compile=True)
    assert np.all(np.isfinite(history.history["loss"]))
    _, plain_history, _ = _fit(spec, spec.make(), jit_compile=False)
    if spec.kind not in ("layer", "callback"):  # deterministic: same fit
        np.testing.assert_allclose(
            history.history["loss"], plain_history.history["loss"], rtol=1e-5
        )


@pytest.mark.parametrize("factory, error, message", BAD_CASES)
def test_bad_input(factory, error, message):
    with pytest.raises(error) as info:
        factory()
    text = str(info.value)
    assert text.startswith("Invalid value received for argument `")
    assert text.endswith(f"Received: {message}")


@pytest.mark.parametrize(
    "make, attribute",
    [
        (
            lambda flag: schedules.ExponentialDecay(0.1, 10, 0.9, flag),
            "staircase",
        ),
        pytest.param(
            lambda flag: callbacks.WeightNormLogger(histograms=flag),
            "histograms",
            marks=pytest.mark.tensorflow_only,
        ),
    ],
    ids=["ExponentialDecay", "WeightNormLogger"],
)
def test_numpy_bool_is_accepted_as_a_bool(make, attribute):
    obj = make(np.bool_(True))
    # Stored as a Python bool, so that the config stays JSON-serializable.
    assert getattr(obj, attribute) is True
    assert make(np.bool_(False)).get_config()[attribute] is False
