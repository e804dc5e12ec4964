"""`Summary` protos for the logger's scalars, histograms and HParams.

Built from TensorBoard's protos and plugin metadata, without TensorFlow.
"""

import numpy as np
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import summary_v2 as hparams_v2
from tensorboard.plugins.scalar import metadata as scalar_metadata


def log_summary(scalars, histograms, described):
    """One `Summary`: `{tag: float}` scalars and `{path: row}` histograms.

    Each histogram row is `[low, high, count_1, ..., count_k]`. Plugin
    metadata goes with the first value of each tag (`described` holds the
    tags already described in this event file and is updated).
    """
    summary = summary_pb2.Summary()
    for tag, value in scalars.items():
        entry = summary.value.add(tag=tag)
        entry.tensor.CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, float_val=[float(value)]
            )
        )
        _describe(entry, tag, described, scalar_metadata)
    for path, row in histograms.items():
        tag = f"weight_histogram/{path}"
        buckets = histogram_buckets(row[0], row[1], row[2:])
        entry = summary.value.add(tag=tag)
        entry.tensor.CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_DOUBLE,
                tensor_shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[
                        tensor_shape_pb2.TensorShapeProto.Dim(size=s)
                        for s in buckets.shape
                    ]
                ),
                tensor_content=buckets.tobytes(),
            )
        )
        _describe(entry, tag, described, histogram_metadata)
    return summary


def _describe(entry, tag, described, plugin):
    if tag not in described:
        entry.metadata.CopyFrom(plugin.create_summary_metadata(tag, ""))
        described.add(tag)


def hparams_summary(hparams):
    """The HParams plugin's session-start `Summary` for `{name: value}`."""
    return hparams_v2.hparams_pb(hparams)


def histogram_buckets(low, high, counts):
    """TensorBoard's `[k, 3]` histogram rows `[left, right, count]`."""
    k = len(counts)
    if low == high:
        # As `tf.summary.histogram`: zero-width buckets, all in the last.
        edges = np.full(k, high, np.float64)
        last = np.zeros(k, np.float64)
        last[-1] = np.sum(counts)
        return np.stack([edges, edges, last], axis=1)
    edges = np.linspace(low, high, k + 1)
    edges[-1] = high
    return np.stack([edges[:-1], edges[1:], counts], axis=1).astype(np.float64)
