"""keras_decay.optimizers groups: decay_exclude, decay_mult, lr_mult, report.

Every number is compared with the update written out in NumPy here, per
variable, with the multipliers of each variable written by hand.
"""

import os
import warnings

import keras
import numpy as np
import pytest

from keras_decay import DecayReport
from keras_decay import optimizers

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

ALL = [
    optimizers.SGD,
    optimizers.RMSprop,
    optimizers.Adam,
    optimizers.AdamW,
    optimizers.Nadam,
    optimizers.Adamax,
    optimizers.Lion,
]


def _model():
    backbone = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, name="b1"),
            keras.layers.Dense(5, name="b2"),
        ],
        name="backbone",
    )
    inputs = keras.Input((4,))
    h = backbone(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Dense(3, name="mid")(h)
    h = keras.layers.LayerNormalization(name="ln")(h)
    outputs = keras.layers.Dense(2, name="head")(h)
    return keras.Model(inputs, outputs)


def _suffix(variable):
    """`layer/name`, the part of the path Keras keeps across load_model."""
    return "/".join(variable.path.split("/")[-2:])


# (decay multiplier, lr multiplier) by hand for `_grouped`: decay_mult
# {"backbone": 2}, lr_mult {"backbone": 0.1, "head": 0}, b2 and mid kernels
# excluded by two calls of exclude_from_weight_decay, ndim <= 1 excluded.
GROUPED = {
    "b1/kernel": (2.0, 0.1),
    "b1/bias": (0.0, 0.1),
    "b2/kernel": (0.0, 0.1),
    "b2/bias": (0.0, 0.1),
    "bn/gamma": (0.0, 1.0),
    "bn/beta": (0.0, 1.0),
    "mid/kernel": (0.0, 1.0),
    "mid/bias": (0.0, 1.0),
    "ln/gamma": (0.0, 1.0),
    "ln/beta": (0.0, 1.0),
    "head/kernel": (1.0, 0.0),
    "head/bias": (0.0, 0.0),
}


def _grouped(cls, model, **kwargs):
    optimizer = cls(
        decay_mult={"backbone": 2.0},
        lr_mult={"backbone": 0.1, "head": 0.0},
        **kwargs,
    )
    backbone = model.get_layer("backbone")
    optimizer.exclude_from_weight_decay(
        var_list=[backbone.get_layer("b2").kernel]
    )
    # Adds to the first call (Keras' own method would replace it).
    optimizer.exclude_from_weight_decay(
        var_list=[model.get_layer("mid").kernel]
    )
    return optimizer


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))


def _gradients(model, seed):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=v.shape).astype("float32")
        for v in model.trainable_variables
    ]


def _apply(optimizer, model, grads):
    optimizer.apply(
        [keras.ops.convert_to_tensor(g) for g in grads],
        model.trainable_variables,
    )


def _values(model):
    return [np.array(v.numpy(), "float64") for v in model.trainable_variables]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_decay_of_each_group_with_zero_gradient(cls):
    # With a zero gradient every optimizer's own step is 0 (SGD, momentum,
    # Adam's m / (sqrt(v) + eps), Lion's sign(0)): only the decoupled decay
    # w <- w - (lr * lr_mult) * (wd * decay_mult) * w moves the weights.
    model = _model()
    _randomize(model)
    lr, wd = 0.1, 0.3
    optimizer = _grouped(cls, model, learning_rate=lr, weight_decay=wd)
    before = _values(model)
    _apply(optimizer, model, [np.zeros(v.shape, "float32") for v in before])
    for variable, w0 in zip(model.trainable_variables, before):
        decay, lr_mult = GROUPED[_suffix(variable)]
        expected = w0 - (lr * lr_mult) * (wd * decay) * w0
        np.testing.assert_allclose(
            variable.numpy(), expected, rtol=1e-6, atol=1e-7
        )


