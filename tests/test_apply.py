"""keras_decay.apply_weight_decay: selection, multipliers, effect, saving."""

import os
import warnings

import keras
import numpy as np
import pytest

from keras_decay import DecayReport
from keras_decay import apply_weight_decay
from keras_decay.regularizers import L1Decay
from keras_decay.regularizers import WeightDecay

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions


def _cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, name="conv1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Conv2D(4, 3, name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(6, name="fc"),
            keras.layers.Dense(3, name="classifier"),
        ]
    )


def _data(m=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=(m,))
    return x, y


def _expected_penalty(model, rates):
    """sum over kernels of rate/2 * sum(w**2), in float64."""
    total = 0.0
    for variable in model.trainable_variables:
        rate = rates.get(variable.path, 0.0)
        w = np.asarray(variable, dtype="float64")
        total += rate / 2.0 * np.sum(w**2)
    return total


def test_default_rule_decays_kernels_not_biases_or_norm_parameters():
    model = _cnn()
    report = apply_weight_decay(model, 1e-3)
    decayed = {row.path for row in report.decayed}
    kernels = {
        v.path for v in model.trainable_variables if v.path.endswith("kernel")
    }
    assert decayed == kernels
    for variable in model.trainable_variables:
        if len(variable.shape) <= 1:
            assert variable.regularizer is None
            assert report[variable.path].note == "ndim <= 1"
        else:
            assert isinstance(variable.regularizer, WeightDecay)
            assert variable.regularizer.rate == 1e-3
    # One row per trainable variable, in a printable table.
    assert len(report) == len(model.trainable_variables)
    table = str(report)
    for variable in model.trainable_variables:
        assert variable.path in table
    assert "4 of 10 trainable variables decayed" in table


def test_penalty_matches_numpy_sum_over_kernels():
    model = _cnn()
    apply_weight_decay(model, 0.01)
    rates = {
        v.path: 0.01 for v in model.trainable_variables if len(v.shape) > 1
    }
    got = float(keras.ops.sum(keras.ops.stack(model.losses)))
    np.testing.assert_allclose(got, _expected_penalty(model, rates), rtol=1e-6)


def test_caffe_decay_mult_and_exclude():
    model = _cnn()
    report = apply_weight_decay(
        model,
        0.01,
        decay_mult={"conv*": 2.0, "classifier": 0.0},
        exclude=["*/fc/*"],
    )
    by_path = {row.path: row for row in report}
    conv1 = model.get_layer("conv1").kernel.path
    fc = model.get_layer("fc").kernel.path
    classifier = model.get_layer("classifier").kernel.path
    assert by_path[conv1].multiplier == 2.0
    assert by_path[conv1].rate == pytest.approx(0.02, rel=1e-12)
    assert model.get_layer("conv1").kernel.regularizer.rate == pytest.approx(
        0.02, rel=1e-12
    )
    assert by_path[fc].rate == 0.0 and by_path[fc].note == "excluded"
    assert model.get_layer("fc").kernel.regularizer is None
    assert by_path[classifier].note == "decay_mult 0"
    assert model.get_layer("classifier").kernel.regularizer is None
    rates = {
        model.get_layer("conv1").kernel.path: 0.02,
        model.get_layer("conv2").kernel.path: 0.02,
    }
    got = float(keras.ops.sum(keras.ops.stack(model.losses)))
    np.testing.assert_allclose(got, _expected_penalty(model, rates), rtol=1e-6)


def test_first_matching_pattern_wins():
    model = _cnn()
    report = apply_weight_decay(
        model, 1.0, decay_mult={"conv1": 3.0, "conv*": 0.5}
    )
    assert report[model.get_layer("conv1").kernel.path].multiplier == 3.0
    assert report[model.get_layer("conv2").kernel.path].multiplier == 0.5


def test_l1_kind_and_num_examples():
    model = _cnn()
    apply_weight_decay(model, 0.5, kind="l1", num_examples=100)
    kernel = model.get_layer("fc").kernel
    assert isinstance(kernel.regularizer, L1Decay)
    assert kernel.regularizer.num_examples == 100
    expected = 0.5 / 100 * np.sum(np.abs(np.asarray(kernel, "float64")))
    np.testing.assert_allclose(
        float(kernel.regularizer(kernel)), expected, rtol=1e-6
    )


