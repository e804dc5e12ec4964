"""What the step-time benchmarks share: their arguments, a process a backend.

Import this first: it sets `KERAS_BACKEND` from `--backend` before Keras
is imported.
"""

import argparse
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "--backend" in sys.argv:
    os.environ["KERAS_BACKEND"] = sys.argv[sys.argv.index("--backend") + 1]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parser(doc, rounds):
    """The arguments of an MLP step-time benchmark."""
    result = argparse.ArgumentParser(description=doc.splitlines()[0])
    result.add_argument("--rounds", type=int, default=rounds)
    result.add_argument("--steps", type=int, default=50)
    result.add_argument("--batch-size", type=int, default=64)
    result.add_argument("--width", type=int, default=256)
    result.add_argument("--jit-compile", action="store_true")
    result.add_argument(
        "--backends",
        default="tensorflow,jax",
        help="comma-separated; each runs in its own process",
    )
    result.add_argument("--backend", help=argparse.SUPPRESS)
    return result


def dispatch(args, script):
    """Runs `script` once per backend of `--backends`; False in a child."""
    if args.backend is not None:
        return False
    for backend in args.backends.split(","):
        command = [sys.executable, script, *sys.argv[1:]]
        subprocess.run([*command, "--backend", backend], check=True)
        print()
    return True