def test_sgd_momentum_two_steps_per_group_match_numpy():
    model = _model()
    _randomize(model)
    lr, mu, wd = 0.1, 0.9, 0.05
    optimizer = _grouped(
        optimizers.SGD, model, learning_rate=lr, momentum=mu, weight_decay=wd
    )
    w = _values(model)
    velocity = [np.zeros_like(x) for x in w]
    for step in range(2):
        grads = _gradients(model, seed=10 + step)
        _apply(optimizer, model, grads)
        for i, variable in enumerate(model.trainable_variables):
            decay, lr_mult = GROUPED[_suffix(variable)]
            lr_v = lr * lr_mult
            w[i] = w[i] - lr_v * wd * decay * w[i]
            velocity[i] = mu * velocity[i] - lr_v * grads[i]
            w[i] = w[i] + velocity[i]
    for variable, expected in zip(model.trainable_variables, w):
        np.testing.assert_allclose(
            variable.numpy(), expected, rtol=1e-5, atol=1e-6
        )
    frozen = model.get_layer("head").kernel
    assert GROUPED[_suffix(frozen)][1] == 0.0


def test_adam_one_step_per_group_matches_numpy():
    model = _model()
    _randomize(model)
    lr, wd, b1, b2, eps = 0.01, 0.2, 0.9, 0.999, 1e-7
    optimizer = _grouped(
        optimizers.Adam, model, learning_rate=lr, weight_decay=wd
    )
    w0 = _values(model)
    grads = _gradients(model, seed=3)
    _apply(optimizer, model, grads)
    for variable, w, g in zip(model.trainable_variables, w0, grads):
        decay, lr_mult = GROUPED[_suffix(variable)]
        lr_v = lr * lr_mult
        w = w - lr_v * wd * decay * w
        m = (1 - b1) * g
        v = (1 - b2) * g.astype("float64") ** 2
        alpha = lr_v * np.sqrt(1 - b2) / (1 - b1)  # Keras' bias correction
        w = w - alpha * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5, atol=1e-6)


def _pytorch_adamw_groups(params, grads_per_step, groups, b1, b2, eps):
    """torch.optim.AdamW with param groups, written out in NumPy.

    `groups`: one `(lr, weight_decay)` per parameter. PyTorch's step:
    p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g**2;
    p -= lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps).
    """
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (g, (lr, wd)) in enumerate(zip(grads, groups)):
            g = g.astype("float64")
            params[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            denominator = np.sqrt(v[i]) / np.sqrt(1 - b2**t) + eps
            params[i] -= lr / (1 - b1**t) * m[i] / denominator
    return params


def test_adamw_decay_no_decay_groups_equal_pytorch_param_groups():
    # The usual recipe: param_groups = [{"params": weights, "weight_decay":
    # 0.05}, {"params": biases and norms, "weight_decay": 0.0}].
    model = _model()
    _randomize(model)
    lr, wd, b1, b2 = 2e-3, 0.05, 0.9, 0.999
    # A tiny epsilon: Keras adds it to sqrt(v), PyTorch to sqrt(v_hat).
    eps = 1e-12
    optimizer = optimizers.AdamW(
        learning_rate=lr, weight_decay=wd, beta_1=b1, beta_2=b2, epsilon=eps
    )
    params = _values(model)
    steps = [_gradients(model, seed=20 + t) for t in range(3)]
    for grads in steps:
        _apply(optimizer, model, grads)
    groups = [
        (lr, wd if len(v.shape) > 1 else 0.0) for v in model.trainable_variables
    ]
    expected = _pytorch_adamw_groups(params, steps, groups, b1, b2, eps)
    for variable, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=2e-5, atol=1e-6)


def test_decay_exclude_none_decays_every_variable_like_keras():
    model = _model()
    _randomize(model)
    optimizer = optimizers.SGD(0.1, weight_decay=0.5, decay_exclude=None)
    before = _values(model)
    _apply(optimizer, model, [np.zeros(v.shape, "float32") for v in before])
    for variable, w0 in zip(model.trainable_variables, before):
        np.testing.assert_allclose(
            variable.numpy(), w0 * (1 - 0.1 * 0.5), rtol=1e-6
        )
    report = optimizer.decay_report()
    assert len(report.decayed) == len(model.trainable_variables)


