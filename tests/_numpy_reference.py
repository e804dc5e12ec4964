"""Keras' optimizer updates written out in NumPy (float64), for the tests.

The model is a `Dense(2)` on 3 inputs trained with MSE on batches taken in
order (no shuffle): `loss = mean((x @ W + b - y) ** 2)`, so the gradient
of the prediction is `2 * (x @ W + b - y) / (batch * 2)`. Each update is
Keras' rule with the hyperparameters of step `t` given as functions of `t`
(Python floats, NumPy schedules written in the test).
"""

import numpy as np

X = np.random.RandomState(0).randn(8, 3).astype("float32")
Y = np.random.RandomState(1).randn(8, 2).astype("float32")
BATCH = 4


def linear_ramp(start, end, ramp_steps):
    """NumPy `LinearRamp`: `start + (end - start) * min(t, n) / n`."""
    return lambda t: start + (end - start) * min(t, ramp_steps) / ramp_steps


def constant(value):
    return lambda t: value


def gradients(params, x, y):
    kernel, bias = params
    residual = x @ kernel + bias - y
    d_prediction = 2.0 * residual / residual.size
    return [x.T @ d_prediction, d_prediction.sum(axis=0)]


def decay(params, lr, wd, decayed=(True, True)):
    """Keras' decoupled weight decay `w - w * wd * lr`."""
    return [p - p * wd * lr if d else p for p, d in zip(params, decayed)]


def sgd(lr, momentum, wd=None, nesterov=False, decayed=(True, True)):
    """Returns `update(t, params, grads, state)` for Keras' SGD."""

    def update(t, params, grads, state):
        if wd is not None:
            params = decay(params, lr(t), wd(t), decayed)
        slots = state.setdefault("m", [np.zeros_like(p) for p in params])
        mu, out = momentum(t), []
        for i, (p, g) in enumerate(zip(params, grads)):
            slots[i] = mu * slots[i] - lr(t) * g
            if nesterov:
                out.append(p + mu * slots[i] - lr(t) * g)
            else:
                out.append(p + slots[i])
        return out

    return update


def adam(lr, beta_1, wd=None, beta_2=0.999, eps=1e-7, decayed=(True, True)):
    """Keras' Adam (AdamW with `wd`); bias correction with `beta_1(t)`."""

    def update(t, params, grads, state):
        if wd is not None:
            params = decay(params, lr(t), wd(t), decayed)
        m = state.setdefault("m", [np.zeros_like(p) for p in params])
        v = state.setdefault("v", [np.zeros_like(p) for p in params])
        b1 = beta_1(t)
        alpha = lr(t) * np.sqrt(1 - beta_2 ** (t + 1)) / (1 - b1 ** (t + 1))
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = m[i] + (g - m[i]) * (1 - b1)
            v[i] = v[i] + (g * g - v[i]) * (1 - beta_2)
            out.append(p - m[i] * alpha / (np.sqrt(v[i]) + eps))
        return out

    return update


def lion(lr, beta_1, beta_2=0.99):
    """Keras' Lion."""

    def update(t, params, grads, state):
        m = state.setdefault("m", [np.zeros_like(p) for p in params])
        b1, out = beta_1(t), []
        for i, (p, g) in enumerate(zip(params, grads)):
            out.append(p - lr(t) * np.sign(m[i] * b1 + g * (1 - b1)))
            m[i] = m[i] * beta_2 + g * (1 - beta_2)
        return out

    return update


def train(update, params, steps, first_step=0, state=None, accumulate=1):
    """Runs `steps` batches from global batch `first_step` on.

    With `accumulate > 1`, Keras' gradient accumulation: the update of
    micro-step `k` (when `(k + 1) % accumulate == 0`) uses the mean of the
    last `accumulate` gradients and the hyperparameters of step `k`.
    """
    params = [np.asarray(p, "float64") for p in params]
    state = {} if state is None else state
    batches = len(X) // BATCH
    pending = []
    for k in range(first_step, first_step + steps):
        b = k % batches
        x = X[b * BATCH : (b + 1) * BATCH].astype("float64")
        y = Y[b * BATCH : (b + 1) * BATCH].astype("float64")
        pending.append(gradients(params, x, y))
        if (k + 1) % accumulate:
            continue
        grads = [sum(g) / len(pending) for g in zip(*pending)]
        pending = []
        params = update(k, params, grads, state)
    return params
