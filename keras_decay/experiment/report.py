"""Mean ± sd over seeds: tables, `results.json` and the figures.

matplotlib (the figures) comes with the `examples` extra and is imported
only when a figure is drawn. No Keras here.
"""

import json
import math
import os

import numpy as np

from keras_decay.experiment.data import import_extra

__all__ = [
    "METRICS",
    "aggregate",
    "format_compare_table",
    "format_sweep_table",
    "plot_comparison",
    "plot_sweep",
    "write_json",
]

# Final values reported per trial and aggregated (mean, sd over seeds).
METRICS = (
    "val_accuracy",
    "best_val_accuracy",
    "train_accuracy",
    "train_accuracy_clean",
    "memorized",
    "weight_norm",
    "tau_steps",
    "steps_trained",
)
_CURVES = ("val_accuracy", "memorized", "weight_norm", "learning_rate")


def _mean_sd(values):
    """`(mean, sd)`; sd is the sample standard deviation (n - 1), 0 for one."""
    values = np.asarray([math.nan if v is None else v for v in values], float)
    if np.isnan(values).all():
        return None, None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), sd


def aggregate(results, by):
    """One dict per group of `results` with equal `by` fields, in order.

    Each has the `by` fields, `seeds`, `n`, `pruned` (whether its trials
    were stopped by a pruner), `epochs_trained` (the most any of them
    trained), and for each of `METRICS`
    `{"mean": m, "sd": s}` over the group's trials (`None` where the
    metric is undefined, e.g. τ without weight decay), and `curves`: the
    per-epoch mean and sd of the figures' curves.
    """
    groups = {}
    for result in results:
        groups.setdefault(tuple(result[k] for k in by), []).append(result)
    rows = []
    for values, members in groups.items():
        row = dict(zip(by, values))
        row["seeds"] = [m["seed"] for m in members]
        row["n"] = len(members)
        row["pruned"] = any(m.get("pruned", False) for m in members)
        row["epochs_trained"] = max(
            len(m["history"]["val_accuracy"]) for m in members
        )
        for metric in METRICS:
            mean, sd = _mean_sd([m[metric] for m in members])
            row[metric] = {"mean": mean, "sd": sd}
        row["curves"] = {}
        for curve in _CURVES:
            stack = np.array([m["history"][curve] for m in members], float)
            sd = stack.std(axis=0, ddof=1) if len(members) > 1 else 0 * stack[0]
            row["curves"][curve] = {
                "mean": stack.mean(axis=0).tolist(),
                "sd": sd.tolist(),
            }
        rows.append(row)
    return rows


def _cell(stat, digits=3, n=2):
    if stat["mean"] is None:
        return "—"
    if n < 2:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def _tau_cell(row):
    tau, steps = row["tau_steps"]["mean"], row["steps_trained"]["mean"]
    if tau is None:
        return f"∞ / {steps:.0f}"
    return f"{tau:.0f} / {steps:.0f}"


_COLUMNS = (
    ("val acc (final)", "val_accuracy"),
    ("best val acc", "best_val_accuracy"),
    ("train acc (noisy labels)", "train_accuracy"),
    ("train acc (clean labels)", "train_accuracy_clean"),
    ("memorized", "memorized"),
)


def _table(first_columns, rows, cells, epochs=None):
    header = list(first_columns) + [title for title, _ in _COLUMNS]
    header += ["weight norm", "τ / steps"]
    if epochs is not None:
        header.append("epochs")
    lines = [
        "| " + " | ".join(header) + " |",
        "| "
        + " | ".join(["---"] * len(first_columns))
        + " | ---:" * (len(header) - len(first_columns))
        + " |",
    ]
    for row in rows:
        values = cells(row) + [_cell(row[m], n=row["n"]) for _, m in _COLUMNS]
        values += [_cell(row["weight_norm"], 2, row["n"]), _tau_cell(row)]
        if epochs is not None:
            values.append(_epochs_cell(row, epochs))
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def format_compare_table(rows):
    """A Markdown table: one row per run, mean ± sd over its seeds.

    Accuracies are in inference mode after the last epoch; `memorized` is
    the share of flipped training labels the model predicts; τ is the
    decay's timescale in steps next to the steps trained.
    """
    return _table(("run", "seeds"), rows, lambda r: [r["run"], str(r["n"])])


def _epochs_cell(row, epochs):
    trained = row["epochs_trained"]
    return f"pruned at {trained}/{epochs}" if row["pruned"] else f"{trained}"


def format_sweep_table(rows, epochs=None):
    """A Markdown table: one row per weight decay (and dropout).

    With `epochs` (a pruned sweep's), a last column gives the epochs each
    row trained: `pruned at 7/30` for a row a pruner stopped (its values
    are those after its last epoch).
    """
    return _table(
        ("weight decay", "dropout", "seeds"),
        rows,
        lambda r: [f"{r['weight_decay']:g}", f"{r['dropout']:g}", str(r["n"])],
        epochs,
    )