def test_decay_exclude_patterns_add_to_the_ndim_rule():
    model = _model()
    optimizer = optimizers.SGD(
        0.1, weight_decay=0.5, decay_exclude=["mid/*", "*/b1/kernel"]
    )
    optimizer.build(model.trainable_variables)
    decayed = {_suffix(v) for v in model.trainable_variables} - {
        "b1/kernel",
        "mid/kernel",
    }
    decayed = {s for s in decayed if s.endswith("kernel")}
    assert {
        _suffix(v)
        for v, row in zip(model.trainable_variables, optimizer.decay_report())
        if row.decayed
    } == decayed
    assert optimizer.decay_report()["backbone/b1/kernel"].note == "excluded"


def test_repeated_exclude_from_weight_decay_by_name_accumulates():
    model = _model()
    ours = optimizers.AdamW(0.01, weight_decay=0.1, decay_exclude=None)
    stock = keras.optimizers.AdamW(0.01, weight_decay=0.1)
    # The keras-io BART example's three calls.
    for optimizer in (ours, stock):
        for name in ("bias", "gamma", "beta"):
            optimizer.exclude_from_weight_decay(var_names=[name])
        optimizer.build(model.trainable_variables)
    excluded = {"bias", "gamma", "beta"}
    for variable in model.trainable_variables:
        assert ours._decay_multiplier(variable) == (
            0.0 if variable.name in excluded else 1.0
        )
    # Keras keeps only the last call: a bias is still decayed there.
    bias = model.get_layer("head").bias
    assert stock._use_weight_decay(bias)


def test_lr_mult_scales_the_whole_update_and_zero_freezes():
    model = _model()
    _randomize(model)
    base = _model()
    for a, b in zip(base.trainable_variables, model.trainable_variables):
        a.assign(b)
    half = optimizers.SGD(0.2, weight_decay=0.1, lr_mult={"head": 0.5})
    plain = optimizers.SGD(0.1, weight_decay=0.1)
    grads = _gradients(model, seed=5)
    _apply(half, model, grads)
    _apply(plain, base, grads)
    # lr 0.2 * 0.5 on head equals lr 0.1, decay included.
    head, base_head = model.get_layer("head"), base.get_layer("head")
    np.testing.assert_allclose(
        head.kernel.numpy(), base_head.kernel.numpy(), rtol=1e-6
    )
    frozen = optimizers.Adam(0.1, weight_decay=0.5, lr_mult={"backbone": 0})
    backbone = model.get_layer("backbone")
    before = [v.numpy().copy() for v in backbone.trainable_variables]
    for seed in range(3):
        _apply(frozen, model, _gradients(model, seed=seed))
    for variable, w0 in zip(backbone.trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), w0)


def _conv_model():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8, name="embed")(inputs)
    h = keras.layers.Reshape((6, 8, 1))(h)
    h = keras.layers.Conv2D(4, 3, name="conv")(h)  # channels_last
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(5, name="fc")(h)
    h = keras.layers.LayerNormalization(name="ln")(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs)


def test_report_on_conv_dense_norms_and_embedding():
    model = _conv_model()
    optimizer = optimizers.AdamW(
        1e-3, weight_decay=0.05, decay_mult={"embed": 0.0, "fc": 2.0}
    )
    with pytest.raises(ValueError, match="needs a built optimizer"):
        optimizer.decay_report()
    optimizer.build(model.trainable_variables)
    report = optimizer.decay_report()
    assert isinstance(report, DecayReport)
    assert report.kind == "decoupled"
    expected = {
        "embed/embeddings": (0.0, "decay_mult 0"),
        "conv/kernel": (1.0, ""),
        "conv/bias": (0.0, "ndim <= 1"),
        "bn/gamma": (0.0, "ndim <= 1"),
        "bn/beta": (0.0, "ndim <= 1"),
        "fc/kernel": (2.0, ""),
        "fc/bias": (0.0, "ndim <= 1"),
        "ln/gamma": (0.0, "ndim <= 1"),
        "ln/beta": (0.0, "ndim <= 1"),
        "head/kernel": (1.0, ""),
        "head/bias": (0.0, "ndim <= 1"),
    }
    assert [row.path for row in report] == [
        v.path for v in model.trainable_variables
    ]
    for variable, row in zip(model.trainable_variables, report):
        multiplier, note = expected[_suffix(variable)]
        assert row.shape == tuple(variable.shape)
        assert row.multiplier == multiplier
        assert row.rate == pytest.approx(0.05 * multiplier, rel=1e-6)
        assert row.lr_multiplier == 1.0
        assert row.note == note
    table = str(report)
    for variable in model.trainable_variables:
        assert variable.path in table
    assert "lr mult" in table and "decoupled weight decay" in table
    assert table.endswith("3 of 11 trainable variables decayed")


