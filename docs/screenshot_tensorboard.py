"""Screenshot of TensorBoard's scalars dashboard on a real WeightNormLogger run.

Trains a small classifier twice on synthetic data (without and with
`WeightDecay`), each with a `WeightNormLogger` into a temporary log dir,
starts a real `tensorboard` server on 127.0.0.1, points headless Chromium
(Debian package `chromium`) at the scalars dashboard and saves
`docs/tensorboard_scalars.png`. Run from the repository root:

    python docs/screenshot_tensorboard.py [--out docs/tensorboard_scalars.png]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_decay import WeightDecay  # noqa: E402
from keras_decay.callbacks import WeightNormLogger  # noqa: E402

TAGS = "weight_norm|regularization/loss|update_ratio/sequential/dense/kernel"


def train(log_dir, decay):
    keras.backend.clear_session()  # The same variable paths in both runs.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype("float32")
    y = (x[:, :5].sum(axis=1) > 0).astype("int32")
    keras.utils.set_random_seed(0)
    regularizer = WeightDecay(decay) if decay else None
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(64, "relu", kernel_regularizer=regularizer),
            keras.layers.Dense(64, "relu", kernel_regularizer=regularizer),
            keras.layers.Dense(2, kernel_regularizer=regularizer),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    logger = WeightNormLogger(
        log_dir, norms=("l2", "l1", "max"), hparams={"weight_decay": decay}
    )
    model.fit(x, y, epochs=30, batch_size=32, verbose=0, callbacks=[logger])


def start_tensorboard(log_dir):
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [exe, "--logdir", log_dir, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if match:
            return server, match.group(1)
        if not line and server.poll() is not None:
            break
    server.terminate()
    raise RuntimeError("tensorboard did not start")


def wait_for_tags(url):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/data/plugin/scalars/tags") as r:
            if b"weight_norm/global" in r.read():
                return
        time.sleep(0.5)
    raise RuntimeError("tensorboard did not load the run")


# Headless Chromium that sends no request of its own (no sign-in, updates,
# sync or QUIC probes); tests/test_docs.py reads the docs site with it too.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(profile, *args):
    """Runs headless Chromium with `args` and the profile folder `profile`;
    returns its standard output."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("install Debian's `chromium` package")
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def screenshot(url, out):
    with tempfile.TemporaryDirectory() as profile:
        chromium(
            profile,
            "--hide-scrollbars",
            f"--screenshot={os.path.abspath(out)}",
            "--window-size=1400,900",
            "--virtual-time-budget=20000",
            url,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument(
        "--out", default=os.path.join(here, "tensorboard_scalars.png")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_root:
        train(os.path.join(log_root, "no_decay"), 0.0)
        train(os.path.join(log_root, "decay_5e-3"), 5e-3)
        server, url = start_tensorboard(log_root)
        try:
            wait_for_tags(url)
            query = urllib.parse.quote(TAGS)
            page = f"{url}/#scalars&_smoothingWeight=0&tagFilter={query}"
            screenshot(page, args.out)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
