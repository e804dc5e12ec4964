"""Reading TensorBoard event files back in tests, without TensorFlow.

The records are read with a few lines of `struct` (TensorFlow's record
format: length, its CRC, data, its CRC) and decoded with TensorBoard's own
protos, so that a JAX or PyTorch test process never imports TensorFlow.
"""

import glob
import os
import struct

from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util


def iter_events(path):
    """Yields the `Event` protos of one event file; stops at a torn tail."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                return
            yield event_pb2.Event.FromString(data)


def read_events(log_dir, run="train"):
    """Returns {tag: [(step, ndarray, plugin_name), ...]} in write order.

    Files are ordered by their first event's wall time: their names end in
    a per-process counter, so "...9" sorts after "...10".
    """
    files = [
        list(iter_events(path))
        for path in glob.glob(os.path.join(log_dir, run, "events.*"))
    ]
    files = [f for f in files if f]
    files.sort(key=lambda file_events: file_events[0].wall_time)
    events = {}
    for file_events in files:
        for event in file_events:
            for value in event.summary.value:
                events.setdefault(value.tag, []).append(
                    (
                        event.step,
                        tensor_util.make_ndarray(value.tensor),
                        value.metadata.plugin_data.plugin_name,
                    )
                )
    return events


def scalars(events, tag):
    return [(step, float(v)) for step, v, _ in events[tag]]
