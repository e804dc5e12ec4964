"""Reading TensorBoard event files back in tests."""

import glob
import os

import tensorflow as tf


def read_events(log_dir, run="train"):
    """Returns {tag: [(step, ndarray, plugin_name), ...]} in write order.

    Files are ordered by their first event's wall time: their names end in
    a per-process counter, so "...9" sorts after "...10".
    """
    files = [
        list(tf.compat.v1.train.summary_iterator(path))
        for path in glob.glob(os.path.join(log_dir, run, "events.*"))
    ]
    files.sort(key=lambda file_events: file_events[0].wall_time)
    events = {}
    for file_events in files:
        for event in file_events:
            for value in event.summary.value:
                events.setdefault(value.tag, []).append(
                    (
                        event.step,
                        tf.make_ndarray(value.tensor),
                        value.metadata.plugin_data.plugin_name,
                    )
                )
    return events


def scalars(events, tag):
    return [(step, float(v)) for step, v, _ in events[tag]]
