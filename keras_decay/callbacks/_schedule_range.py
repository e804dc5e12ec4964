"""The values a callback's schedule gives over the steps of a fit."""

import numpy as np
from keras import ops

from keras_decay import _keras_compat

# Beyond this many steps a schedule that is not vectorized is evaluated at
# this many evenly spread steps (each end included).
_HOST_LOOP_LIMIT = 10_000


def _values(schedule, steps):
    try:
        values = np.asarray(
            ops.convert_to_numpy(schedule(ops.convert_to_tensor(steps))),
            "float64",
        )
        if values.shape == steps.shape:
            return steps, values
    except Exception:  # noqa: BLE001 (not vectorized: one step at a time)
        pass
    if len(steps) > _HOST_LOOP_LIMIT:
        picked = np.linspace(0, len(steps) - 1, _HOST_LOOP_LIMIT)
        steps = np.unique(steps[picked.astype(np.int64)])
    values = [float(ops.convert_to_numpy(schedule(int(t)))) for t in steps]
    return steps, np.asarray(values, "float64")


def first_out_of_range(callback, schedule, low, high, high_inclusive=True):
    """`(step, value)` of the first step of this fit outside the range.

    The steps are those the fit can take from the optimizer's step count
    now: `params["epochs"] * params["steps"]` (Keras sets both at train
    begin; without a step count, the first step only). `None` when every
    value is finite and in `[low, high]` (`[low, high)` without
    `high_inclusive`; no upper bound for `high=None`).
    """
    optimizer = _keras_compat.unwrap_optimizer(callback.model.optimizer)
    start = int(ops.convert_to_numpy(_keras_compat.schedule_step(optimizer)))
    params = callback.params or {}
    epochs, steps = params.get("epochs"), params.get("steps")
    count = epochs * steps if epochs and steps else 1
    steps, values = _values(schedule, np.arange(start, start + count))
    bad = ~np.isfinite(values) | (values < low)
    if high is not None:
        bad |= (values > high) if high_inclusive else (values >= high)
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    return int(steps[first]), float(values[first])
