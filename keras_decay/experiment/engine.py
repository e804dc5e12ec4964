"""The trial queue: the trials of a plan on one Optuna study.

A *plan* is the list of trials a command wants (`Trial` records: run,
weight decay, dropout, seed, and the `key` naming it). The plan and the
settings are stored in the study's user attributes, every planned trial is
enqueued once (`Study.enqueue_trial`), and worker processes
(`python -m keras_decay.experiment.worker`) take WAITING trials one at a
time until none is left, on this machine or on any other machine that
opens the same storage and study (the local worker processes are
started by `keras_decay.experiment.pool`). So:

- a COMPLETE trial is never trained again: a rerun finds nothing to do;
  nor is a PRUNED one (a sweep with `--pruner`: stopped early by Optuna's
  pruner, `make_pruner`, on the mean over its seeds; it is a result);
- two trials with the same key (two machines enqueueing at the same
  moment) are trained once: the lowest-numbered one that has not failed is
  the trial, a later one is marked `FAIL` with `status=duplicate` unrun;
- a trial left RUNNING by a dead worker is failed (`status=worker died`)
  and its key enqueued again. On the worker's own machine this is seen from
  the worker's process id (Optuna's journal storage has no heartbeat); with
  an RDB storage (`postgresql://...`) also from Optuna's heartbeat, for
  workers on other machines.

Storage: a journal file `<logdir>/experiment.journal` by default (no
server), or any Optuna RDB URL; two processes creating the tables of an
empty database at once can collide (optuna#1092), so opening is retried.
"""

import collections
import errno
import functools
import inspect
import os
import socket
import sys
import threading
import time
import warnings
from types import FunctionType

from keras_decay.experiment.data import ExperimentError
from keras_decay.experiment.data import import_extra
from keras_decay.experiment.trial import Trial
from keras_decay_cli import options

__all__ = [
    "JOURNAL_NAME",
    "Engine",
    "make_pruner",
]

JOURNAL_NAME = "experiment.journal"
# How often a trial that fails with an error in training is tried in all,
# once per run of the command.
ERROR_ATTEMPTS = 3
# Every run a trial can belong to: compare's runs and the sweep's.
RUN_NAMES = (*options.RUNS, "sweep")
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20
# A RUNNING trial without a worker record (its worker died between taking
# it and recording itself) is an orphan after this long.
ORPHAN_SECONDS = 120
_OPEN_ATTEMPTS = 6
# How long a storage call waits for a database that went away (a server
# restart) before its error is the command's.
RECONNECT_SECONDS = 60


Taken = collections.namedtuple("Taken", ["trial", "trial_id", "entry"])


def delete_study(storage, study):
    """Deletes `study` from `storage` if it is there; returns the names of
    the studies left."""
    opened = Engine(storage, study, create=False).storage
    names = [s.study_name for s in opened.get_all_studies()]
    if study in names:
        _optuna().delete_study(study_name=study, storage=opened)
    return [name for name in names if name != study]


