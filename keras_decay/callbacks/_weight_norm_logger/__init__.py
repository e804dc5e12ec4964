"""`WeightNormLogger`, in parts.

`_statistics` computes every number, from the sums `_host` takes with
NumPy over the variables' own memory (on a CPU) or the backend's kernels
(on an accelerator); `_rotation` the angles of `rotation=True`;
`_summaries` and `_writer` turn them into TensorBoard event files without
TensorFlow, and `_callback` decides when to log.
"""

from keras_decay.callbacks._weight_norm_logger._callback import WeightNormLogger

__all__ = ["WeightNormLogger"]
