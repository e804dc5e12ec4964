"""`WeightNormLogger`, in three parts.

`_statistics` computes every number (one compiled function per backend,
keyed by tag), `_summaries` and `_writer` turn them into TensorBoard event
files without TensorFlow, and `_callback` decides when to log.
"""

from keras_decay.callbacks._weight_norm_logger._callback import WeightNormLogger

__all__ = ["WeightNormLogger"]
