"""The package import: `import keras_decay` is all `load_model` needs."""

import os
import subprocess
import sys

import keras
import pytest

from keras_decay import layers
from keras_decay import optimizers
from keras_decay import regularizers
from keras_decay import schedules

# Also run by the minimum-versions leg of .ci/run (oldest TensorFlow, Keras).
pytestmark = pytest.mark.min_versions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_LOAD = """
import sys
import keras
{first}import keras_decay
model = keras.saving.load_model(sys.argv[1])  # safe_mode=True
print(type(model.layers[1]).__name__, type(model.optimizer).__name__)
print(type(model.optimizer).__module__.split(".")[0])
"""


@pytest.mark.parametrize(
    "first",
    ["", "import keras_decay_cli\n", "import keras_decay_cli.options\n"],
    ids=["alone", "after_the_command", "after_its_options"],
)
def test_plain_import_registers_every_class_for_load_model(tmp_path, first):
    """The same registrations whatever the process imported before."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3, kernel_regularizer=regularizers.WeightDecay(1e-3)
            ),
            layers.ClassicDropout(0.2, seed=1),
        ]
    )
    momentum = schedules.LinearRamp(0.0, 0.9, 10)
    model.compile(optimizers.SGD(0.1, momentum=momentum), "mse")
    path = str(tmp_path / "model.keras")
    model.save(path)
    done = subprocess.run(
        [sys.executable, "-c", _LOAD.format(first=first), path],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split("\n")
    assert lines[0].split() == ["ClassicDropout", "SGD"]
    assert lines[1] == "keras_decay"
