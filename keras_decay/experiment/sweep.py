"""`keras-decay sweep`: the weight decay chosen by training.

One trial per weight decay λ, dropout rate and seed, trained through an
Optuna study (`keras_decay.experiment.engine`): a journal file in
`--logdir` by default, or `--storage postgresql://...` and `--study NAME`
shared by workers on several machines (each runs the same command).
Rerunning the command resumes: complete trials are not trained again.

`--weight-decay 0,1e-4,1e-3` is a grid; `--weight-decay 1e-5:1e-1 --trials
20` draws 20 values log-uniformly, one in each of 20 equal slices of the
log range (Latin hypercube, seeded, so a rerun draws the same values), and
trains each on every seed. `--dropout` is the same, uniform. Output: a
table per λ (and dropout) of mean ± sd over the seeds, the best λ,
`results.json` and `sweep.png` (accuracy against λ on a log axis).
"""

import math
import os

import numpy as np

from keras_decay.experiment import _common
from keras_decay.experiment import report
from keras_decay.experiment.trial import Trial

__all__ = ["draw", "plan", "run"]

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


def plan(config):
    """The trials of `config`: every (λ, dropout) point on every seed.

    Two ranges are drawn together (`--trials` pairs); a range and a grid
    are crossed (each drawn value with each grid value).
    """
    rng = np.random.default_rng(DRAW_SEED)
    rates = draw(config.weight_decay, config.trials, True, rng)
    dropouts = draw(config.dropout, config.trials, False, rng)
    if config.weight_decay.is_range and config.dropout.is_range:
        points = list(zip(rates, dropouts))
    else:
        points = [(r, d) for r in rates for d in dropouts]
    trials = []
    for rate, dropout in points:
        for seed in config.seeds:
            trials.append(
                Trial(
                    run="sweep",
                    weight_decay=rate if rate > 0 else None,
                    dropout=dropout if dropout > 0 else None,
                    seed=seed,
                    label=f"wd {rate:g} dropout {dropout:g} seed {seed}",
                    dir=os.path.join(
                        "trials",
                        f"wd_{rate:g}-dropout_{dropout:g}-seed_{seed}",
                    ),
                )
            )
    return trials


def best(rows):
    """The row with the highest mean final validation accuracy."""
    return max(rows, key=lambda r: r["val_accuracy"]["mean"])


def run(config, say=print):
    """Trains the sweep (or resumes it); writes results.json and sweep.png.

    Returns:
        The dict written to `results.json`: `settings`, `trials`,
        `aggregate` (one row per λ and dropout, sorted), `best`
        (its λ and dropout), `missing` and `wall_seconds`.

    Raises:
        ExperimentError: a missing extra, an unusable `--logdir` or
            storage, a study made with other settings, a failed trial.
    """
    say = (lambda *a: None) if config.quiet else say
    _common.check_extras("sweep")
    _common.prepare_logdir(config.logdir, "sweep")
    storage = config.storage or _common.journal_url(config.logdir)
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
    payload = {
        "settings": dict(
            config.as_dict(),
            weight_decay=str(config.weight_decay),
            dropout=str(config.dropout),
        ),
        "environment": _common.environment(),
        "trials": results,
        "aggregate": rows,
        "best": {
            "weight_decay": top["weight_decay"],
            "dropout": top["dropout"],
        },
        "missing": missing,
        "wall_seconds": seconds,
    }
    table = report.format_sweep_table(rows) + (
        f"\n\nbest: weight decay {top['weight_decay']:g}, dropout "
        f"{top['dropout']:g}: val acc {top['val_accuracy']['mean']:.3f} "
        f"(mean of {top['n']} seed(s))"
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
