"""`keras-decay compare`: one CNN plain, with L2, dropout or both.

The README's "The comparison experiment" made runnable (Nielsen, Neural
Networks and Deep Learning, ch. 3: L2 and dropout against overfitting;
here against label noise). Every run
in `--runs` is trained on every seed in `--seeds`; runs on one seed share
initial weights and batch order, so they differ only by regularization:

| run          | regularization                                          |
| ------------ | ------------------------------------------------------- |
| `plain`      | none                                                    |
| `l2`         | `WeightDecay(weight_decay)` on every kernel             |
| `dropout`    | `Dropout(dropout)` before the classifier                |
| `l2_dropout` | both                                                    |

The trials run in `--workers` processes through the sweep engine
(`keras_decay.experiment.engine`, a journal file in the log folder).
Written to `--logdir`: `results.json`, `comparison.png`, one TensorBoard
run per run and seed (`<run>/seed_<seed>`). From Python:

```python
from keras_decay.experiment import compare, options

config = options.settings("compare", epochs=2, logdir="logs/try")
payload = compare.run(config)
```
"""

import os
import shutil

from keras_decay.experiment import _common
from keras_decay.experiment import engine as engine_lib
from keras_decay.experiment import report
from keras_decay.experiment.trial import Trial
from keras_decay_cli import options

__all__ = ["plan", "run"]

STUDY = "compare"


def plan(config):
    """The trials of `config` (`Trial` records): every run on every seed."""
    trials = []
    for seed in config.seeds:
        for run in config.runs:
            uses_l2, uses_dropout = options.RUNS[run]
            trials.append(
                Trial(
                    run=run,
                    weight_decay=config.weight_decay if uses_l2 else None,
                    dropout=config.dropout if uses_dropout else None,
                    seed=seed,
                    label=f"{run} seed {seed}",
                    dir=os.path.join(run, f"seed_{seed}"),
                )
            )
    return trials


def _clear(config, say):
    """Removes what an earlier compare wrote into the log folder.

    The journal loses the compare study only: another study in it (a
    sweep's, in the same folder) is kept, and the command says so.
    """
    for name in ("results.json", "comparison.png"):
        path = os.path.join(config.logdir, name)
        if os.path.exists(path):
            os.remove(path)
    journal = os.path.join(config.logdir, engine_lib.JOURNAL_NAME)
    if os.path.exists(journal):
        others = engine_lib.delete_study(
            _common.journal_url(config.logdir), STUDY
        )
        if others:
            say(
                f"--overwrite: kept the other studies in {journal} "
                f"({', '.join(repr(n) for n in others)})"
            )
        else:
            os.remove(journal)
    for run in options.RUNS:
        path = os.path.join(config.logdir, run)
        if os.path.isdir(path):
            shutil.rmtree(path)


def run(config, say=print):
    """Trains every run on every seed; writes results.json and the figure.

    Returns:
        The dict written to `results.json`: `settings`, `trials` (one
        result per run and seed, with its per-epoch `history`),
        `aggregate` (per run: mean and sd over the seeds) and
        `wall_seconds`.

    Raises:
        ExperimentError: a missing extra, an unusable `--logdir` (or one
            holding results, without `overwrite`), a failed trial.
    """
    say = (lambda *a: None) if config.quiet else say
    _common.check_extras("compare")
    keep = ("results.json", engine_lib.JOURNAL_NAME)
    if config.overwrite and os.path.isdir(config.logdir):
        _clear(config, say)
        keep = ("results.json",)  # a journal left holds other studies only
    _common.prepare_logdir(config.logdir, "compare", keep=keep)
    trials = plan(config)
    say(
        f"compare: runs {','.join(config.runs)} on seeds "
        f"{','.join(map(str, config.seeds))} ({len(trials)} trials); "
        f"writing to {config.logdir}"
    )
    results, _, seconds = _common.train(
        config, trials, _common.journal_url(config.logdir), STUDY, say
    )
    rows = report.aggregate(results, ("run",))
    payload = {
        "settings": config.as_dict(),
        "environment": _common.environment(),
        "trials": results,
        "aggregate": rows,
        "wall_seconds": seconds,
    }
    _common.write_outputs(
        config,
        payload,
        "comparison.png",
        lambda path: report.plot_comparison(
            rows,
            path,
            _common.title(config),
            show_lr=config.lr_schedule != "none",
        ),
        report.format_compare_table(rows),
        say,
    )
    return payload
