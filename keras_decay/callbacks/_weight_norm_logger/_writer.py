"""TensorBoard event files written without TensorFlow, flushed at each log.

TensorBoard's `RecordWriter` frames each `Event` proto as TensorFlow's
record format; this writer opens the file itself (TensorBoard's
`EventFileWriter` creates its directory with `tf.io.gfile`, which imports
TensorFlow, and writes from a thread whose errors reach `fit` later), writes
synchronously and flushes after every log.
"""

import itertools
import os
import socket
import time
import warnings

from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, no detection.
    fcntl = None

_LOCK_NAME = ".keras_decay_writer.lock"
_FILE_IDS = itertools.count()


def _open_file(path):
    """Opens an event file for writing (tests replace it to fail writes)."""
    return open(path, "wb")


class EventWriter:
    """Writes `Summary` protos to `<run_dir>/events.out.tfevents.*`.

    Args:
        run_dir: String. The TensorBoard run folder.
        owner: String. Who writes, for the warnings (`"WeightNormLogger"`).

    `open()` raises `OSError` when the folder cannot be created or written.
    After that, a failed write (disk full, folder deleted, permissions
    changed) is one `RuntimeWarning` naming the owner and the path; later
    writes open a new event file and go on when writing works again. An
    event file that holds no event yet when a write fails is removed (on a
    full disk, each failed log would otherwise leave one more empty file).
    A second writer (another process, or another logger in this one) on the
    same run folder is detected with an advisory lock: it warns and writes
    to `<run_dir>-<host>-<pid>` instead, a distinct TensorBoard run.
    """

    def __init__(self, run_dir, owner):
        self.run_dir = run_dir
        self.owner = owner
        self._records = None
        self._path = None
        self._lock = None
        self._failing = False
        self._events = 0  # Events written to the current file.

    @property
    def path(self):
        """The event file being written, or `None`."""
        return self._path

    def open(self):
        self._lock_run_dir()
        self._start_file()

    def write(self, step, summary):
        """Writes one `Summary` at `step` and flushes; never raises OSError."""
        event = event_pb2.Event(wall_time=time.time(), step=step)
        event.summary.CopyFrom(summary)
        try:
            if self._records is None or not os.path.exists(self._path):
                self._discard_file()
                self._lock_run_dir()
                self._start_file()
            self._records.write(event.SerializeToString())
            self._records.flush()
            self._events += 1
        except OSError as error:
            self._discard_file(remove_if_empty=True)
            if not self._failing:
                warnings.warn(
                    f"{self.owner} could not write TensorBoard events to "
                    f"{self.run_dir!r}: {error}. Training goes on; logging "
                    "resumes when the folder can be written again.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._failing = True
            return False
        self._failing = False
        return True

    def close(self):
        self._discard_file()
        if self._lock is not None:
            try:
                self._lock.close()  # Releases the lock.
            except OSError:
                pass
            self._lock = None

    def _start_file(self):
        os.makedirs(self.run_dir, exist_ok=True)
        name = "events.out.tfevents.%010d.%s.%s.%s.keras_decay" % (
            time.time(),
            socket.gethostname(),
            os.getpid(),
            next(_FILE_IDS),
        )
        path = os.path.join(self.run_dir, name)
        records = RecordWriter(_open_file(path))
        try:
            version = event_pb2.Event(
                wall_time=time.time(), file_version="brain.Event:2"
            )
            records.write(version.SerializeToString())
            records.flush()
        except OSError:
            _close_quietly(records)
            _remove_quietly(path)
            raise
        self._records, self._path, self._events = records, path, 0

    def _discard_file(self, remove_if_empty=False):
        if self._records is not None:
            _close_quietly(self._records)
            if remove_if_empty and not self._events:
                _remove_quietly(self._path)
        self._records = None

    def _lock_run_dir(self):
        """Takes the run folder's lock, or moves to a distinct run folder."""
        if fcntl is None:
            return
        if self._lock is not None:
            if os.path.exists(os.path.join(self.run_dir, _LOCK_NAME)):
                return
            self._lock.close()  # The folder was deleted: lock it again.
            self._lock = None
        os.makedirs(self.run_dir, exist_ok=True)
        lock = open(os.path.join(self.run_dir, _LOCK_NAME), "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another writer"
            lock.close()
            distinct = f"{self.run_dir}-{socket.gethostname()}-{os.getpid()}"
            warnings.warn(
                f"{self.owner}: {holder} is already writing TensorBoard "
                f"events to {self.run_dir!r}; this one writes to "
                f"{distinct!r} instead (give each process its own log_dir).",
                RuntimeWarning,
                stacklevel=3,
            )
            self.run_dir = distinct
            self._lock_run_dir()
            return
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        self._lock = lock


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _close_quietly(records):
    try:
        records.close()
    except OSError:
        pass
