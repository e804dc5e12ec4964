"""Draws each keras_decay schedule's curve into docs/schedules.png.

python docs/plot_schedules.py
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from keras_decay import schedules  # noqa: E402

STEPS = np.arange(0, 3001)
PANELS = [
    (
        "ExponentialDecay(0.1, 500, 0.5)\nand staircase=True",
        [
            ("continuous", schedules.ExponentialDecay(0.1, 500, 0.5)),
            (
                "staircase",
                schedules.ExponentialDecay(0.1, 500, 0.5, staircase=True),
            ),
        ],
    ),
    (
        "StepDecay(0.1, steps_per_epoch=100)\nhalve every 5 epochs",
        [("drop=0.5, epochs_per_drop=5", schedules.StepDecay(0.1, 100))],
    ),
    (
        "LinearRamp(0.5, 0.99, 1000)\n(momentum warm-up)",
        [("momentum", schedules.LinearRamp(0.5, 0.99, 1000))],
    ),
    (
        "Warmup(ExponentialDecay(0.1, 500, 0.5), 300)",
        [
            (
                "warm-up + decay",
                schedules.Warmup(
                    schedules.ExponentialDecay(0.1, 500, 0.5), 300
                ),
            ),
            ("inner schedule", schedules.ExponentialDecay(0.1, 500, 0.5)),
        ],
    ),
]


def main():
    figure, axes = plt.subplots(1, len(PANELS), figsize=(16, 3.6))
    steps = keras.ops.convert_to_tensor(STEPS)
    for axis, (title, curves) in zip(axes, PANELS):
        for i, (label, schedule) in enumerate(curves):
            values = keras.ops.convert_to_numpy(schedule(steps))
            style = "-" if i == 0 else ":"
            axis.plot(STEPS, values, style, label=label)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step (optimizer.iterations)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("value")
    figure.tight_layout()
    path = os.path.join(HERE, "schedules.png")
    figure.savefig(path, dpi=100)
    print(path)


if __name__ == "__main__":
    main()