def repair_journal(path):
    """Cuts a torn last record off an Optuna journal file, under its lock.

    A process killed (or a disk filled) while appending leaves a last line
    without its newline or with half its JSON; Optuna then refuses the whole
    file, and appending after it would make the damage permanent. Every
    complete record is kept; the torn bytes are moved to
    `<path>.torn-<time>`. A record that is not JSON before the last line
    is an `ExperimentError` naming the file and the line (nothing is
    changed).

    Returns:
        A line saying what was dropped, or `None` for a sound file.
    """
    import json

    from optuna.storages.journal import JournalFileSymlinkLock

    if not os.path.exists(path):
        return None
    lock = JournalFileSymlinkLock(path)  # Optuna's writers take it too
    acquired = lock.acquire()
    try:
        with open(path, "rb") as file:
            data = file.read()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" after a last newline
        for number, line in enumerate(lines, start=1):
            try:
                json.loads(line)
            except ValueError:
                if number < len(lines):
                    raise ExperimentError(
                        f"the journal {path} has a damaged record on line "
                        f"{number} of {len(lines)} (not a torn last write); "
                        "move it away to start the study again"
                    ) from None
                tail = line + b"\n" + tail
                lines.pop()
        if not tail:
            return None
        try:
            json.loads(tail)
        except ValueError:
            pass
        else:  # Complete, only its newline lost: keep the record.
            with open(path, "ab") as file:
                file.write(b"\n")
            return None
        kept = len(data) - len(tail)
        torn = f"{path}.torn-{int(time.time())}"
        with open(torn, "wb") as file:
            file.write(tail)
        with open(path, "r+b") as file:
            file.truncate(kept)
            file.flush()
            os.fsync(file.fileno())
        return (
            f"the journal {path} ended in a torn record ({len(tail)} bytes, "
            f"kept in {torn}); its {len(lines)} complete records are kept"
        )
    finally:
        if acquired:
            lock.release()


def _optuna():
    optuna = import_extra("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings(
        "ignore", category=optuna.exceptions.ExperimentalWarning
    )
    return optuna


