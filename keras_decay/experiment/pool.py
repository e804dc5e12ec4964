"""The local worker processes that empty the trial queue.

`execute` puts a plan on the queue (`keras_decay.experiment.engine`) and
starts `--workers` processes (`python -m keras_decay.experiment.worker`)
that take its trials until none is waiting; it re-queues the trials of a
worker that died and starts the workers again, at most three rounds, and
fails in one line when every worker dies with trials still waiting. With
`workers=0` the trials are trained in this process instead. A worker's
stderr is forwarded without TensorFlow's start-up lines. Interrupted
(Ctrl-C, SIGTERM), the command stops its workers (SIGTERM, then SIGKILL
after `TERMINATE_SECONDS`).
"""

import os
import re
import subprocess
import sys
import threading
import time

from keras_decay.experiment import worker
from keras_decay.experiment.data import ExperimentError
from keras_decay.experiment.engine import ERROR_ATTEMPTS
from keras_decay.experiment.engine import Engine

__all__ = ["execute", "run_workers"]


# TensorFlow's start-up lines on machines without a GPU (absl C++ logging
# cannot be silenced by TF_CPP_MIN_LOG_LEVEL before it is initialised), and
# the retracing notice of a new model per trial.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+\.cc:\d+\]"
    r"|E\d{4} [\d:. ]+\d+ cuda\S*\.cc:\d+\]"
    r"|WARNING:tensorflow:.*triggered tf.function retracing)"
)


# Seconds a worker has to stop after SIGTERM before it is killed.
TERMINATE_SECONDS = 30


def _forward(stream, muted):
    """Copies a worker's stderr to ours, without TensorFlow's noise, until
    `muted` is set (the workers are being stopped: what they print while
    dying is not the command's to say)."""
    for line in stream:
        if muted.is_set():
            continue
        if line.strip() and not _NOISE.match(line):
            sys.stderr.write(line)
            sys.stderr.flush()


def run_workers(storage, study, logdir, *, workers, quiet, started=None):
    """Starts `workers` local worker processes; returns their exit codes."""
    import keras_decay

    root = os.path.dirname(
        os.path.dirname(os.path.abspath(keras_decay.__file__))
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, env.get("PYTHONPATH")) if p
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if workers > 1:
        # One thread per worker: the workers share the cores.
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            env.setdefault(name, str(max(1, (os.cpu_count() or 1) // workers)))
        env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    command = [
        sys.executable,
        "-m",
        "keras_decay.experiment.worker",
        "--storage",
        storage,
        "--study",
        study,
        "--logdir",
        logdir,
    ] + (["--quiet"] if quiet else [])
    if started is not None:
        command += ["--started", repr(started)]
    processes = [
        subprocess.Popen(
            command, env=env, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        for _ in range(workers)
    ]
    muted = threading.Event()
    forwarders = [
        threading.Thread(target=_forward, args=(p.stderr, muted), daemon=True)
        for p in processes
    ]
    for forwarder in forwarders:
        forwarder.start()
    try:
        codes = [process.wait() for process in processes]
        for forwarder in forwarders:
            forwarder.join(timeout=5)
        return codes
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): stop the workers, then kill any
        # still there after TERMINATE_SECONDS. A trial stopped half-way is
        # failed as interrupted (or, killed, re-queued by the next run).
        muted.set()
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + TERMINATE_SECONDS
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        raise


def execute(storage, study, logdir, settings, plan, *, workers, quiet, say):
    """Runs `plan` on the study with `workers` local processes.

    Re-queues trials of dead workers (also of this command's own workers
    when one is killed) and runs the workers again, at most three rounds.
    With `workers=0` the trials are trained in this process instead.

    Returns:
        The `Engine`, after every local worker has ended.

    Raises:
        ExperimentError: a worker stopped on a full disk, or every local
            worker of the last round ended with an error while trials were
            still waiting.
    """
    started = time.time()
    engine = Engine(storage, study)
    engine.set_plan(settings, plan)
    for note in engine.notes:
        say(note)
    retried = engine.retry_errors()
    if retried:
        say(
            f"retrying {len(retried)} trial(s) that failed with an error "
            f"before (each is tried at most {ERROR_ATTEMPTS} times, once per "
            "run of the command)"
        )
    waiting_state = engine.optuna.trial.TrialState.WAITING
    codes = []
    for _ in range(3):
        reaped = engine.reap()
        if reaped:
            say(f"re-queued trial(s) {reaped}: their worker had died")
        engine.top_up()
        waiting = len(engine.trials((waiting_state,)))
        if not waiting:
            break
        if workers == 0:
            say(f"{waiting} trial(s) to train in this process")
            worker.work(engine, logdir, quiet=quiet, started=started)
            continue
        count = min(workers, waiting)
        say(f"{waiting} trial(s) to train in {count} worker process(es)")
        codes = run_workers(
            storage, study, logdir, workers=count, quiet=quiet, started=started
        )
        if worker.DISK_FULL in codes:
            raise ExperimentError(
                f"the disk of {logdir} is full (a worker could not write); "
                "the journal keeps every complete record: free some space "
                "and run the command again, it resumes"
            )
    engine.reap()
    waiting = len(engine.trials((waiting_state,)))
    if waiting and codes and all(code != 0 for code in codes):
        # Nobody else is training them: saying "running on other workers"
        # and exiting 0 would hide that nothing was trained.
        raise ExperimentError(
            f"every local worker process ended with an error (exit status "
            f"{', '.join(map(str, sorted(set(codes))))}) and {waiting} "
            "trial(s) are still waiting; the workers' own messages are above"
        )
    return engine