def test_takes_effect_after_the_model_was_compiled_and_trained():
    x, y = _data()
    model = _cnn()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)  # traces without any penalty
    apply_weight_decay(model, 0.5)

    kernel = model.get_layer("classifier").kernel
    w0 = np.asarray(kernel, "float64")
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    model.train_on_batch(x, y)
    w1 = np.asarray(kernel, "float64")

    # The same step without the penalty, from the same weights.
    plain = _cnn()
    plain.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    for v, value in zip(plain.trainable_variables, before):
        v.assign(value)
    plain.get_layer("bn").moving_mean.assign(
        np.array(model.get_layer("bn").moving_mean.numpy())
    )
    plain.train_on_batch(x, y)
    w1_plain = np.asarray(plain.get_layer("classifier").kernel, "float64")

    # SGD with WeightDecay(0.5): the decayed step differs by -lr*0.5*w0.
    np.testing.assert_allclose(w1 - w1_plain, -0.1 * 0.5 * w0, atol=2e-6)

    # evaluate() re-traces too: its loss includes the penalty.
    loss = model.evaluate(x, y, verbose=0)
    loss_plain = plain.evaluate(x, y, verbose=0)
    kernels = {
        v.path: 0.5 for v in model.trainable_variables if len(v.shape) > 1
    }
    penalty = _expected_penalty(model, kernels)
    assert penalty > 1.0
    assert loss > loss_plain + 0.5 * penalty


def test_existing_regularizer_is_an_error_unless_overwrite():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3, name="d", kernel_regularizer=keras.regularizers.L2(0.1)
            ),
        ]
    )
    path = model.get_layer("d").kernel.path
    with pytest.raises(ValueError, match=f"{path}.*overwrite=True"):
        apply_weight_decay(model, 1e-3)
    # Nothing was changed by the failed call.
    assert isinstance(
        model.get_layer("d").kernel.regularizer, keras.regularizers.L2
    )
    apply_weight_decay(model, 1e-3, overwrite=True)
    assert isinstance(model.get_layer("d").kernel.regularizer, WeightDecay)
    assert isinstance(model.get_layer("d").kernel_regularizer, WeightDecay)
    assert len(model.losses) == 1


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_survives_save_and_load(kind, tmp_path):
    if kind == "sequential":
        model = _cnn()
    else:
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
        h = keras.layers.Flatten()(h)
        outputs = keras.layers.Dense(3, name="classifier")(h)
        model = keras.Model(inputs, outputs)
    apply_weight_decay(model, 0.01, decay_mult={"classifier": 0.5})
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)

    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert len(loaded.losses) == len(model.losses)
    for a, b in zip(loaded.losses, model.losses):
        np.testing.assert_allclose(float(a), float(b), rtol=1e-7)
    kernel = loaded.get_layer("classifier").kernel
    assert kernel.regularizer.get_config() == {
        "rate": 0.005,
        "num_examples": None,
    }


def test_subclassed_model_is_decayed_and_warns_that_it_is_not_saved():
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(5, name="hidden")
            self.out = keras.layers.Dense(2, name="out")

        def call(self, x):
            return self.out(self.hidden(x))

    model = Net()
    model(np.zeros((1, 3), "float32"))
    with pytest.warns(UserWarning, match="will not keep it"):
        report = apply_weight_decay(model, 0.1)
    assert {row.path for row in report.decayed} == {
        model.hidden.kernel.path,
        model.out.kernel.path,
    }
    assert all(row.note == "not saved" for row in report.decayed)
    expected = sum(
        0.05 * np.sum(np.asarray(v, "float64") ** 2)
        for v in (model.hidden.kernel, model.out.kernel)
    )
    got = float(keras.ops.sum(keras.ops.stack(model.losses)))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nested_sequential_inside_functional_is_saved_without_warning():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="inner_dense")],
        name="inner",
    )
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = apply_weight_decay(model, 0.1)
    assert len(report.decayed) == 2
    assert all(row.note == "" for row in report.decayed)


