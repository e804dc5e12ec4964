"""`keras-decay sweep`: the weight decay chosen by training.

One trial per weight decay λ, dropout rate and seed, trained through an
Optuna study (`keras_decay.experiment.engine`): a journal file in
`--logdir` by default, or `--storage postgresql://...` and `--study NAME`
shared by workers on several machines (each runs the same command).
Rerunning the command resumes: complete trials are not trained again.

`--weight-decay 0,1e-4,1e-3` is a grid; `--weight-decay 1e-5:1e-1 --trials
20` draws 20 values log-uniformly, one in each of 20 equal slices of the
log range (Latin hypercube, seeded, so a rerun draws the same values), and
trains each on every seed; `--weight-decay auto` is the grid of λ = 0 and
`keras_decay.rules.weight_decay_range` over the steps the sweep trains
(`auto_grid`). `--dropout` is the same as a grid or range, uniform. Output: a
table per λ (and dropout) of mean ± sd over the seeds, the best λ,
`results.json` and `sweep.png` (accuracy against λ on a log axis).

`--pruner median|hyperband` stops hopeless points early with Optuna's
pruner (`engine.make_pruner`): one trial per point trains its seeds in
lockstep and reports the mean over them after each epoch, so a point is
dropped only on evidence from all its seeds; a pruned point is a result
(never trained again, marked in the table, `results.json` and the figure)
and the best λ is chosen among the points whose seeds all completed.
"""

import math
import os

import numpy as np

from keras_decay.experiment import _common
from keras_decay.experiment import report
from keras_decay.experiment.trial import Trial

__all__ = ["auto_grid", "draw", "plan", "run"]

# Seed of the stratified draws from a range: fixed, so reruns resume.
DRAW_SEED = 2024


def draw(values, trials, log, rng):
    """The values of a swept hyperparameter, as floats rounded to 3 digits.

    A grid is returned as it is; a range gives `trials` values, one drawn
    uniformly (log-uniformly with `log`) in each of `trials` equal slices,
    in a random order.
    """
    if not values.is_range:
        return [float(v) for v in values.grid]
    low, high = values.low, values.high
    if log:
        low, high = math.log(low), math.log(high)
    u = (rng.permutation(trials) + rng.random(trials)) / trials
    points = low + u * (high - low)
    points = np.exp(points) if log else points
    return [float(f"{p:.3g}") for p in points]


def auto_grid(config):
    """`--weight-decay auto` as a grid: `(config with the grid, one line)`.

    The grid is λ = 0 (the baseline) and `rules.weight_decay_range(steps,
    lr, momentum=momentum, decoupled=False)`, 2 values a decade, rounded to
    3 digits: the experiment's `WeightDecay` is coupled L2 under SGD with
    momentum, so `tau = (1 - momentum) / (lr * λ)` runs from 10x the steps
    trained down to a tenth of them. The line says the range and why.
    """
    from keras_decay.experiment import data as data_lib
    from keras_decay.experiment.runner import epoch_order
    from keras_decay.rules import weight_decay_range
    from keras_decay_cli.options import Values

    data = data_lib.load_data(
        config.dataset,
        config.train_fraction,
        config.seeds[0],
        label_noise=config.label_noise,
    )
    _, per_epoch, _ = epoch_order(len(data.x_train), config.batch_size, 1, 0)
    steps = per_epoch * config.epochs
    rates = weight_decay_range(
        steps, config.lr, momentum=config.momentum, decoupled=False
    )
    grid = (0.0, *(float(f"{r:.3g}") for r in rates))
    line = (
        f"weight decay auto: 0 and {grid[1]:g} to {grid[-1]:g} (2 a "
        f"decade): the rates whose timescale (1-momentum)/(lr*λ) runs from "
        f"10x to 1/10 of the {steps} steps trained (lr {config.lr:g}, "
        f"momentum {config.momentum:g}, coupled L2)"
    )
    return config.replace(weight_decay=Values(grid=grid)), line


