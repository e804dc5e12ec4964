"""A pruned sweep against the full grid: epochs, wall time and the best λ.

Runs the README's U-curve sweep (`keras-decay sweep --weight-decay
0,1e-4,1e-3,3e-3,1e-2,3e-2,1e-1 --seeds 1,2`, 30 epochs by default) once
as the full grid (`--pruner none`) and once per pruner, one after another
in this run, each in a fresh log folder, and prints for each: the seed-epochs
trained, the wall time, the best λ, and their ratios to the full grid.

Target (issue 21): the pruned sweep picks the full grid's best λ, or one
whose mean final validation accuracy in the full grid is within one
standard deviation (over the seeds) of the best λ's mean, with at most
50 % of the full grid's epochs. Also printed: what lockstep training costs,
the training seconds of each point complete in both sweeps (its seeds
side by side, one thread and one `fit` each, meeting after every epoch)
over the same point's per-seed trials of the full grid (one after
another).

    python benchmarks/bench_pruning.py [--pruners median,hyperband] \\
        [--workers 2] [--epochs 30] [--figure docs/sweep.png]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = "0,1e-4,1e-3,3e-3,1e-2,3e-2,1e-1"
SEEDS = "1,2"


def _load():
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def sweep(logdir, pruner, workers, epochs):
    """Runs one sweep in a process of its own: `(results.json, seconds)`."""
    command = [sys.executable, "-m", "keras_decay", "sweep"]
    command += ["--weight-decay", GRID, "--seeds", SEEDS, "--quiet"]
    command += ["--epochs", str(epochs), "--workers", str(workers)]
    command += ["--pruner", pruner, "--logdir", logdir]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    with open(os.path.join(logdir, "results.json")) as file:
        return json.load(file), seconds


def _rows(written):
    return {(r["weight_decay"], r["dropout"]): r for r in written["aggregate"]}


def _training_seconds(written, lockstep):
    """Training seconds of each point: its seeds' trials one after
    another (summed), or side by side in lockstep threads (the longest)."""
    seconds = {}
    for trial in written["trials"]:
        key = (trial["weight_decay"], trial["dropout"])
        if lockstep:
            seconds[key] = max(seconds.get(key, 0.0), trial["seconds"])
        else:
            seconds[key] = seconds.get(key, 0.0) + trial["seconds"]
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruners", default="median,hyperband")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--figure", default=None, help="copy the full grid's sweep.png here"
    )
    args = parser.parse_args()
    pruners = args.pruners.split(",")
    folder = tempfile.mkdtemp(prefix="bench-pruning-")
    print(f"load average before: {_load()}; workers {args.workers}")
    runs = {}
    for pruner in ["none", *pruners]:
        logdir = os.path.join(folder, pruner)
        runs[pruner] = sweep(logdir, pruner, args.workers, args.epochs)
        print(f"  {pruner}: {runs[pruner][1]:.1f} s, load {_load()}")
    print(f"load average after: {_load()}")
    full, full_seconds = runs["none"]
    rows = _rows(full)
    best = (full["best"]["weight_decay"], full["best"]["dropout"])
    mean, sd = (rows[best]["val_accuracy"][k] for k in ("mean", "sd"))
    print(
        f"\nfull grid: best λ {best[0]:g} at {mean:.3f} ± {sd:.3f} (final "
        f"val acc, mean ± sd over seeds {SEEDS}); "
        f"{full['epochs_trained']} seed-epochs, {full_seconds:.1f} s wall"
    )
    print(
        "\n| sweep | best λ | its full-grid val acc | seed-epochs | ratio | "
        "wall s | ratio | pruned (λ @ epoch) | target |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    full_fit = _training_seconds(full, False)
    costs = []
    for pruner in ["none", *pruners]:
        written, seconds = runs[pruner]
        chosen = written["best"] or {"weight_decay": None, "dropout": None}
        pick = (chosen["weight_decay"], chosen["dropout"])
        picked = rows[pick]["val_accuracy"]["mean"] if pick in rows else 0.0
        epochs = written["epochs_trained"] / full["epochs_trained"]
        close = pick == best or picked >= mean - sd
        met = close and epochs <= 0.5
        pruned = ", ".join(
            f"{p['weight_decay']:g} @ {p['epochs_trained']}"
            for p in written["pruned"]
        )
        print(
            f"| {pruner} | {pick[0]} | {picked:.3f} | "
            f"{written['epochs_trained']} | {epochs:.2f} | {seconds:.1f} | "
            f"{seconds / full_seconds:.2f} | {pruned or '—'} | "
            f"{'—' if pruner == 'none' else ('met' if met else 'missed')} "
            f"({'same or within 1 sd' if close else 'worse λ'}, "
            f"epochs {'≤' if epochs <= 0.5 else '>'} 50 %) |"
        )
        if pruner == "none":
            continue
        lockstep = _training_seconds(written, True)
        complete = {
            key
            for key, row in _rows(written).items()
            if not row["pruned"] and key in full_fit
        }
        costs += [lockstep[key] / full_fit[key] for key in complete]
    if costs:
        costs.sort()
        print(
            f"\nlockstep cost: training wall seconds of a complete point, "
            f"lockstep threads ÷ per-seed trials: median "
            f"{costs[len(costs) // 2]:.2f}"
            f" (range {costs[0]:.2f}–{costs[-1]:.2f}, {len(costs)} points)"
        )
    if args.figure:
        shutil.copy(os.path.join(folder, "none", "sweep.png"), args.figure)
        print(f"figure: {args.figure} (the full grid)")
    print(f"log folders: {folder}")


if __name__ == "__main__":
    main()
