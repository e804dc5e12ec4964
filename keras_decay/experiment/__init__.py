"""The regularization experiment and weight-decay sweeps.

Nielsen's regularization experiment (Neural Networks and Deep Learning,
ch. 3: L2 and dropout against overfitting) made runnable: the same small CNN
trained on digits with 30 % of its training labels flipped, without
regularization, with L2 (`WeightDecay`), with dropout and with both
(`keras-decay compare`), and the decay rate chosen by training over a grid
or a log-uniform range of rates (`keras-decay sweep`).

| module    | job                                                     |
| --------- | ------------------------------------------------------- |
| `options` | every command-line option, declared once (help, check)  |
| `data`    | digits / keras.datasets, stratified splits, label noise |
| `runner`  | the model, the optimizer, one trained trial             |
| `engine`  | trials in worker processes on one Optuna study          |
| `report`  | mean ± sd tables, `results.json`, the figures           |
| `compare` | `keras-decay compare`                                   |
| `sweep`   | `keras-decay sweep`                                     |

Importing this package, `options`, `engine` and `report` does not import
Keras or TensorFlow: only the worker processes that train do.
"""