def write_json(path, payload):
    """Writes `payload` as JSON (NaN and infinity as `null`)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    tmp = path + ".tmp"
    with open(tmp, "w") as file:
        json.dump(clean(payload), file, indent=1)
    os.replace(tmp, path)


def _pyplot():
    matplotlib = import_extra("matplotlib")
    matplotlib.use("Agg", force=True)
    return import_extra("matplotlib.pyplot")


# Colours (Okabe-Ito) and line styles that stay apart when curves coincide.
_STYLES = (
    ("#0072B2", "-", "o"),
    ("#D55E00", "--", "s"),
    ("#009E73", "-.", "^"),
    ("#CC79A7", ":", "D"),
)


def plot_comparison(rows, path, title, show_lr=False):
    """Mean per epoch with a ±sd band: val accuracy, memorized, weight norm.

    A fourth panel shows the learning rate when `show_lr`.
    """
    pyplot = _pyplot()
    panels = [
        ("validation accuracy (clean labels)", "val_accuracy"),
        ("memorized: flipped training labels predicted", "memorized"),
        ("global L2 norm of the weights", "weight_norm"),
    ]
    if show_lr:
        panels.append(("learning rate (epoch start)", "learning_rate"))
    figure, axes = pyplot.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False
    )
    for axis, (panel_title, curve) in zip(axes[0], panels):
        for index, row in enumerate(rows):
            colour, line, marker = _STYLES[index % len(_STYLES)]
            mean = np.array(row["curves"][curve]["mean"])
            sd = np.array(row["curves"][curve]["sd"])
            epochs = np.arange(1, len(mean) + 1)
            axis.plot(
                epochs,
                mean,
                color=colour,
                linestyle=line,
                marker=marker,
                markevery=max(1, len(mean) // 8),
                markersize=4,
                label=f"{row['run']} (n={row['n']})",
            )
            axis.fill_between(
                epochs, mean - sd, mean + sd, color=colour, alpha=0.18
            )
        axis.set_title(panel_title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def plot_sweep(rows, path, title):
    """Validation and training accuracy against λ (log axis), error bars.

    λ = 0 is drawn a decade left of the smallest positive λ, labelled 0.
    One curve per dropout rate, through the complete rows; a row a pruner
    stopped is a hollow marker, not joined, at its values when stopped
    (labelled "pruned at epoch e").
    """
    pyplot = _pyplot()
    rates = sorted({row["weight_decay"] for row in rows})
    positive = [r for r in rates if r > 0] or [1e-3]
    zero_at = min(positive) / 10

    def where(rate):
        return rate if rate > 0 else zero_at

    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
    dropouts = sorted({row["dropout"] for row in rows})
    panels = (
        (
            axes[0],
            (
                ("val_accuracy", "validation (clean)"),
                ("train_accuracy", "training (noisy labels)"),
                ("train_accuracy_clean", "training (clean labels)"),
            ),
            "accuracy after the last epoch",
        ),
        (axes[1], (("memorized", "memorized"),), "memorized fraction"),
    )
    for axis, metrics, panel_title in panels:
        style = 0
        for dropout in dropouts:
            group = sorted(
                (r for r in rows if r["dropout"] == dropout),
                key=lambda r: r["weight_decay"],
            )
            complete = [r for r in group if not r.get("pruned")]
            pruned = [r for r in group if r.get("pruned")]
            for metric, label in metrics:
                colour, line, marker = _STYLES[style % len(_STYLES)]
                style += 1
                suffix = f", dropout {dropout:g}" if len(dropouts) > 1 else ""
                axis.errorbar(
                    [where(r["weight_decay"]) for r in complete],
                    [r[metric]["mean"] for r in complete],
                    yerr=[r[metric]["sd"] for r in complete],
                    color=colour,
                    linestyle=line,
                    marker=marker,
                    capsize=3,
                    label=label + suffix,
                )
                if not pruned:
                    continue
                axis.errorbar(
                    [where(r["weight_decay"]) for r in pruned],
                    [r[metric]["mean"] for r in pruned],
                    yerr=[r[metric]["sd"] for r in pruned],
                    color=colour,
                    linestyle="none",
                    marker=marker,
                    markerfacecolor="white",
                    markersize=8,
                    capsize=3,
                    label=(
                        f"pruned{suffix}: hollow, values when stopped"
                        if metric == metrics[0][0]
                        else None
                    ),
                )
                if metric == metrics[0][0] and axis is axes[0]:
                    for r in pruned:
                        axis.annotate(
                            f"pruned\n@{r['epochs_trained']}",
                            (where(r["weight_decay"]), r[metric]["mean"]),
                            textcoords="offset points",
                            xytext=(0, 8),
                            ha="center",
                            fontsize=6,
                            color=colour,
                        )
        axis.set_xscale("log")
        ticks = [where(r) for r in rates]
        axis.set_xticks(ticks, [f"{r:g}" for r in rates], fontsize=8)
        axis.minorticks_off()
        axis.set_xlabel("weight decay λ (WeightDecay rate)")
        axis.set_title(panel_title, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
