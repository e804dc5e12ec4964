"""The regularization experiment and weight-decay sweeps.

Nielsen's regularization experiment (Neural Networks and Deep Learning,
ch. 3: L2 and dropout against overfitting) made runnable: the same small CNN
trained on digits with 30 % of its training labels flipped, without
regularization, with L2 (`WeightDecay`), with dropout and with both
(`keras-decay compare`), and the decay rate chosen by training over a grid
or a log-uniform range of rates (`keras-decay sweep`).

| module    | job                                                     |
| --------- | ------------------------------------------------------- |
| `trial`   | one trial: run, weight decay, dropout, seed; its key    |
| `data`    | digits / keras.datasets, stratified splits, label noise |
| `runner`  | the model, the optimizer, one trained trial             |
| `engine`  | trials in worker processes on one Optuna study          |
| `report`  | mean ± sd tables, `results.json`, the figures           |
| `compare` | `keras-decay compare`                                   |
| `sweep`   | `keras-decay sweep`                                     |

The options and their immutable `Settings` are the command's, declared
once in `keras_decay_cli.options` and importable from here as `options`
(`from keras_decay.experiment import compare, options`). Importing this
package imports its modules (not Optuna, which the engine imports when it
opens a study) and `keras_decay`, and with it Keras; the command parses
its arguments before that.
"""

from keras_decay.experiment import compare
from keras_decay.experiment import data
from keras_decay.experiment import engine
from keras_decay.experiment import report
from keras_decay.experiment import runner
from keras_decay.experiment import sweep
from keras_decay.experiment import trial
from keras_decay_cli import options

__all__ = [
    "compare",
    "data",
    "engine",
    "options",
    "report",
    "runner",
    "sweep",
    "trial",
]
