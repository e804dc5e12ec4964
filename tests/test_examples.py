"""Runs every script in examples/ (shortened) so that none of them rots."""

import os
import subprocess
import sys

import pytest

# TensorFlow backend only: examples run on the default backend.
pytestmark = pytest.mark.tensorflow_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# Arguments that make each example finish in seconds. An example missing
# here runs with its defaults (they must be short too).
SHORT_ARGS = {
    "apply_weight_decay_caffe.py": ["--epochs", "1"],
    "cnn_weight_decay.py": ["--epochs", "1"],
    "dropblock_cnn.py": ["--epochs", "1"],
    "drop_path_resnet.py": ["--epochs", "1"],
    "schedules_momentum.py": ["--epochs", "1"],
    "tensorboard_logger.py": ["--epochs", "1"],
}


def _examples():
    return sorted(
        name
        for name in os.listdir(EXAMPLES)
        if name.endswith(".py") and not name.startswith("_")
    )


def test_examples_exist():
    assert "cnn_weight_decay.py" in _examples()


@pytest.mark.parametrize("name", _examples())
def test_example_runs(name, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    completed = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name)]
        + SHORT_ARGS.get(name, []),
        cwd=tmp_path,  # examples write logs relative to the working folder
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
