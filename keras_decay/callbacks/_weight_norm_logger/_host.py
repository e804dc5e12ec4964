"""The logger's sums on the host: NumPy over the variables' own memory.

Per chunk of `CHUNK` entries of a variable `w` and of its snapshot `last`
(chunks stay in a core's cache, so each is read from memory once), in
float32 (float64 for float64 variables), totals in float64:

```
square += dot(w, w); change += dot(w - last, w - last); last[:] = w
tiny += count(abs(w) < 1e-3); l1 += sum(abs(w)); max = max(max, abs(w))
```

A log reads the weights and the snapshot once and writes the snapshot
once: the floor is three passes over memory. (Sharing the chunks out
between two threads on 2 cores was measured 0.9-1.3x as fast, within the
noise next to XLA's own threads: not kept.)
"""

import threading

import numpy as np

SPARSITY_THRESHOLD = 1e-3
# Entries reduced at a time (256 KiB of float32, within a core's L2
# cache).
CHUNK = 1 << 16


class Scratch(threading.local):
    """Chunk-sized buffers, one set per thread (no allocation per chunk
    for float32 variables)."""

    def __init__(self):
        self.float32 = np.empty(CHUNK, np.float32)
        self.mask = np.empty(CHUNK, bool)

    def buffer(self, size, dtype):
        if dtype == np.float32:
            return self.float32[:size]
        return np.empty(size, dtype)


def _sums(w, last, names, scratch):
    """`{name: float}` of the flat `w` against the flat `last`; copies `w`
    into `last`."""
    wide = np.float64 if w.dtype == np.float64 else np.float32
    totals = dict.fromkeys(names, 0.0)
    for begin in range(0, w.size, CHUNK):
        part = w[begin : begin + CHUNK]
        part_last = last[begin : begin + part.size]
        a = part.astype(wide, copy=False)
        b = part_last.astype(wide, copy=False)
        t = scratch.buffer(part.size, wide)
        mask = scratch.mask[: part.size]
        totals["square"] += float(np.dot(a, a))
        np.subtract(a, b, out=t)
        totals["change"] += float(np.dot(t, t))
        part_last[...] = part
        np.abs(a, out=t)
        np.less(t, SPARSITY_THRESHOLD, out=mask)
        totals["tiny"] += int(np.count_nonzero(mask))
        if "l1" in totals:
            totals["l1"] += float(np.sum(t))
        if "max" in totals:
            totals["max"] = max(totals["max"], float(np.max(t)))
    return totals


def host_sums(values, lasts, names, scratch):
    """The sums `names` (of `square`, `change`, `tiny`, `l1`, `max`) of
    NumPy arrays `values`, each against its snapshot in `lasts` (which it
    overwrites with the value): a `[variables, names]` float64 array."""
    out = np.zeros((len(values), len(names)))
    for row, (w, last) in enumerate(zip(values, lasts)):
        w, last = np.reshape(w, -1), np.reshape(last, -1)
        totals = _sums(w, last, names, scratch)
        out[row] = [totals[n] for n in names]
    return out
