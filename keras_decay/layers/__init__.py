"""Dropout variants as Keras layers, with rates that can be scheduled.

- `ClassicDropout`: the original, non-inverted dropout.
- `DropBlock2D` / `drop_block_2d`: DropBlock (Ghiasi et al., 2018).
- `DropConnectDense`: DropConnect (Wan et al., 2013) on a Dense kernel.
- `DropPath` / `stochastic_depth_rates`: stochastic depth (Huang et al.,
  2016) on residual branches.

Each layer keeps its rate in `rate_variable`, which
`keras_decay.callbacks.DropRateScheduler` drives during training.
"""

from keras_decay.layers._classic_dropout import ClassicDropout
from keras_decay.layers._drop_block import DropBlock2D
from keras_decay.layers._drop_block import drop_block_2d
from keras_decay.layers._drop_connect import DropConnectDense
from keras_decay.layers._drop_path import DropPath
from keras_decay.layers._drop_path import stochastic_depth_rates

__all__ = [
    "ClassicDropout",
    "DropBlock2D",
    "DropConnectDense",
    "DropPath",
    "drop_block_2d",
    "stochastic_depth_rates",
]