def test_report_is_a_decay_report():
    report = apply_weight_decay(_cnn(), 0.1)
    assert isinstance(report, DecayReport)
    assert "DecayReport" in repr(report)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"rate": -1.0}, ValueError, "Received: rate=-1.0"),
        ({"rate": "big"}, TypeError, "Received: rate='big'"),
        ({"kind": "l3"}, ValueError, "Received: kind='l3'"),
        ({"num_examples": 0}, ValueError, "Received: num_examples=0"),
        ({"decay_mult": [1.0]}, TypeError, r"Received: decay_mult=\[1.0\]"),
        (
            {"decay_mult": {"conv*": -2.0}},
            ValueError,
            r"Received: decay_mult\['conv\*'\]=-2.0",
        ),
        ({"exclude": 3}, TypeError, "Received: exclude=3"),
        ({"overwrite": "yes"}, TypeError, "Received: overwrite='yes'"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    model = _cnn()
    kwargs = {"rate": 0.1, **kwargs}
    rate = kwargs.pop("rate")
    with pytest.raises(error, match=message + "$"):
        apply_weight_decay(model, rate, **kwargs)
    assert all(v.regularizer is None for v in model.trainable_variables)


def test_model_must_be_a_built_keras_model():
    with pytest.raises(TypeError, match="argument `model`"):
        apply_weight_decay(keras.layers.Dense(3), 0.1)
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="Expected a built model"):
        apply_weight_decay(unbuilt, 0.1)


def _dense_with_l2(l2=1.0):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3, name="d", kernel_regularizer=keras.regularizers.L2(l2)
            ),
            keras.layers.Dense(2, name="e"),
        ]
    )
    model.get_layer("d").kernel.assign(np.full((4, 3), 1.5, "float32"))
    return model


def _total_penalty(model):
    return sum(float(loss) for loss in model.losses)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: apply_weight_decay(m, 0.0, overwrite=True),
        lambda m: apply_weight_decay(
            m, 0.1, decay_mult={"d": 0.0}, overwrite=True
        ),
    ],
    ids=["rate 0", "decay_mult 0"],
)
def test_overwrite_removes_a_regularizer_it_does_not_decay(call, tmp_path):
    model = _dense_with_l2()
    assert _total_penalty(model) == pytest.approx(1.0 * 12 * 1.5**2)
    report = call(model)
    row = report[model.get_layer("d").kernel.path]
    assert row.rate == 0.0 and "removed L2" in row.note
    assert model.get_layer("d").kernel.regularizer is None
    assert model.get_layer("d").kernel_regularizer is None
    # What the report says decayed is all that model.losses holds.
    expected = _expected_penalty(model, {r.path: r.rate for r in report})
    assert _total_penalty(model) == pytest.approx(expected, rel=1e-6)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("d").kernel.regularizer is None
    assert _total_penalty(loaded) == pytest.approx(expected, rel=1e-6)


def test_without_overwrite_a_kept_regularizer_is_in_the_report():
    model = _dense_with_l2(l2=2.0)
    report = apply_weight_decay(model, 0.1, decay_mult={"d": 0.0})
    row = report[model.get_layer("d").kernel.path]
    assert row.note == "decay_mult 0; kept L2"
    assert isinstance(
        model.get_layer("d").kernel.regularizer, keras.regularizers.L2
    )
    # The report describes model.losses: the kept L2(2.0) is a decay of
    # rate 4.0 in the gradient convention (penalty 4.0 / 2 * sum w**2).
    assert row.rate == 4.0 and row in report.decayed
    assert "2 of 4 trainable variables decayed; 1 keeps an earlier " in str(
        report
    )
    # model.losses: the kept L2 (2 * sum w**2) plus the new decay on `e`.
    e = np.asarray(model.get_layer("e").kernel, "float64")
    expected = 2.0 * 12 * 1.5**2 + 0.1 / 2.0 * np.sum(e**2)
    assert _total_penalty(model) == pytest.approx(expected, rel=1e-6)
    rates = {r.path: r.rate for r in report}
    assert _expected_penalty(model, rates) == pytest.approx(expected, rel=1e-6)


def test_a_kept_regularizer_of_our_own_keeps_its_rate_in_the_report():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3, name="d", kernel_regularizer=WeightDecay(1.0)
            ),
            keras.layers.Dense(2, name="e"),
        ]
    )
    layer = model.get_layer("d")
    report = apply_weight_decay(model, 1.0, decay_mult={"d": 0.0})
    row = report[layer.kernel.path]
    assert (row.rate, row.note) == (1.0, "decay_mult 0; kept WeightDecay")
    assert {r.path for r in report.decayed} == {
        layer.kernel.path,
        model.get_layer("e").kernel.path,
    }