def test_save_and_load_keep_the_groups(tmp_path):
    model = _model()
    optimizer = _grouped(optimizers.AdamW, model, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["gamma"])
    # XLA where it is quick; on PyTorch `jit_compile=True` is torch.compile
    # (90 s of C++ compilation on CPU), so the eager step is saved there.
    xla = keras.backend.backend() != "torch"
    model.compile(optimizer, "mse", jit_compile=xla)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True

    a, b = optimizer.decay_report(), loaded.optimizer.decay_report()
    assert [(r.multiplier, r.lr_multiplier, r.note) for r in a] == [
        (r.multiplier, r.lr_multiplier, r.note) for r in b
    ]
    for variable, row in zip(loaded.trainable_variables, b):
        assert (row.multiplier, row.lr_multiplier) == GROUPED[_suffix(variable)]
    config = loaded.optimizer.get_config()
    assert config["decay_mult"] == {"backbone": 2.0}
    assert config["lr_mult"] == {"backbone": 0.1, "head": 0.0}
    assert config["excluded_names"] == ["gamma"]
    # Training on from the checkpoint equals training on without it.
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    for v, w in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-6, atol=1e-7)


def test_config_round_trip_before_build():
    optimizer = optimizers.SGD(
        0.1,
        weight_decay=0.01,
        decay_exclude=["*/head/*"],
        decay_mult={"b*": 0.5},
        lr_mult={"head": 2.0},
    )
    config = optimizer.get_config()
    assert config["decay_exclude"] == ["*/head/*"]
    assert "decay_groups" not in config
    again = optimizers.SGD.from_config(config)
    assert again.get_config() == config
    assert (
        optimizers.SGD(0.1, decay_exclude=None).get_config()["decay_exclude"]
        is None
    )


@pytest.mark.parametrize(
    "kwargs, argument, pattern",
    [
        ({"decay_exclude": ["nothing/*"]}, "decay_exclude", r"nothing/\*"),
        ({"decay_mult": {"backbone": 1.0, "nope": 2.0}}, "decay_mult", "nope"),
        ({"lr_mult": {"hea": 0.5}}, "lr_mult", "hea"),
    ],
)
def test_a_pattern_matching_no_variable_fails_at_build(
    kwargs, argument, pattern
):
    model = _model()
    optimizer = optimizers.AdamW(0.01, **kwargs)
    model.compile(optimizer, "mse")
    before = _values(model)
    x = np.zeros((4, 4), "float32")
    y = np.zeros((4, 2), "float32")
    with pytest.raises(
        ValueError, match=f"argument `{argument}`.*'{pattern}' matches none"
    ):
        model.fit(x, y, verbose=0)
    for variable, w0 in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), w0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"decay_exclude": "none"}, ValueError, "decay_exclude='none'"),
        ({"decay_exclude": 3}, TypeError, "decay_exclude=3"),
        ({"decay_exclude": [1]}, TypeError, r"decay_exclude=\[1\]"),
        ({"decay_mult": [1.0]}, TypeError, r"decay_mult=\[1.0\]"),
        ({"decay_mult": {"a": -1.0}}, ValueError, r"decay_mult\['a'\]=-1.0"),
        ({"decay_mult": {"a": "x"}}, TypeError, r"decay_mult\['a'\]='x'"),
        ({"decay_mult": {1: 1.0}}, TypeError, r"decay_mult=\{1: 1.0\}"),
        ({"lr_mult": {"a": float("inf")}}, ValueError, r"lr_mult\['a'\]=inf"),
        ({"lr_mult": "head"}, TypeError, "lr_mult='head'"),
    ],
)
@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.Lion])
def test_bad_arguments(cls, kwargs, error, message):
    with pytest.raises(error, match=f"Received: {message}$"):
        cls(**kwargs)


