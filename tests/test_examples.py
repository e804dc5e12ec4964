"""Runs every script in examples/ (shortened) so that none of them rots.

Each runs in this process as `python examples/NAME.py` would run it
(`runpy`, `__name__ == "__main__"`, its own `sys.argv`, the test's
temporary folder as the working folder).
"""

import os
import runpy
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
def test_example_runs(name, tmp_path, monkeypatch, capsys):
    path = os.path.join(EXAMPLES, name)
    monkeypatch.setattr(sys, "argv", [path] + SHORT_ARGS.get(name, []))
    monkeypatch.chdir(tmp_path)  # examples write logs relative to it
    runpy.run_path(path, run_name="__main__")
    assert capsys.readouterr().out.strip(), f"{name} printed nothing"