def test_ndim_rule_wins_over_decay_mult():
    model = _cnn()
    report = apply_weight_decay(model, 0.1, decay_mult={"bn": 2.0})
    for variable in model.get_layer("bn").trainable_weights:
        assert report[variable.path].rate == 0.0
        assert report[variable.path].note == "ndim <= 1"
        assert variable.regularizer is None


def test_decay_mult_names_a_nested_model():
    backbone = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, name="conv_like"),
            keras.layers.Dense(4, name="other"),
        ],
        name="backbone",
    )
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    report = apply_weight_decay(model, 0.1, decay_mult={"backbone": 0.5})
    for name in ("conv_like", "other"):
        kernel = backbone.get_layer(name).kernel
        assert report[kernel.path].rate == pytest.approx(0.05, rel=1e-12)
    assert report[model.get_layer("head").kernel.path].rate == 0.1


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"decay_mult": {"conv*": 2.0, "conv9": 1.0}}, "'conv9'"),
        ({"exclude": ["*/fc/*", "*/nope/*"]}, r"'\*/nope/\*'"),
        ({"exclude": "conv1/*"}, r"'conv1/\*'"),  # paths start with the model
    ],
)
def test_a_pattern_that_matches_nothing_is_an_error(kwargs, pattern):
    model = _cnn()
    argument = next(iter(kwargs))
    with pytest.raises(
        ValueError, match=f"argument `{argument}`.*{pattern} matches none"
    ):
        apply_weight_decay(model, 0.1, **kwargs)
    assert all(v.regularizer is None for v in model.trainable_variables)


def test_a_shadowed_pattern_is_not_an_error():
    model = _cnn()
    report = apply_weight_decay(
        model, 1.0, decay_mult={"conv*": 3.0, "conv1": 0.5}
    )
    assert report[model.get_layer("conv1").kernel.path].multiplier == 3.0


def test_a_model_without_trainable_variables_is_an_error():
    model = _cnn()
    model.trainable = False
    with pytest.raises(ValueError, match="a model with trainable variables"):
        apply_weight_decay(model, 0.1)
    empty = keras.Sequential([keras.Input((4,)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="Received: model=<Sequential"):
        apply_weight_decay(empty, 0.1)


def _rnn_model(cell):
    inputs = keras.Input((5, 3))
    h = keras.layers.Bidirectional(cell(4, name="inner"), name="bi")(inputs)
    h = keras.layers.Reshape((2, 4))(h)
    h = cell(3, name="rnn")(h)
    outputs = keras.layers.Dense(2, name="head")(h)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("cell", [keras.layers.LSTM, keras.layers.GRU])
def test_rnn_decay_is_saved_without_a_warning(cell, tmp_path):
    model = _rnn_model(cell)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = apply_weight_decay(model, 0.1, decay_mult={"bi": 0.5})
    assert all("not saved" not in row.note for row in report)
    rates = {row.path: row.rate for row in report}
    kernels = [
        v for v in model.trainable_variables if v.path.endswith("kernel")
    ]
    # Kernel and recurrent kernel of three cells (two directions and rnn),
    # and the head's kernel.
    assert len(kernels) == 2 * 3 + 1
    for v in kernels:
        expected = 0.05 if v.path.startswith("bi/") else 0.1
        assert rates[v.path] == pytest.approx(expected, rel=1e-12)
    expected = _expected_penalty(model, rates)
    assert _total_penalty(model) == pytest.approx(expected, rel=1e-6)

    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert _total_penalty(loaded) == pytest.approx(expected, rel=1e-6)
    # Same order (Keras 3.15 drops the "bi/" prefix of the paths on loading,
    # keras-team/keras#23251).
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        assert a.shape == b.shape
        if a.regularizer is None:
            assert b.regularizer is None
        else:
            assert b.regularizer.get_config() == a.regularizer.get_config()


def test_rnn_inside_a_subclassed_model_warns_not_saved():
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.rnn = keras.layers.LSTM(3, name="rnn")

        def call(self, x):
            return self.rnn(x)

    model = Net()
    model(np.zeros((1, 5, 2), "float32"))
    with pytest.warns(UserWarning, match="will not keep it"):
        report = apply_weight_decay(model, 0.1)
    assert [row.note for row in report.decayed] == ["not saved"] * 2