def _process_start(pid):
    """The process' start time in clock ticks (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return int(file.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, start):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or _process_start(pid) in (None, start)


def worker_identity():
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start": _process_start(pid),
    }


def _one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class Engine:
    """One study in one storage, seen from one process.

    Args:
        storage: An Optuna storage URL, or `journal://<path>`.
        study: The study name.
        create: Whether to open (or create) the study; `False` opens the
            storage only.
    """

    def __init__(self, storage, study, create=True):
        self.optuna = _optuna()
        self.url, self.name = storage, study
        self.notes = []  # what opening did that the user should hear of
        self.storage = self._open_storage()
        if create:  # else the storage only (`delete_study`)
            self.study = self._open_study()
            self.study_id = self.storage.get_study_id_from_name(study)

    # -- opening ---------------------------------------------------------------

    def _open_storage(self):
        optuna = self.optuna
        if self.url.startswith("journal://"):
            path = self.url[len("journal://") :]
            try:
                note = repair_journal(path)
                if note:
                    self.notes.append(note)
                return optuna.storages.JournalStorage(
                    _whole_records_backend_class()(path)
                )
            except OSError as error:
                raise ExperimentError(
                    f"cannot open the journal {path}: {_one_line(error)}"
                ) from None
        kwargs = {}
        if self.url.split("+")[0].startswith("postgresql"):
            kwargs = {"connect_args": {"connect_timeout": 5}}
        # `pool_pre_ping` replaces the connections a server restart broke.
        kwargs["pool_pre_ping"] = True
        return self._retry(
            lambda: _reconnecting_storage_class()(
                self.url,
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
            ),
            "open the storage",
        )

    def _retry(self, make, what):
        """`make()`, retried: an empty database's tables can race."""
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                return make()
            except ImportError as error:
                raise ExperimentError(
                    f"cannot {what} {_redact(self.url)}: {_one_line(error)} "
                    f'(the PostgreSQL driver: pip install "psycopg[binary]")'
                ) from None
            except Exception as error:  # noqa: BLE001 (SQLAlchemy, drivers)
                if attempt == _OPEN_ATTEMPTS - 1 or _unreachable(error):
                    raise ExperimentError(
                        f"cannot {what} {_redact(self.url)}: {_one_line(error)}"
                    ) from None
                time.sleep(0.2 * (attempt + 1))

    def _open_study(self):
        return self._retry(
            lambda: self.optuna.create_study(
                storage=self.storage,
                study_name=self.name,
                direction="maximize",
                load_if_exists=True,
            ),
            f"open the study {self.name!r} in",
        )

    # -- the plan --------------------------------------------------------------

    def set_plan(self, settings, plan):
        """Stores the settings and plan, or checks them against the study's.

        Raises:
            ExperimentError: the study was made with other settings.
        """
        attrs = self.study.user_attrs
        old = attrs.get("settings")
        if old is not None and "backend" not in old and "backend" in settings:
            # A study from before the backend was recorded: it takes this
            # process's backend.
            old = dict(old, backend=settings.get("backend"))
            self.study.set_user_attr("settings", old)
        if old is not None and "pruner" not in old and "pruner" in settings:
            # A sweep from before `--pruner`: it pruned nothing.
            old = dict(old, pruner="none")
            self.study.set_user_attr("settings", old)
        if old is not None and old != settings:
            diff = ", ".join(
                f"{k}={old.get(k)!r} (here {settings.get(k)!r})"
                for k in sorted(set(old) | set(settings))
                if old.get(k) != settings.get(k)
            )
            raise ExperimentError(
                f"the study {self.name!r} in {_redact(self.url)} was made "
                f"with other settings: {diff}; use the same options, another "
                f"--study or another --logdir"
            )
        if old is None:
            self.study.set_user_attr("settings", settings)
        # A rerun with more grid points adds them; the plan only grows.
        stored = attrs.get("plan", [])
        known = {t["key"] for t in stored}
        added = [t.to_dict() for t in plan if t.key not in known]
        if added or "plan" not in attrs:
            self.study.set_user_attr("plan", stored + added)

    @property
    def settings(self):
        return self.study.user_attrs["settings"]

    @property
    def plan(self):
        """The study's planned trials, `Trial` records."""
        return [Trial.from_dict(t) for t in self.study.user_attrs["plan"]]

    def trials(self, states=None):
        return self.study.get_trials(deepcopy=False, states=states)

    def top_up(self):
        """Enqueues every planned trial without a live or finished copy.

        A trial that failed with an error in training is not enqueued
        again. Returns the number enqueued.
        """
        state = self.optuna.trial.TrialState
        live = (state.WAITING, state.RUNNING, state.COMPLETE, state.PRUNED)
        have, errors = set(), set()
        for trial in self.trials():
            key = trial.user_attrs.get("key")
            if trial.state in live:
                have.add(key)
            elif trial.user_attrs.get("status") == "error":
                errors.add(key)
        added = 0
        for trial in self.plan:
            if trial.key not in have | errors:
                self._enqueue(trial)
                added += 1
        return added

    def retry_errors(self):
        """Enqueues again the planned trials whose every try so far failed
        with an error in training, if tried fewer than `ERROR_ATTEMPTS`
        times. Called once per run of a command (`execute`): a rerun
        retries, a worker does not loop on a failing trial. Returns their
        keys."""
        state = self.optuna.trial.TrialState
        live = (state.WAITING, state.RUNNING, state.COMPLETE, state.PRUNED)
        have, errors = set(), collections.Counter()
        for trial in self.trials():
            key = trial.user_attrs.get("key")
            if trial.state in live:
                have.add(key)
            elif trial.user_attrs.get("status") == "error":
                errors[key] += 1
        retried = []
        for trial in self.plan:
            if trial.key not in have and 0 < errors[trial.key] < ERROR_ATTEMPTS:
                self._enqueue(trial)
                retried.append(trial.key)
        return retried

    def _enqueue(self, trial):
        attrs = {"key": trial.key}
        if trial.seeds:
            attrs["seeds"] = list(trial.seeds)
        self.study.enqueue_trial(trial.params, user_attrs=attrs)

    def reap(self):
        """Fails trials left RUNNING by dead workers; returns their numbers.

        Dead: a worker on this host whose process is gone, a RUNNING trial
        without a worker record for `ORPHAN_SECONDS`, or (RDB storages) a
        trial whose heartbeat stopped.
        """
        optuna = self.optuna
        running = optuna.trial.TrialState.RUNNING
        stale = {t.number for t in self.trials((running,))}
        optuna.storages.fail_stale_trials(self.study)
        still = {t.number for t in self.trials((running,))}
        reaped = sorted(stale - still)
        host = socket.gethostname()
        for trial in self.trials((running,)):
            worker = trial.user_attrs.get("worker")
            if worker is None:
                started = trial.datetime_start.timestamp()
                dead = time.time() - started > ORPHAN_SECONDS
            else:
                dead = worker["host"] == host and not _alive(
                    worker["pid"], worker["start"]
                )
            if dead and self._fail(trial.number, "worker died"):
                reaped.append(trial.number)
        return reaped

    def _trial_id(self, number):
        return self.storage.get_trial_id_from_study_id_trial_number(
            self.study_id, number
        )

    def _set_status(self, number, status, **attrs):
        trial_id = self._trial_id(number)
        for key, value in dict(attrs, status=status).items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def _fail(self, number, status, **attrs):
        """Marks a RUNNING trial FAIL; False if another process finished it."""
        try:
            self._set_status(number, status, **attrs)
            fail = self.optuna.trial.TrialState.FAIL
            return self.storage.set_trial_state_values(
                self._trial_id(number), fail
            )
        except self.optuna.exceptions.UpdateFinishedTrialError:
            return False

    # -- workers -------------------------------------------------------------

    def take(self):
        """Claims one WAITING trial for this process: `Taken(optuna trial,
        trial id, entry)`, `entry` its `Trial` record.

        Returns `None` when no trial is waiting. A claimed trial that
        duplicates a trial with a lower number (equal key, not failed) is
        marked `status=duplicate` and skipped.
        """
        optuna = self.optuna
        state = optuna.trial.TrialState
        planned = self.plan
        plan = {t.key: t for t in planned}
        while True:
            claimed = None
            for waiting in self.trials((state.WAITING,)):
                trial_id = self._trial_id(waiting.number)
                try:
                    if self.storage.set_trial_state_values(
                        trial_id, state.RUNNING
                    ):
                        claimed = waiting.number
                        break
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
            if claimed is None:
                return None
            self.storage.set_trial_user_attr(
                self._trial_id(claimed), "worker", worker_identity()
            )
            trial_id = self._trial_id(claimed)
            key = self.storage.get_trial(trial_id).user_attrs.get("key")
            first = min(
                t.number
                for t in self.trials()
                if t.user_attrs.get("key") == key and t.state != state.FAIL
            )
            if key not in plan or first != claimed:
                self._fail(claimed, "duplicate", duplicate_of=first)
                continue
            trial = optuna.Trial(self.study, trial_id)
            _suggest_enqueued(trial, plan[key])
            return Taken(trial, trial_id, plan[key])

    def heartbeat(self, taken):
        """A started thread recording the trial's heartbeat (RDB storages).

        Returns a `threading.Event` that stops it, or `None`.
        """
        if not isinstance(self.storage, self.optuna.storages.RDBStorage):
            return None
        trial_id = taken.trial_id
        stop = threading.Event()

        def beat():
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 (keep training)
                    pass

        self.storage.record_heartbeat(trial_id)
        threading.Thread(target=beat, daemon=True).start()
        return stop

    def use_pruner(self, name, epochs):
        """Gives the study the pruner of `--pruner` (`make_pruner`)."""
        self.study.pruner = make_pruner(name, epochs)

    def reporter(self, taken):
        """`report(epochs, value) -> prune`: tells Optuna a lockstep trial's
        mean val accuracy after `epochs` epochs, returns the pruner's
        verdict (`Trial.report`, `Trial.should_prune`)."""

        def report(epochs, value):
            taken.trial.report(value, epochs)
            return taken.trial.should_prune()

        return report

    def finish(self, taken, result, pruned=False):
        """Stores the result and tells Optuna the final val accuracy.

        `result` is one seed's dict, or a lockstep trial's list (one per
        seed; the value told is their mean); a `pruned` one is told PRUNED
        (Optuna keeps the last mean reported as its value).
        """
        if isinstance(result, list):
            value = sum(r["val_accuracy"] for r in result) / len(result)
            self.storage.set_trial_user_attr(taken.trial_id, "results", result)
        else:
            value = result["val_accuracy"]
            self.storage.set_trial_user_attr(taken.trial_id, "result", result)
        status = "pruned" if pruned else "done"
        self.storage.set_trial_user_attr(taken.trial_id, "status", status)
        if pruned:
            pruned_state = self.optuna.trial.TrialState.PRUNED
            self.study.tell(taken.trial, state=pruned_state)
        else:
            self.study.tell(taken.trial, value)

    def fail(self, taken, status, error=None):
        attrs = {} if error is None else {"error": _one_line(error)}
        self._fail(taken.trial.number, status, **attrs)

    # -- results ---------------------------------------------------------------

    def results(self, keys=None):
        """`(results, missing, errors)` over `keys` (default: the plan).

        `results`: the result of each seed of each planned key's COMPLETE
        or PRUNED trial (a lockstep trial has one per seed); `missing`:
        keys not finished; `errors`: `(key, message)` of trials that failed
        with an error in training.
        """
        state = self.optuna.trial.TrialState
        finished = (state.COMPLETE, state.PRUNED)
        done, errors = {}, {}
        for trial in self.trials():
            key = trial.user_attrs.get("key")
            if trial.state in finished and key not in done:
                attrs = trial.user_attrs
                done[key] = (
                    attrs["results"]
                    if "results" in attrs
                    else [attrs["result"]]
                )
            elif trial.user_attrs.get("status") == "error":
                errors[key] = trial.user_attrs.get("error", "")
        keys = keys or [t.key for t in self.plan]
        return (
            [result for k in keys if k in done for result in done[k]],
            [k for k in keys if k not in done],
            [(k, errors[k]) for k in keys if k in errors and k not in done],
        )

    def progress(self):
        """`(finished, planned)`: the planned trials complete or pruned."""
        state = self.optuna.trial.TrialState
        keys = {t.key for t in self.plan}
        finished = self.trials((state.COMPLETE, state.PRUNED))
        done = {t.user_attrs.get("key") for t in finished}
        return len(done & keys), len(keys)

    def counts(self):
        """`{state name: number of trials}`."""
        counts = {}
        for trial in self.trials():
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        return counts