def plan(config):
    """The trials of `config`: every (λ, dropout) point on every seed.

    One trial per point and seed; with a pruner (`--pruner median` or
    `hyperband`), one trial per point that trains all its seeds in
    lockstep, so that the pruner judges the point on all of them.

    Two ranges are drawn together (`--trials` pairs); a range and a grid
    are crossed (each drawn value with each grid value); `auto` is the
    grid of `auto_grid`.
    """
    if config.weight_decay.auto:
        config, _ = auto_grid(config)
    rng = np.random.default_rng(DRAW_SEED)
    rates = draw(config.weight_decay, config.trials, True, rng)
    dropouts = draw(config.dropout, config.trials, False, rng)
    if config.weight_decay.is_range and config.dropout.is_range:
        points = list(zip(rates, dropouts))
    else:
        points = [(r, d) for r in rates for d in dropouts]
    trials = []
    for rate, dropout in points:
        point = dict(
            run="sweep",
            weight_decay=rate if rate > 0 else None,
            dropout=dropout if dropout > 0 else None,
        )
        name = f"wd {rate:g} dropout {dropout:g}"
        folder = os.path.join("trials", f"wd_{rate:g}-dropout_{dropout:g}")
        if config.pruner != "none":
            # One trial per point: its seeds in lockstep (`runner`).
            seeds = ",".join(map(str, config.seeds))
            trials.append(
                Trial(
                    **point,
                    seed=config.seeds[0],
                    label=f"{name} seeds {seeds}",
                    dir=folder,
                    seeds=config.seeds,
                )
            )
            continue
        for seed in config.seeds:
            trials.append(
                Trial(
                    **point,
                    seed=seed,
                    label=f"{name} seed {seed}",
                    dir=f"{folder}-seed_{seed}",
                )
            )
    return trials


def best(rows):
    """The row with the highest mean final validation accuracy among the
    rows whose every seed completed (a pruned row's accuracy is from an
    earlier epoch, and a pruned point lost on evidence from all its
    seeds); `None` when none completed."""
    complete = [r for r in rows if not r.get("pruned")]
    if not complete:
        return None
    return max(complete, key=lambda r: r["val_accuracy"]["mean"])


def run(config, say=print):
    """Trains the sweep (or resumes it); writes results.json and sweep.png.

    Returns:
        The dict written to `results.json`: `settings`, `trials`,
        `aggregate` (one row per λ and dropout, sorted; `pruned` and
        `epochs_trained` in each), `best` (its λ and dropout, among the
        complete rows), `pruned` (λ, dropout and epochs of each pruned
        row), `epochs_trained` (over every seed), `missing` and
        `wall_seconds`.

    Raises:
        ExperimentError: a missing extra, an unusable `--logdir` or
            storage, a study made with other settings, a failed trial.
    """
    say = (lambda *a: None) if config.quiet else say
    _common.check_extras("sweep")
    _common.prepare_logdir(config.logdir, "sweep")
    storage = config.storage or _common.journal_url(config.logdir)
    if config.weight_decay.auto:
        config, line = auto_grid(config)
        say(line)
    trials = plan(config)
    say(
        f"sweep: {len(trials)} trials (weight decay {config.weight_decay}, "
        f"dropout {config.dropout}, seeds "
        f"{','.join(map(str, config.seeds))}) in study {config.study!r}; "
        f"writing to {config.logdir}"
    )
    results, missing, seconds = _common.train(
        config, trials, storage, config.study, say
    )
    rows = sorted(
        report.aggregate(results, ("weight_decay", "dropout")),
        key=lambda r: (r["dropout"], r["weight_decay"]),
    )
    if not rows:
        say("no trial is complete yet")
        return None
    top = best(rows)
    pruned = [r for r in rows if r["pruned"]]
    payload = {
        "settings": dict(
            config.as_dict(),
            weight_decay=str(config.weight_decay),
            dropout=str(config.dropout),
        ),
        "environment": _common.environment(),
        "trials": results,
        "aggregate": rows,
        "best": None
        if top is None
        else {
            "weight_decay": top["weight_decay"],
            "dropout": top["dropout"],
        },
        "pruned": [
            {
                "weight_decay": r["weight_decay"],
                "dropout": r["dropout"],
                "epochs_trained": r["epochs_trained"],
            }
            for r in pruned
        ],
        "epochs_trained": sum(
            len(t["history"]["val_accuracy"]) for t in results
        ),
        "missing": missing,
        "wall_seconds": seconds,
    }
    table = report.format_sweep_table(
        rows, None if config.pruner == "none" else config.epochs
    )
    if top is None:
        table += "\n\nbest: none yet (every finished point was pruned)"
    else:
        table += (
            f"\n\nbest: weight decay {top['weight_decay']:g}, dropout "
            f"{top['dropout']:g}: val acc {top['val_accuracy']['mean']:.3f} "
            f"(mean of {top['n']} seed(s))"
        )
    if config.pruner != "none":
        table += (
            f" among the {len(rows) - len(pruned)} complete point(s); "
            f"{len(pruned)} pruned by --pruner {config.pruner}; "
            f"{payload['epochs_trained']} of {len(results) * config.epochs} "
            "seed-epochs trained"
        )
    _common.write_outputs(
        config,
        payload,
        "sweep.png",
        lambda path: report.plot_sweep(rows, path, _common.title(config)),
        table,
        say,
    )
    return payload