def test_bad_exclude_from_weight_decay_calls():
    model = _model()
    optimizer = optimizers.SGD(0.1, weight_decay=0.1)
    with pytest.raises(TypeError, match="Received: var_names='bias'$"):
        optimizer.exclude_from_weight_decay(var_names="bias")
    with pytest.raises(ValueError, match=r"Received: var_names=\['\('\]$"):
        optimizer.exclude_from_weight_decay(var_names=["("])
    with pytest.raises(TypeError, match="Received: var_list=3$"):
        optimizer.exclude_from_weight_decay(var_list=3)
    optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_weight_decay(var_names=["bias"])


# --- drop-in where Keras is (Keras' own optimizer tests found these) --------


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_a_model_without_trainable_weights_builds_fits_and_loads(cls, tmp_path):
    kwargs = {"weight_decay": 0.1}
    optimizer = cls(**kwargs)
    optimizer.build([])  # Keras builds fine
    assert optimizer.decay_report().rows == []
    model = _model()
    model.trainable = False
    model.compile(cls(**kwargs), "mse")
    x = np.ones((4, 4), "float32")
    y = np.ones((4, 2), "float32")
    before = model.get_weights()
    model.fit(x, y, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    path = os.path.join(tmp_path, "frozen.keras")
    model.save(path)
    keras.models.load_model(path).fit(x, y, verbose=0)


@pytest.mark.tensorflow_only  # a plain tf.Variable in a custom loop
def test_a_plain_tf_variable_trains_as_with_keras():
    import tensorflow as tf

    def run(optimizer):
        variable = tf.Variable([[1.0, -2.0], [3.0, 0.5]], name="w")
        for _ in range(3):
            optimizer.apply_gradients([(tf.ones_like(variable), variable)])
        return variable.numpy()

    ours = run(optimizers.SGD(0.1, momentum=0.5, weight_decay=0.2))
    keras_ = run(keras.optimizers.SGD(0.1, momentum=0.5, weight_decay=0.2))
    np.testing.assert_allclose(ours, keras_, rtol=1e-6)


def _saved_config(overrides=None):
    model = _model()
    optimizer = _grouped(optimizers.AdamW, model, weight_decay=0.1)
    optimizer.build(model.trainable_variables)
    config = optimizer.get_config()
    rows = config["decay_groups"]
    for index, (column, value) in (overrides or {}).items():
        rows[index][column] = value
    return config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({0: (2, -1.0)}, r"decay_groups\[0\] lr_mult`.*Received: .*=-1.0"),
        ({0: (2, float("nan"))}, r"decay_groups\[0\] lr_mult`.*=nan"),
        ({1: (1, -5.0)}, r"decay_groups\[1\] decay_mult`.*=-5.0"),
        ({1: (1, "x")}, r"decay_groups\[1\] decay_mult`.*='x'"),
    ],
)
def test_tampered_saved_groups_are_refused_on_load(overrides, message):
    config = _saved_config(overrides)
    with pytest.raises((ValueError, TypeError), match=message):
        optimizers.AdamW.from_config(config)


def test_a_malformed_saved_row_is_a_clear_error():
    config = _saved_config()
    config["decay_groups"][0] = [[4, 3], 1.0]
    with pytest.raises(ValueError, match=r"`decay_groups\[0\]`.*rows"):
        optimizers.AdamW.from_config(config)
    config["decay_groups"] = "all"
    with pytest.raises(ValueError, match="Received: decay_groups='all'"):
        optimizers.AdamW.from_config(config)


def test_saved_before_build_with_patterns_loads(tmp_path):
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="conv")],
        name="backbone",
    )
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizers.SGD(0.1, lr_mult={"backbone": 0.1}, weight_decay=0.01),
        "mse",
    )
    path = os.path.join(tmp_path, "unbuilt.keras")
    model.save(path)  # before the optimizer is built: no decay_groups
    loaded = keras.models.load_model(path)
    x = np.ones((4, 4), "float32")
    y = np.ones((4, 2), "float32")
    # Keras may rename the paths on loading (keras#23251): a pattern that
    # matches none is a warning there, not an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loaded.fit(x, y, verbose=0)
    assert int(loaded.optimizer.iterations) == 1
