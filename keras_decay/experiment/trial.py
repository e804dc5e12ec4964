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
    """

    run: str
    weight_decay: float = None
    dropout: float = None
    seed: int = 0
    label: str = ""
    dir: str = ""

    @property
    def key(self):
        """The trial's name: equal keys are the same training."""
        return (
            f"run={self.run} weight_decay={self.weight_decay!r} "
            f"dropout={self.dropout!r} seed={self.seed}"
        )

    @property
    def params(self):
        """The Optuna parameters (0.0 for no regularizer or dropout)."""
        return {
            "run": self.run,
            "weight_decay": float(self.weight_decay or 0.0),
            "dropout": float(self.dropout or 0.0),
            "seed": int(self.seed),
        }

    def to_dict(self):
        """The record as stored in a study (JSON), its key included."""
        return dict(dataclasses.asdict(self), key=self.key)

    @classmethod
    def from_dict(cls, stored):
        """The record of `to_dict` (other keys, such as `key`, ignored)."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: stored[name] for name in names})