def disk_full(error):
    """Whether `error` is a write refused for want of space (or quota)."""
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)


def write_error(error):
    """An `ExperimentError` for an `OSError` writing the log folder or the
    journal: one line, and for a full disk what to do."""
    where = f" {error.filename}" if error.filename else ""
    reason = error.strerror or _one_line(error)
    if disk_full(error):
        return ExperimentError(
            f"cannot write{where}: {reason}; the journal keeps every "
            "complete record: free some space and run the command again, "
            "it resumes"
        )
    return ExperimentError(f"cannot write{where}: {reason}")


_WHOLE_RECORDS = []


def _whole_records_backend_class():
    """Optuna's `JournalFileBackend` whose append is all or nothing: a
    write that fails (a full disk) is cut off again, under the journal's
    lock, so the file never ends in a torn record; the `OSError` goes on."""
    if not _WHOLE_RECORDS:
        from optuna.storages.journal import JournalFileBackend
        from optuna.storages.journal import JournalFileSymlinkLock

        class WholeRecordsJournalFileBackend(JournalFileBackend):
            def __init__(self, path):
                self._records_path = path
                self._records_lock = JournalFileSymlinkLock(path)
                super().__init__(path, lock_obj=self._records_lock)

            def append_logs(self, logs):
                lock = self._records_lock
                lock.acquire()
                try:
                    path = self._records_path
                    size = os.path.getsize(path)
                    try:
                        with open(path, "ab") as file:
                            file.write(_records(logs))
                            file.flush()
                            os.fsync(file.fileno())
                    except OSError:
                        with open(path, "r+b") as file:
                            file.truncate(size)  # needs no free space
                        raise
                finally:
                    lock.release()

        _WHOLE_RECORDS.append(WholeRecordsJournalFileBackend)
    return _WHOLE_RECORDS[0]


