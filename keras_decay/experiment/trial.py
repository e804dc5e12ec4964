"""A planned trial: one immutable record from the plan to the result.

`compare` and `sweep` plan their trials as `Trial` records; the engine
stores them in the study (`to_dict`, JSON) and hands them back to the
workers (`from_dict`), the runner trains one. Nothing rebuilds or re-parses
a trial on the way.
"""

import dataclasses

__all__ = ["Trial"]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training: a run's regularization on one seed.

    Attributes:
        run: The run's name (`"plain"`, `"l2"`, ..., `"sweep"`).
        weight_decay: The `WeightDecay` rate of the kernels, or `None` (no
            regularizer).
        dropout: The rate of the dropout layer before the classifier, or
            `None` (no such layer).
        seed: The seed of the initial weights, batches, masks and data.
        label: How the output names the trial (`"l2 seed 3"`).
        dir: Its TensorBoard folder, relative to `--logdir`.
        seeds: Empty for one seed; else a pruned sweep's point: every
            seed of the tuple trained in lockstep, epoch by epoch, in this
            one trial (`seed` is then the first of them), the seed `s`
            in the folder `dir + f"-seed_{s}"`.
    """

    run: str
    weight_decay: float = None
    dropout: float = None
    seed: int = 0
    label: str = ""
    dir: str = ""
    seeds: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(self.seeds))

    @property
    def key(self):
        """The trial's name: equal keys are the same training."""
        seeds = (
            f"seeds={','.join(map(str, self.seeds))}"
            if self.seeds
            else f"seed={self.seed}"
        )
        return (
            f"run={self.run} weight_decay={self.weight_decay!r} "
            f"dropout={self.dropout!r} {seeds}"
        )

    @property
    def params(self):
        """The Optuna parameters (0.0 for no regularizer or dropout); a
        lockstep trial has no `seed` (its seeds are a user attribute)."""
        params = {
            "run": self.run,
            "weight_decay": float(self.weight_decay or 0.0),
            "dropout": float(self.dropout or 0.0),
        }
        if not self.seeds:
            params["seed"] = int(self.seed)
        return params

    @property
    def runs(self):
        """`(seed, folder)` of each training in the trial."""
        if not self.seeds:
            return [(self.seed, self.dir)]
        return [(seed, f"{self.dir}-seed_{seed}") for seed in self.seeds]

    def to_dict(self):
        """The record as stored in a study (JSON), its key included; the
        `seeds` of a one-seed trial are left out (as stored before)."""
        stored = dict(dataclasses.asdict(self), key=self.key)
        if not self.seeds:
            del stored["seeds"]
        else:
            stored["seeds"] = list(self.seeds)
        return stored

    @classmethod
    def from_dict(cls, stored):
        """The record of `to_dict` (other keys, such as `key`, ignored)."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: stored[name] for name in names if name in stored})
