"""A worker process: trains WAITING trials of one study until none is left.

    python -m keras_decay.experiment.worker --storage URL --study NAME \\
        --logdir DIR [--quiet]

Started by `keras-decay compare` and `keras-decay sweep` (`--workers N`
starts N; `--workers 0` calls `work` in the command's own process); the
settings and the plan come from the study. Exit status 0, 1 when a trial
failed with an error (the others still ran), `DISK_FULL` (75) when the
journal or the log folder could not be written for want of space.
"""

import argparse
import os
import signal
import sys
import threading
import time

# The exit status of a worker that stopped on a full disk (EX_TEMPFAIL):
# the command stops too, instead of starting workers that cannot write.
DISK_FULL = 75


def _elapsed(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds} s"


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


# Set by SIGTERM. The KeyboardInterrupt the signal raises can be swallowed
# (raised inside a destructor, it is only printed): then the worker takes
# no further trial.
_TERMINATED = threading.Event()


def request_stop(stop=True):
    """No further trial is taken by `work` in this process (`stop=False`:
    the command starts again)."""
    if stop:
        _TERMINATED.set()
    else:
        _TERMINATED.clear()


def _interrupt(signum, frame):
    request_stop()
    raise KeyboardInterrupt


def say_line(line):
    """Prints one line; an output error never fails a trial or a command.

    A closed pipe (`keras-decay sweep ... | head -3`) or a full disk under
    a redirected stdout ends the printing: stdout goes to `os.devnull`
    from then on (also for the flush at exit), and training goes on.
    """
    try:
        print(line, flush=True)
    except (BrokenPipeError, OSError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras_decay.experiment.worker")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--started", type=float, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from keras_decay.experiment.data import ExperimentError
    from keras_decay.experiment.engine import Engine
    from keras_decay.experiment.engine import disk_full
    from keras_decay.experiment.engine import write_error

    try:
        engine = Engine(args.storage, args.study)
        return work(engine, args.logdir, quiet=args.quiet, started=args.started)
    except OSError as error:  # the journal or the log folder: a full disk
        print(
            f"keras-decay worker: error: {write_error(error)}", file=sys.stderr
        )
        return DISK_FULL if disk_full(error) else 1
    except ExperimentError as error:
        print(f"keras-decay worker: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def work(engine, logdir, *, quiet=False, started=None):
    """Trains the study's WAITING trials in this process until none is left.

    Each trial ends with one line: its label (λ, dropout, seed), final and
    best validation accuracy, epochs trained, and the progress of the plan
    (complete or pruned / planned trials, on every worker) with the time
    since `started` (the command's start, `time.time()`; default: now). A
    lockstep trial (a sweep with `--pruner`) trains its seeds together and
    says whether it was pruned, the mean and each seed's val accuracy.

    Returns 0, or 1 when a trial failed with an error (the others still ran).
    """
    from keras_decay.experiment import runner
    from keras_decay.experiment.data import ExperimentError
    from keras_decay.experiment.engine import disk_full

    started = time.time() if started is None else started
    settings, status = engine.settings, 0
    engine.use_pruner(settings.get("pruner", "none"), settings["epochs"])
    backend = settings.get("backend")
    if backend is not None:
        import keras

        if keras.backend.backend() != backend:
            raise ExperimentError(
                f"the study {engine.name!r} trains on {backend}; this "
                f"process runs KERAS_BACKEND={keras.backend.backend()} "
                "(numbers from two backends would be averaged together)"
            )
    while not _TERMINATED.is_set():
        engine.reap()
        engine.top_up()
        taken = engine.take()
        if taken is None:
            return status
        entry = taken.entry

        def say(line, label=entry.label):
            if not quiet:
                say_line(f"[{label}] {line}")

        stop = engine.heartbeat(taken)
        pruned = False
        try:
            if entry.seeds:
                result, pruned = runner.train_lockstep(
                    settings,
                    entry,
                    logdir,
                    engine.reporter(taken),
                    say=say,
                    progress=True,
                )
            else:
                result = runner.train_trial(
                    settings,
                    entry,
                    os.path.join(logdir, entry.dir),
                    say=say,
                    progress=True,
                )
        except KeyboardInterrupt:
            engine.fail(taken, "interrupted")
            raise
        except Exception as error:  # noqa: BLE001 (report, go on)
            if disk_full(error):
                # A full disk is not the trial's fault: not stored as an
                # error (a rerun trains it again; a failed write leaves it
                # RUNNING for the next run to re-queue).
                try:
                    engine.fail(taken, "disk full")
                except OSError:
                    pass
                raise
            engine.fail(taken, "error", error)
            print(
                f"keras-decay: trial {entry.label} failed: "
                f"{type(error).__name__}: {_first_line(error)}",
                file=sys.stderr,
                flush=True,
            )
            status = 1
            continue
        finally:
            if stop is not None:
                stop.set()
        engine.finish(taken, result, pruned)
        done, planned = engine.progress()
        finished = (
            f"{done}/{planned} trials complete, "
            f"{_elapsed(time.time() - started)} elapsed"
        )
        if entry.seeds:
            say(_lockstep_line(result, pruned, settings["epochs"], finished))
            continue
        say(
            f"done in {result['seconds']:.1f} s: val acc "
            f"{result['val_accuracy']:.3f} (best "
            f"{result['best_val_accuracy']:.3f} at epoch "
            f"{result['best_epoch']}), {result['epochs_trained']} epochs, "
            f"memorized {result['memorized']:.3f} — {finished}"
        )
    return 130  # SIGTERM: the trial in hand ended, no other is taken.


def _lockstep_line(results, pruned, epochs, finished):
    """The line ending a lockstep trial: pruned or done, the mean and each
    seed's val accuracy, epochs trained."""
    trained = results[0]["epochs_trained"]
    verdict = f"pruned at epoch {trained}/{epochs}" if pruned else "done"
    seconds = max(r["seconds"] for r in results)  # side by side
    accuracies = [r["val_accuracy"] for r in results]
    seeds = ", ".join(
        f"seed {r['seed']} {r['val_accuracy']:.3f}" for r in results
    )
    return (
        f"{verdict} in {seconds:.1f} s: mean val acc "
        f"{sum(accuracies) / len(accuracies):.3f} ({seeds}), {trained} "
        f"epoch(s) x {len(results)} seeds — {finished}"
    )


if __name__ == "__main__":
    sys.exit(main())