def _records(logs):
    """Optuna's journal lines for `logs` (as `JournalFileBackend` writes)."""
    import json

    lines = (json.dumps(log, separators=(",", ":")) for log in logs)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _connection_lost(error):
    """Whether `error` (or what caused it) is a lost or refused database
    connection: worth waiting for, unlike a wrong query or value."""
    from sqlalchemy import exc

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
            return True
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return True
        error = error.__cause__ or error.__context__
    return False


def _reconnecting(method, seconds):
    @functools.wraps(method)
    def call(*args, **kwargs):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 (SQLAlchemy, Optuna)
                if time.monotonic() > deadline or not _connection_lost(error):
                    raise
                time.sleep(1.0)

    return call


_RECONNECTING = []


def _reconnecting_storage_class():
    """Optuna's `RDBStorage` whose every call outlasts a database restart:
    a call that fails on a lost or refused connection is made again, once a
    second, for `RECONNECT_SECONDS` (the trial in training goes on; its
    result is stored when the server is back)."""
    if not _RECONNECTING:
        base = _optuna().storages.RDBStorage
        methods = {
            name: _reconnecting(getattr(base, name), RECONNECT_SECONDS)
            for name in dir(base)
            if not name.startswith("_")
            and isinstance(inspect.getattr_static(base, name), FunctionType)
        }
        _RECONNECTING.append(type("ReconnectingRDBStorage", (base,), methods))
    return _RECONNECTING[0]


