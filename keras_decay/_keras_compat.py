"""Every use of a Keras internal, in one place, with the version that needs it.

keras_decay uses Keras' public API everywhere else. What follows has no
public equivalent in Keras 3.15.1 (the version these were checked against);
each function says what it relies on, so a Keras upgrade that breaks one
breaks it here, with a clear name.
"""

import keras

__all__ = [
    "build_at_init",
    "built_variables",
    "child_layers",
    "dense_store",
    "is_builtin_optimizer",
    "is_functional",
    "learning_rate_value",
    "model_variable",
    "schedule_step",
    "should_write_summaries",
    "sync_jax_state",
    "unwrap_optimizer",
    "uses_weight_decay",
]


def child_layers(layer):
    """The direct sub-layers of `layer`, in tracking order.

    Keras 3.3–3.15: `Layer._flatten_layers(include_self=False,
    recursive=False)` (private; `Layer.layers` exists only on models, and
    `_layers` misses layers tracked in lists and dicts).
    """
    return list(layer._flatten_layers(include_self=False, recursive=False))


def is_functional(model):
    """Whether `model` is a functional model (not a Sequential or subclass).

    Keras 3.15: Keras' internal class `Functional` (models/functional.py)
    is not exported; `keras.Model(inputs, outputs)` returns an instance of
    it, and `Sequential` subclasses it, so the check is by exact class name.
    """
    return type(model).__name__ == "Functional"


def sync_jax_state(model):
    """Brings JAX's functional training state back into the variables.

    Keras 3.15, JAX backend: during `fit` the variables' values live in a
    state tuple outside the variables; `Trainer.jax_state_sync()` (public on
    the JAX trainer only, undocumented) writes them back, so that a callback
    can read or assign a variable between steps. No-op elsewhere.
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def should_write_summaries(strategy):
    """Whether this worker of a `tf.distribute` strategy writes summaries.

    TensorFlow 2.16–2.21: `strategy.extended.should_save_summary` (or, on
    older strategies, `should_checkpoint`), attributes of the private
    `StrategyExtended` API. True without a strategy.
    """
    if strategy is None:
        return True
    extended = strategy.extended
    for name in ("should_save_summary", "should_checkpoint"):
        try:
            return bool(getattr(extended, name))
        except (AttributeError, NotImplementedError):
            continue
    return True


def unwrap_optimizer(optimizer):
    """The optimizer that owns the hyperparameters and the step count.

    Keras 3.15: `LossScaleOptimizer` (mixed precision) wraps another one in
    its `inner_optimizer` attribute (public, but not part of the base
    optimizer API).
    """
    return getattr(optimizer, "inner_optimizer", optimizer)


def build_at_init(layer):
    """Marks `layer` built in its `__init__`, unless its class has a `build`.

    Keras 3.11+: `Layer._build_at_init()` (private), which Keras' own
    stateless layers (`Dropout`) call; setting `built = True` instead would
    skip a subclass's `build`. Older Keras: the same rule, by hand.
    """
    build_at_init = getattr(layer, "_build_at_init", None)
    if build_at_init is not None:
        build_at_init()
    elif type(layer).build is keras.layers.Layer.build:
        layer.built = True


def dense_store(store, *names):
    """The entries of `store` that `Dense.load_own_variables` expects.

    Keras 3.10–3.15: `Dense.load_own_variables` reads the kernel and bias by
    index (`store["0"]`, `store["1"]`, in `variable_serialization_spec`
    order), after checking that the store has exactly one entry per
    variable of the layer. A subclass that adds variables (saved under
    `names`) passes them along so the count matches; any other entry of
    `store` (e.g. a seed-generator state) is left out.
    """
    keys = [key for key in store.keys() if key.isdigit() or key in names]
    return {key: store[key] for key in keys}


# Overridden, not called (so it cannot live here): Keras 3.3–3.15
# `BaseOptimizer._backend_update_step(grads, variables, learning_rate)`
# (private) runs once per applied step (not for an accumulation micro-step,
# nor a step a LossScaleOptimizer skips), before the per-variable
# `update_step`s; Keras' own Nadam overrides it to update its `u_product`.
# `ScheduledHyperparameters` and its Nadam override it likewise to update
# `max_learning_rate` and restart the cautious counts in `_begin_step`
# (tests/test_optimizer_modes.py checks both).


def schedule_step(optimizer):
    """The step Keras evaluates the learning-rate schedule at (a variable).

    Keras 3.3–3.15: `BaseOptimizer._get_current_learning_rate` calls
    `schedule(self._iterations)`, the count of `apply` calls. It equals the
    public `optimizer.iterations` except with `gradient_accumulation_steps`,
    where `iterations` counts the accumulated updates only.
    """
    return optimizer._iterations


def learning_rate_value(optimizer):
    """What the optimizer holds as its learning rate.

    Keras 3.3–3.15: `BaseOptimizer._learning_rate` (private): a
    `LearningRateSchedule`, a variable, or a callable without arguments. The
    public `optimizer.learning_rate` only gives the value at the current
    step.
    """
    return optimizer._learning_rate


def built_variables(optimizer):
    """The model variables a built optimizer was built with, in order.

    Keras 3.3–3.15: `BaseOptimizer._trainable_variables` (private), the list
    that `_get_variable_index` indexes.
    """
    return list(optimizer._trainable_variables)


def model_variable(optimizer, variable):
    """The `keras.Variable` the optimizer was built with for `variable`.

    Keras 3.3–3.15: on TensorFlow, `update_step` receives the backend
    `tf.Variable` (or a replica's component); `_get_variable_index` maps it
    to its position in `BaseOptimizer._trainable_variables` (private).
    """
    index = optimizer._get_variable_index(variable)
    return optimizer._trainable_variables[index]


def uses_weight_decay(optimizer, variable):
    """Whether Keras' decoupled weight decay applies to `variable`.

    Keras 3.3–3.15: `BaseOptimizer._use_weight_decay(variable)` (private)
    applies the rules set by the public `exclude_from_weight_decay`. Its
    name patterns are matched against what Keras' update receives: on
    TensorFlow the `tf.Variable` (`"dense/kernel:0"`), elsewhere the
    `keras.Variable` (`"kernel"`); so is it here.
    """
    import keras

    if keras.backend.backend() == "tensorflow" and isinstance(
        variable, keras.Variable
    ):
        variable = variable.value
    return optimizer._use_weight_decay(variable)


def is_builtin_optimizer(optimizer, keras_class):
    """Whether `optimizer` is Keras' own `keras_class`, not a user subclass.

    Keras 3.15, PyTorch backend: `keras.optimizers.SGD(...)` returns an
    instance of a backend class (`SGD` in Keras' internal
    backend/torch/optimizers/torch_sgd.py) that subclasses `keras_class`;
    elsewhere the class is `keras_class` itself. Checked by the defining
    module's package.
    """
    module = type(optimizer).__module__ or ""
    return isinstance(optimizer, keras_class) and (
        module.split(".")[0] == "keras"
    )
