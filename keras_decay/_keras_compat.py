"""Every use of a Keras internal, in one place, with the version that needs it.

keras_decay uses Keras' public API everywhere else. What follows has no
public equivalent in Keras 3.15.1 (the version these were checked against);
each function says what it relies on, so a Keras upgrade that breaks one
breaks it here, with a clear name.
"""

__all__ = [
    "child_layers",
    "is_functional",
    "should_write_summaries",
    "sync_jax_state",
    "unwrap_optimizer",
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

    Keras 3.15: the class `keras.src.models.functional.Functional` is not
    exported; `keras.Model(inputs, outputs)` returns an instance of it, and
    `Sequential` subclasses it, so the check is by exact class name.
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