def _suggest_enqueued(trial, entry):
    """Records the enqueued parameters under distributions that do not
    depend on the plan: Optuna refuses a categorical whose choices grow, so
    a grid grown by a rerun would fail. A lockstep trial (`entry.seeds`)
    has no one seed."""
    trial.suggest_categorical("run", RUN_NAMES)
    trial.suggest_float("weight_decay", 0.0, sys.float_info.max)
    trial.suggest_float("dropout", 0.0, 1.0)
    if not entry.seeds:
        trial.suggest_int("seed", 0, 2**63 - 1)


def make_pruner(name, epochs):
    """The Optuna pruner of `--pruner` for trials of `epochs` epochs.

    - `"none"`: `optuna.pruners.NopPruner()`.
    - `"median"`: `MedianPruner(n_startup_trials=2, n_warmup_steps=epochs
      // 3)`: a point stops when its best mean val accuracy so far is
      below the median of the complete points at the same epoch, judged
      from a third of the training on (weight decay acts on its
      timescale: early accuracy favours weak decay), against two complete
      points at least.
    - `"hyperband"`: `HyperbandPruner(min_resource=max(1, epochs // 10),
      max_resource=epochs, reduction_factor=3)` (Li et al., "Hyperband: A
      Novel Bandit-Based Approach to Hyperparameter Optimization", JMLR
      2018): successive halving over brackets of minimum budgets.
    """
    from _keras_decay_validation import check_choice

    check_choice(name, "pruner", options.PRUNERS)
    pruners = _optuna().pruners
    if name == "median":
        return pruners.MedianPruner(
            n_startup_trials=2, n_warmup_steps=epochs // 3
        )
    if name == "hyperband":
        return pruners.HyperbandPruner(
            min_resource=max(1, epochs // 10),
            max_resource=epochs,
            reduction_factor=3,
        )
    return pruners.NopPruner()


def _redact(url):
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":")[0] + ":***"
    return f"{scheme}{sep}{credentials}{at}{host}"


def _unreachable(error):
    """A connection refused / unknown host: retrying will not help."""
    text = str(error).lower()
    return any(
        phrase in text
        for phrase in (
            "connection refused",
            "could not translate host",
            "name or service not known",
            "timeout expired",
            "password authentication failed",
            "does not exist",
            "unable to open database",
        )
    )
