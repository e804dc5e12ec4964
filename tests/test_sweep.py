"""Tests for `keras-decay sweep` and its Optuna engine.

Real parts: worker processes on a journal file, a worker killed mid-trial,
and a real PostgreSQL server (initdb + pg_ctl in a temporary folder) shared
by two `keras-decay sweep` processes standing for two machines. Each trial
is tiny (2 epochs on 10 % of digits).
"""

import dataclasses
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import optuna
import pytest

import keras_decay_cli as cli
from keras_decay.experiment import engine as engine_lib
from keras_decay.experiment import pool
from keras_decay.experiment import report
from keras_decay.experiment import sweep
from keras_decay.experiment.data import load_data
from keras_decay.experiment.trial import Trial
from keras_decay_cli import options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The engine does not depend on the backend (its workers inherit
# KERAS_BACKEND, and tests/test_compare.py trains on every backend): this
# module runs once, in the TensorFlow pass.
pytestmark = pytest.mark.backend_independent
TINY = ["--epochs", "2", "--train-fraction", "0.1", "--quiet"]
GRID = ["--weight-decay", "0,1e-2", "--seeds", "1,2"]  # 4 trials


def _sweep(logdir, *extra, timeout=600, wait=True, env=None):
    command = [sys.executable, "-m", "keras_decay", "sweep", *TINY, *extra]
    command += ["--logdir", str(logdir)]
    if not wait:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _sweep_here(logdir, capsys, *extra):
    """The same command in this process: `(status, stdout, stderr)`.

    Not `--quiet`: the tests read what the command says it does.
    """
    tiny = [arg for arg in TINY if arg != "--quiet"]
    status = cli.main(["sweep", *tiny, *extra, "--logdir", str(logdir)])
    out, err = capsys.readouterr()
    return status, out, err


def _study(storage, name="keras-decay-sweep"):
    if storage.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(
            JournalFileBackend(storage[len("journal://") :])
        )
    return optuna.load_study(study_name=name, storage=storage)


def _journal(logdir):
    return "journal://" + os.path.join(str(logdir), engine_lib.JOURNAL_NAME)


def _assert_each_planned_trial_complete_once(study, expected_keys):
    state = optuna.trial.TrialState
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == state.RUNNING]
    assert not [t.number for t in trials if t.state == state.WAITING]
    complete = [
        t.user_attrs["key"] for t in trials if t.state == state.COMPLETE
    ]
    assert sorted(complete) == sorted(expected_keys)
    return trials


def _planned_keys(**values):
    return [t.key for t in sweep.plan(options.settings("sweep", **values))]


# -- the plan ---------------------------------------------------------------


def test_grid_plan_is_every_point_on_every_seed():
    config = options.settings(
        "sweep", weight_decay="0,1e-3", dropout="0,0.5", seeds="1,2"
    )
    trials = sweep.plan(config)
    got = sorted(
        (t.weight_decay or 0.0, t.dropout or 0.0, t.seed) for t in trials
    )
    expected = sorted(
        (w, d, s) for w in (0.0, 1e-3) for d in (0.0, 0.5) for s in (1, 2)
    )
    assert got == expected
    assert len({t.key for t in trials}) == 8
    # Zero means "no such layer / regularizer".
    assert all(
        (t.weight_decay is None) == (t.dir.startswith("trials/wd_0-"))
        for t in trials
    )


def test_auto_grid_is_zero_and_the_timescale_range_of_the_run():
    config = options.settings("sweep", weight_decay="auto", seeds="1,2")
    assert str(config.weight_decay) == "auto"
    resolved, line = sweep.auto_grid(config)
    # digits: 1,797 images, 70 % for training (stratified), batches of 64.
    train = len(load_data("digits", 1.0, 1, label_noise=0.3).x_train)
    steps = train // 64 * 30
    tau = np.logspace(np.log10(10 * steps), np.log10(steps / 10), 5)
    expected = (1 - 0.9) / (0.1 * tau)  # coupled L2, SGD momentum 0.9
    grid = resolved.weight_decay.grid
    assert grid[0] == 0.0
    np.testing.assert_allclose(grid[1:], expected, rtol=5e-3)  # 3 digits
    # The README's grid sweep found its best λ, 1e-2, inside this range.
    assert grid[1] < 1e-2 < grid[-1]
    assert f"{steps} steps trained" in line and "coupled L2" in line
    trials = sweep.plan(config)
    assert sorted({t.weight_decay or 0.0 for t in trials}) == list(grid)
    assert len(trials) == 2 * len(grid)


def test_auto_is_a_weight_decay_word_only():
    with pytest.raises(ValueError, match=r"or auto .*Received: weight_decay"):
        options.settings("sweep", weight_decay="autos")
    with pytest.raises(ValueError, match=r"Received: dropout='auto'"):
        options.settings("sweep", dropout="auto")


def test_log_uniform_range_draws_one_value_per_log_slice_reproducibly():
    config = options.settings(
        "sweep", weight_decay="1e-5:1e-1", trials=8, seeds="1"
    )
    rates = [t.weight_decay for t in sweep.plan(config)]
    again = [t.weight_decay for t in sweep.plan(config)]
    assert rates == again and len(set(rates)) == 8
    # One value in each of the 8 equal slices of [log 1e-5, log 1e-1]
    # (3 significant digits of rounding may cross a slice edge by 0.1 %).
    edges = np.linspace(np.log(1e-5), np.log(1e-1), 9)
    slices = np.searchsorted(edges, np.log(rates)) - 1
    assert sorted(slices) == list(range(8))
    assert all(1e-5 * 0.999 <= r <= 1e-1 * 1.001 for r in rates)


def test_two_ranges_are_drawn_together_a_range_and_grid_crossed():
    both = options.settings(
        "sweep", weight_decay="1e-4:1e-2", dropout="0.1:0.5", trials=4
    )
    trials = sweep.plan(both)
    assert len(trials) == 4 * 3  # 4 pairs x 3 seeds
    dropouts = sorted({t.dropout for t in trials})
    assert len(dropouts) == 4 and 0.1 <= dropouts[0] and dropouts[-1] <= 0.5
    crossed = options.settings(
        "sweep", weight_decay="1e-4:1e-2", dropout="0,0.5", trials=3, seeds=1
    )
    assert len(sweep.plan(crossed)) == 3 * 2


# -- bad input: one line, before training ------------------------------------


def test_unreachable_database_is_one_line_before_training(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens
    status, _, err = _sweep_here(
        tmp_path,
        capsys,
        "--storage",
        f"postgresql://u:secret@127.0.0.1:{port}/db",
    )
    assert status == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith("keras-decay sweep: error: cannot open")
    assert "secret" not in err and "Traceback" not in lines[-1]
    assert not os.path.exists(tmp_path / "trials")


def test_a_study_made_with_other_settings_is_refused(tmp_path):
    storage = _journal(tmp_path)
    os.makedirs(tmp_path, exist_ok=True)
    engine = engine_lib.Engine(storage, "s")
    engine.set_plan({"epochs": 2}, [])
    with pytest.raises(
        engine_lib.ExperimentError, match="epochs=2 \\(here 3\\)"
    ):
        engine_lib.Engine(storage, "s").set_plan({"epochs": 3}, [])


def test_a_trial_is_one_immutable_record_stored_as_before():
    trial = Trial("l2", 5e-3, None, 2, "l2 seed 2", "l2/seed_2")
    # The key names the training in studies written by earlier versions.
    assert trial.key == "run=l2 weight_decay=0.005 dropout=None seed=2"
    stored = json.loads(json.dumps(trial.to_dict()))
    assert stored == {
        "run": "l2",
        "weight_decay": 5e-3,
        "dropout": None,
        "seed": 2,
        "label": "l2 seed 2",
        "dir": "l2/seed_2",
        "key": trial.key,
    }
    assert Trial.from_dict(stored) == trial
    assert trial.params == {
        "run": "l2",
        "weight_decay": 5e-3,
        "dropout": 0.0,
        "seed": 2,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        trial.seed = 3


def _entry(rate, seed=1):
    return Trial("sweep", rate, None, seed, f"wd {rate}", f"wd_{rate}")


def test_a_trial_that_failed_with_an_error_is_retried_by_reruns_only(tmp_path):
    storage = _journal(tmp_path)
    engine = engine_lib.Engine(storage, "s")
    engine.set_plan({"epochs": 2}, [_entry(1e-3)])
    for attempt in range(1, engine_lib.ERROR_ATTEMPTS + 1):
        if attempt == 1:
            assert engine.top_up() == 1
        else:
            # A worker's top-up does not loop on it; a rerun retries it.
            assert engine.top_up() == 0 and engine.take() is None
            assert engine.retry_errors() == [_entry(1e-3).key]
        taken = engine.take()
        assert taken.entry == _entry(1e-3)
        engine.fail(taken, "error", RuntimeError(f"boom {attempt}"))
    assert engine.retry_errors() == []  # tried ERROR_ATTEMPTS times
    _, missing, errors = engine.results()
    assert missing == [_entry(1e-3).key]
    assert errors == [(_entry(1e-3).key, "boom 3")]


def test_a_closed_output_pipe_fails_no_trial(tmp_path):
    """`keras-decay sweep ... | head -3`: the command and its worker lose
    their stdout; every trial still completes."""
    argv = ["--weight-decay", "1e-3,1e-2", "--seeds", "1", "--workers", "1"]
    command = [sys.executable, "-m", "keras_decay", "sweep", "--epochs", "2"]
    command += ["--train-fraction", "0.1", *argv, "--logdir", str(tmp_path)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(3):  # `head -3`
        process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "BrokenPipeError" not in err
    keys = _planned_keys(weight_decay="1e-3,1e-2", seeds="1")
    _assert_each_planned_trial_complete_once(_study(_journal(tmp_path)), keys)


def test_plan_grows_and_duplicates_are_claimed_once(tmp_path):
    storage = _journal(tmp_path)
    first = engine_lib.Engine(storage, "s")
    first.set_plan({"epochs": 2}, [_entry(1e-3)])
    assert first.top_up() == 1 and first.top_up() == 0
    # A second "machine" adds a grid point, and races: it enqueues the
    # first point again before seeing the first machine's copy.
    second = engine_lib.Engine(storage, "s")
    second.set_plan({"epochs": 2}, [_entry(1e-3), _entry(1e-2)])
    assert second.plan == [_entry(1e-3), _entry(1e-2)]
    assert [t.key for t in second.plan] == [
        _entry(1e-3).key,
        _entry(1e-2).key,
    ]
    second.study.enqueue_trial(
        {"run": "sweep", "weight_decay": 1e-3, "dropout": 0.0, "seed": 1},
        user_attrs={"key": _entry(1e-3).key},
    )
    assert second.top_up() == 1  # only the new point
    taken = [first.take(), second.take(), first.take()]
    # Trial 1 duplicates trial 0: marked and skipped; trial 2 is the new one.
    assert [t.trial.number for t in taken[:2]] == [0, 2]
    assert taken[2] is None
    state = optuna.trial.TrialState
    trials = first.trials()
    assert trials[1].state == state.FAIL
    assert trials[1].user_attrs["status"] == "duplicate"
    assert trials[1].user_attrs["duplicate_of"] == 0
    assert taken[0].trial.params["weight_decay"] == 1e-3
    first.finish(taken[0], {"val_accuracy": 0.5})
    results, missing, errors = first.results()
    assert results == [{"val_accuracy": 0.5}] and not errors
    assert missing == [_entry(1e-2).key]
    # Trial 2's worker is this process: alive, so it is not reaped.
    assert first.reap() == []


# -- journal storage, local workers -------------------------------------------


def test_journal_two_workers_complete_a_grid_once_and_rerun_trains_nothing(
    tmp_path, capsys
):
    # The command in this process, its two workers in processes of their own.
    status, _, err = _sweep_here(tmp_path, capsys, *GRID, "--workers", "2")
    assert status == 0, err[-3000:]
    keys = _planned_keys(weight_decay="0,1e-2", seeds="1,2")
    study = _study(_journal(tmp_path))
    trials = _assert_each_planned_trial_complete_once(study, keys)
    assert len(trials) == 4
    written = json.loads((tmp_path / "results.json").read_text())
    rows = {r["weight_decay"]: r for r in written["aggregate"]}
    assert sorted(rows) == [0.0, 1e-2]
    for rate, row in rows.items():
        values = [
            t["val_accuracy"]
            for t in written["trials"]
            if t["weight_decay"] == rate
        ]
        np.testing.assert_allclose(row["val_accuracy"]["mean"], np.mean(values))
        np.testing.assert_allclose(
            row["val_accuracy"]["sd"], np.std(values, ddof=1)
        )
    best = max(written["aggregate"], key=lambda r: r["val_accuracy"]["mean"])
    assert written["best"]["weight_decay"] == best["weight_decay"]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # Rerun: every trial is complete, no worker starts, nothing is added.
    status, out, err = _sweep_here(tmp_path, capsys, *GRID, "--workers", "2")
    assert status == 0, err[-2000:]
    assert "worker process" not in out
    assert len(_study(_journal(tmp_path)).get_trials()) == 4
    rerun = json.loads((tmp_path / "results.json").read_text())
    assert rerun["aggregate"] == written["aggregate"]


def test_a_grown_grid_trains_only_the_new_points(tmp_path, capsys):
    # In this process (`--workers 0`): the study, not the workers, is tested.
    first = ["--weight-decay", "0", "--seeds", "1", "--workers", "0"]
    status, _, err = _sweep_here(tmp_path, capsys, *first)
    assert status == 0, err[-2000:]
    grown = ["--weight-decay", "0,1e-2", "--seeds", "1,2", "--workers", "0"]
    status, out, err = _sweep_here(tmp_path, capsys, *grown)
    assert status == 0, err[-2000:]
    assert "3 trial(s) to train in this process" in out
    keys = _planned_keys(weight_decay="0,1e-2", seeds="1,2")
    trials = _assert_each_planned_trial_complete_once(
        _study(_journal(tmp_path)), keys
    )
    assert len(trials) == 4
    written = json.loads((tmp_path / "results.json").read_text())
    assert len(written["trials"]) == 4


def test_a_rerun_under_another_backend_is_refused_in_one_line(tmp_path, capsys):
    argv = ["--weight-decay", "0", "--seeds", "1", "--workers", "0"]
    status, _, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-2000:]
    written = json.loads((tmp_path / "results.json").read_text())
    environment = written["environment"]
    assert environment["backend"] == keras.backend.backend()
    assert environment["versions"]["keras"] == keras.__version__
    study = _study(_journal(tmp_path))
    assert study.user_attrs["settings"]["backend"] == keras.backend.backend()
    # The same command under PyTorch: a process of its own (the backend is
    # chosen at import).
    other = "torch" if keras.backend.backend() != "torch" else "jax"
    completed = _sweep(
        tmp_path, *argv, env=dict(os.environ, KERAS_BACKEND=other)
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    last = completed.stderr.strip().splitlines()[-1]
    assert "made with other settings" in last
    assert f"backend={keras.backend.backend()!r} (here {other!r})" in last
    assert len(_study(_journal(tmp_path)).get_trials()) == 1  # nothing new


def test_a_torn_journal_tail_is_cut_and_the_rerun_resumes(tmp_path, capsys):
    # The first sweep in a process of its own: the process that wrote the
    # torn record is gone, as after a kill.
    argv = ["--weight-decay", "0,1e-2", "--seeds", "1", "--workers", "0"]
    completed = _sweep(tmp_path, *argv)
    assert completed.returncode == 0, completed.stderr[-2000:]
    journal = tmp_path / engine_lib.JOURNAL_NAME
    whole = journal.read_bytes()
    records = whole.count(b"\n")
    # A write killed half-way: the last record loses its second half.
    last = whole[:-1].rsplit(b"\n", 1)[1]
    torn = whole[: len(whole) - len(last) // 2 - 1]
    journal.write_bytes(torn)
    status, out, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-2000:]
    assert f"the journal {journal} ended in a torn record" in out
    assert f"its {records - 1} complete records are kept" in out
    tail = torn.rsplit(b"\n", 1)[1]
    [saved] = tmp_path.glob(engine_lib.JOURNAL_NAME + ".torn-*")
    assert saved.read_bytes() == tail
    # Nothing was written after a torn line: every record is whole JSON,
    # the complete ones first, and each planned trial is complete once.
    now = journal.read_bytes()
    assert now.startswith(torn[: len(torn) - len(tail)])
    assert all(json.loads(line) for line in now.splitlines())
    keys = _planned_keys(weight_decay="0,1e-2", seeds="1")
    _assert_each_planned_trial_complete_once(_study(_journal(tmp_path)), keys)


def test_compare_overwrite_keeps_a_sweep_in_the_same_journal(tmp_path, capsys):
    argv = ["--weight-decay", "0", "--seeds", "1", "--workers", "0"]
    status, _, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-2000:]
    compare = ["compare", "--epochs", "1", "--train-fraction", "0.1"]
    compare += ["--runs", "plain", "--seeds", "1", "--workers", "0"]
    compare += ["--logdir", str(tmp_path), "--overwrite"]
    assert cli.main(compare) == 0
    out = capsys.readouterr().out
    assert "--overwrite: kept the other studies" in out
    assert "'keras-decay-sweep'" in out
    sweep_study = _study(_journal(tmp_path))
    assert [t.state for t in sweep_study.get_trials()] == [
        optuna.trial.TrialState.COMPLETE
    ]
    # A second overwrite replaces the compare study only.
    assert cli.main(compare) == 0
    compare_study = _study(_journal(tmp_path), name="compare")
    assert len(compare_study.get_trials()) == 1
    assert len(_study(_journal(tmp_path)).get_trials()) == 1


def test_a_damaged_journal_record_before_the_end_is_one_line(tmp_path, capsys):
    journal = tmp_path / engine_lib.JOURNAL_NAME
    journal.write_bytes(b'{"op_code": 0}\n{"op_co\n{"op_code": 1}\n')
    status, _, err = _sweep_here(tmp_path, capsys, "--workers", "0")
    assert status == 1
    [line] = err.strip().splitlines()
    assert f"the journal {journal} has a damaged record on line 2 of 3" in line
    assert journal.read_bytes() == b'{"op_code": 0}\n{"op_co\n{"op_code": 1}\n'


def test_every_worker_dying_is_a_one_line_error_not_success(
    tmp_path, monkeypatch, capsys
):
    # Each worker process ends at start-up with exit status 3 (this process,
    # already started, is not affected).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    status, out, err = _sweep_here(
        tmp_path / "out",
        capsys,
        *("--weight-decay", "0", "--seeds", "1", "--workers", "1"),
    )
    assert status == 1, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "every local worker process ended with an error" in last
    assert "(exit status 3)" in last
    assert "1 trial(s) are still waiting" in last
    assert "running on other workers" not in out + err
    assert "Traceback" not in err


def test_each_trial_ends_with_one_line_and_the_study_reads_in_optuna(
    tmp_path, capsys
):
    logdir = tmp_path / "out"
    status, out, err = _sweep_here(logdir, capsys, *GRID, "--workers", "0")
    assert status == 0, err[-3000:]
    lines = [line for line in out.splitlines() if "] done in " in line]
    assert len(lines) == 4
    written = json.loads((logdir / "results.json").read_text())
    for trial in written["trials"]:
        label = f"[wd {trial['weight_decay']:g} dropout 0 seed {trial['seed']}]"
        [line] = [line for line in lines if line.startswith(label)]
        assert (
            f"val acc {trial['val_accuracy']:.3f} (best "
            f"{trial['best_val_accuracy']:.3f} at epoch {trial['best_epoch']}"
            "), 2 epochs" in line
        )
    progress = [
        re.search(r"— (\d)/4 trials complete, \d+ s elapsed", line)
        for line in lines
    ]
    assert [int(m.group(1)) for m in progress] == [1, 2, 3, 4]
    # Optuna's own tools read the study (what optuna-dashboard opens).
    study = _study(_journal(logdir))
    got = sorted(
        (t.params["weight_decay"], t.params["seed"], t.state.name)
        for t in study.get_trials()
    )
    assert got == [(w, s, "COMPLETE") for w in (0.0, 1e-2) for s in (1, 2)]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only), nearly filled: `(folder, filler)`."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        filler = folder / "filler"
        filler.write_bytes(b"\0" * (1024 - 32) * 1024)  # 32 KiB left
        yield folder, filler
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_is_one_line_the_journal_stays_whole_and_rerun_resumes(
    small_disk, capsys
):
    folder, filler = small_disk
    logdir = folder / "out"
    argv = [*GRID, "--workers", "1"]
    done = _sweep(logdir, *argv)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-decay sweep: error:"), last
    assert "free some space and run the command again, it resumes" in last
    journal = (logdir / engine_lib.JOURNAL_NAME).read_bytes()
    assert journal.endswith(b"\n")
    for line in journal.splitlines():
        json.loads(line)  # every record whole
    filler.unlink()
    # The rerun in this process (`--workers 0`): the failed command and its
    # worker are gone, which is what the resume needs.
    status, out, err = _sweep_here(logdir, capsys, *GRID, "--workers", "0")
    assert status == 0, err[-3000:]
    assert "torn" not in out + err
    keys = _planned_keys(weight_decay="0,1e-2", seeds="1,2")
    _assert_each_planned_trial_complete_once(_study(_journal(logdir)), keys)


def _running_trial(process, logdir):
    """The number of a trial a worker of `process` is training."""
    journal = logdir / engine_lib.JOURNAL_NAME
    running = optuna.trial.TrialState.RUNNING
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if process.poll() is not None:
            break
        if journal.exists():
            for trial in _study(_journal(logdir)).get_trials():
                if trial.state == running and "worker" in trial.user_attrs:
                    return trial.number
    raise AssertionError(process.communicate()[1][-2000:])


def test_worker_killed_mid_trial_then_rerun_completes_without_duplicate(
    tmp_path, capsys
):
    argv = ["--weight-decay", "1e-3,1e-2", "--seeds", "1", "--workers", "1"]
    process = _sweep(tmp_path, *argv, wait=False)
    victim = _running_trial(process, tmp_path)
    running = optuna.trial.TrialState.RUNNING
    # The whole command dies at once, as when a machine is lost.
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    study = _study(_journal(tmp_path))
    assert study.trials[victim].state == running  # left behind
    # The worker was the command's child: wait until the system has reaped
    # it too (a rerun comes later than that when a machine is lost).
    worker = study.trials[victim].user_attrs["worker"]
    deadline = time.monotonic() + 60
    while engine_lib._alive(worker["pid"], worker["start"]):
        assert time.monotonic() < deadline, "the killed worker is still there"
        time.sleep(0.1)
    # The rerun, in this process (`--workers 0`), re-queues the dead trial.
    status, _, err = _sweep_here(tmp_path, capsys, *argv[:-1], "0")
    assert status == 0, err[-3000:]
    keys = _planned_keys(weight_decay="1e-3,1e-2", seeds="1")
    trials = _assert_each_planned_trial_complete_once(
        _study(_journal(tmp_path)), keys
    )
    dead = trials[victim]
    assert dead.state == optuna.trial.TrialState.FAIL
    assert dead.user_attrs["status"] == "worker died"
    written = json.loads((tmp_path / "results.json").read_text())
    assert len(written["trials"]) == 2


def test_sigterm_stops_the_workers_in_one_line_and_a_rerun_resumes(
    tmp_path, capsys
):
    # SIGTERM to the command alone (a job scheduler, `kill`): it stops its
    # workers instead of leaving them training, and says so in one line.
    argv = ["--weight-decay", "1e-3,1e-2", "--seeds", "1", "--workers", "1"]
    process = _sweep(tmp_path, *argv, wait=False)
    victim = _running_trial(process, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    said = [line for line in err.splitlines() if not pool._NOISE.match(line)]
    assert said[-1].startswith("keras-decay sweep: terminated (SIGTERM)")
    assert "Traceback" not in err, "\n".join(said)[-3000:]
    trial = _study(_journal(tmp_path)).trials[victim]
    worker = trial.user_attrs["worker"]
    assert not engine_lib._alive(worker["pid"], worker["start"])
    # Failed as interrupted; or done, when the signal landed in a destructor
    # (Python then only prints the KeyboardInterrupt) and the worker ended
    # the trial in hand without taking another.
    state = optuna.trial.TrialState
    assert (trial.state, trial.user_attrs.get("status")) in [
        (state.FAIL, "interrupted"),
        (state.COMPLETE, "done"),
    ], (trial.state, trial.user_attrs)
    status, _, err = _sweep_here(tmp_path, capsys, *argv[:-1], "0")
    assert status == 0, err[-3000:]
    keys = _planned_keys(weight_decay="1e-3,1e-2", seeds="1")
    _assert_each_planned_trial_complete_once(_study(_journal(tmp_path)), keys)


# -- PostgreSQL: two "machines" on one study --------------------------------


def _postgres_bin():
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(candidates[-1]) if candidates else None


def _as_user():
    """Command prefix to run PostgreSQL's binaries (they refuse root)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user
        return [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--",
        ], user
    pytest.fail("running as root without a postgres or nobody user")


@pytest.fixture
def postgres_url(postgres_server):
    return postgres_server.url


@pytest.fixture
def postgres_server():
    """A PostgreSQL server in a temporary folder: `.url`, `.restart()`."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it)")
    prefix, user = _as_user()
    folder = tempfile.mkdtemp(prefix="keras-decay-pg-")
    data = os.path.join(folder, "data")
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*args):
        subprocess.run(
            prefix + [os.path.join(bin_dir, args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=folder,
        )

    run("initdb", "-D", data, "-U", "sweep", "--auth=trust", "-E", "UTF8")
    start = (
        "pg_ctl",
        "-D",
        data,
        "-l",
        os.path.join(folder, "log"),
        "-o",
        f"-h 127.0.0.1 -p {port} -k {folder}",
        "-w",
        "start",
    )
    run(*start)

    def restart(down_seconds):
        run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        time.sleep(down_seconds)
        run(*start)

    try:
        yield types.SimpleNamespace(
            url=f"postgresql://sweep@127.0.0.1:{port}/postgres",
            restart=restart,
        )
    finally:
        run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_restart_mid_sweep_loses_nothing(postgres_server, tmp_path):
    """`pg_ctl stop -m fast; sleep 3; pg_ctl start` while a trial trains:
    the command reconnects and completes every trial once."""
    url = postgres_server.url
    argv = ["--weight-decay", "0,1e-2", "--seeds", "1", "--epochs", "40"]
    argv += ["--storage", url, "--study", "restart", "--workers", "1"]
    command = _sweep(tmp_path / "out", *argv, wait=False)
    try:
        deadline = time.monotonic() + 300
        running = []
        while not running and time.monotonic() < deadline:
            assert command.poll() is None, command.communicate()[1][-3000:]
            time.sleep(0.5)
            try:
                study = optuna.load_study(study_name="restart", storage=url)
            except KeyError:  # not created yet
                continue
            running = study.get_trials(
                states=(optuna.trial.TrialState.RUNNING,)
            )
        assert running, "no trial started"
        postgres_server.restart(3)
        _, err = command.communicate(timeout=600)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
    assert command.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    study = optuna.load_study(study_name="restart", storage=url)
    keys = _planned_keys(weight_decay="0,1e-2", seeds="1", epochs=40)
    _assert_each_planned_trial_complete_once(study, keys)


def test_postgresql_two_machines_share_one_study(postgres_url, tmp_path):
    argv = [*GRID, "--storage", postgres_url, "--study", "two-machines"]
    machines = [
        # Each "machine" trains in its own process (`--workers 0`).
        _sweep(tmp_path / f"machine{i}", *argv, "--workers", "0", wait=False)
        for i in (1, 2)
    ]
    outputs = [m.communicate(timeout=600) for m in machines]
    for machine, (_, err) in zip(machines, outputs):
        assert machine.returncode == 0, err[-3000:]
    keys = _planned_keys(weight_decay="0,1e-2", seeds="1,2")
    study = optuna.load_study(study_name="two-machines", storage=postgres_url)
    trials = _assert_each_planned_trial_complete_once(study, keys)
    for trial in trials:
        if trial.state == optuna.trial.TrialState.FAIL:
            assert trial.user_attrs["status"] == "duplicate"


# -- pruning: one lockstep trial per point, Optuna's pruners -----------------

# 3 epochs of 9 steps: λ = 3 stays at chance (0.1) while 0 and 1e-2 learn.
PRUNED = ["--epochs", "3", "--train-fraction", "0.5", "--pruner", "median"]
PRUNED_GRID = ["--weight-decay", "0,1e-2,3", "--seeds", "1,2"]


def _point_key(rate, seeds="1,2"):
    return f"run=sweep weight_decay={rate!r} dropout=None seeds={seeds}"


def _check_pruned_study(study, written, epochs=3):
    """The hopeless point is PRUNED as a whole at its first judged epoch
    (median rule, recomputed here with NumPy), the others COMPLETE; the
    values Optuna saw are the means over the seeds' histories."""
    state = optuna.trial.TrialState
    trials = {t.user_attrs["key"]: t for t in study.get_trials()}
    assert sorted(trials) == sorted(_point_key(r) for r in (None, 1e-2, 3.0))
    assert trials[_point_key(3.0)].state == state.PRUNED
    for rate in (None, 1e-2):
        assert trials[_point_key(rate)].state == state.COMPLETE
    histories = {}
    for trial in written["trials"]:
        histories.setdefault(trial["weight_decay"], []).append(
            trial["history"]["val_accuracy"]
        )
    for rate, trial in ((0.0, None), (1e-2, 1e-2), (3.0, 3.0)):
        mean = np.mean(histories[rate], axis=0)  # over the 2 seeds
        reported = trials[_point_key(trial)].intermediate_values
        assert sorted(reported) == list(range(1, len(mean) + 1))
        np.testing.assert_allclose(
            [reported[e] for e in sorted(reported)], mean, rtol=1e-12
        )
    # MedianPruner(n_startup_trials=2, n_warmup_steps=epochs // 3): the
    # point's best mean so far is below the median of the complete points
    # at that epoch (epoch 1 here).
    stopped = trials[_point_key(3.0)]
    step = stopped.last_step
    assert step == 1 == epochs // 3
    others = [np.mean(histories[r], axis=0)[step - 1] for r in (0.0, 1e-2)]
    assert max(stopped.intermediate_values.values()) < np.median(others)
    # Both seeds stopped there: a point is dropped as a whole.
    seeds = [t for t in written["trials"] if t["weight_decay"] == 3.0]
    assert [(t["seed"], t["pruned"], t["epochs_trained"]) for t in seeds] == [
        (1, True, 1),
        (2, True, 1),
    ]
    rows = {r["weight_decay"]: r for r in written["aggregate"]}
    assert rows[3.0]["pruned"] and rows[3.0]["epochs_trained"] == 1
    assert not rows[0.0]["pruned"] and rows[0.0]["epochs_trained"] == epochs
    assert written["pruned"] == [
        {"weight_decay": 3.0, "dropout": 0.0, "epochs_trained": 1}
    ]
    assert written["epochs_trained"] == 2 * (epochs + epochs + 1)
    # The best among the complete points only.
    finals = {r: np.mean([h[-1] for h in histories[r]]) for r in (0.0, 1e-2)}
    assert written["best"]["weight_decay"] == max(finals, key=finals.get)
    return trials


def test_pruned_sweep_on_the_journal_stops_a_point_on_all_its_seeds(
    tmp_path, capsys
):
    argv = [*PRUNED, *PRUNED_GRID, "--workers", "0"]
    status, out, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-3000:]
    written = json.loads((tmp_path / "results.json").read_text())
    _check_pruned_study(_study(_journal(tmp_path)), written)
    assert "| 3 | 0 | 2 |" in out and "| pruned at 1/3 |" in out
    assert re.search(r"\[wd 3 dropout 0 seeds 1,2\] pruned at epoch 1/3", out)
    assert "2 complete point(s); 1 pruned by --pruner median" in out
    assert written["settings"]["pruner"] == "median"
    # Each seed's folder, as in a sweep without pruning.
    for seed in (1, 2):
        assert (tmp_path / "trials" / f"wd_3-dropout_0-seed_{seed}").is_dir()
    # A rerun trains nothing: the pruned point is a result.
    status, out, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-2000:]
    assert "to train" not in out
    assert len(_study(_journal(tmp_path)).get_trials()) == 3
    assert (
        json.loads((tmp_path / "results.json").read_text())["pruned"]
        == (written["pruned"])
    )


def test_lockstep_trains_each_seed_as_its_own_trial_would(tmp_path, capsys):
    """The same batches, weights and masks: a lockstep point's seeds have
    the histories of the per-seed trials of `--pruner none`."""
    point = ["--weight-decay", "1e-2", "--seeds", "1,2", "--workers", "0"]
    point += ["--epochs", "3", "--train-fraction", "0.5", "--dropout", "0.5"]
    runs = {}
    for pruner in ("none", "hyperband"):
        logdir = tmp_path / pruner
        status, _, err = _sweep_here(logdir, capsys, *point, "--pruner", pruner)
        assert status == 0, err[-2000:]
        written = json.loads((logdir / "results.json").read_text())
        runs[pruner] = {t["seed"]: t["history"] for t in written["trials"]}
    for seed in (1, 2):
        for curve in ("val_accuracy", "loss", "weight_norm"):
            np.testing.assert_allclose(
                runs["hyperband"][seed][curve],
                runs["none"][seed][curve],
                rtol=1e-5,  # the same float32 computations, fit by fit
            )


def test_a_study_keeps_its_pruner_and_a_bad_pruner_is_one_line(
    tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--pruner", "mean"])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--pruner" in line and "Received: pruner='mean'" in line
    argv = ["--weight-decay", "0", "--seeds", "1", "--workers", "0"]
    status, _, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-2000:]
    status, _, err = _sweep_here(tmp_path, capsys, *argv, "--pruner", "median")
    assert status == 1
    [line] = err.strip().splitlines()
    assert "made with other settings: pruner='none' (here 'median')" in line
    assert len(_study(_journal(tmp_path)).get_trials()) == 1


def test_the_best_is_chosen_among_complete_points_only():
    def result(rate, seed, accuracy, pruned):
        curve = [accuracy] * (1 if pruned else 3)
        history = dict.fromkeys(report._CURVES, curve)
        metrics = dict.fromkeys(report.METRICS, accuracy)
        return dict(
            metrics,
            weight_decay=rate,
            dropout=0.0,
            seed=seed,
            pruned=pruned,
            history=history,
        )

    # The pruned point's accuracy when stopped is the highest: not chosen.
    results = [
        result(rate, seed, accuracy + 0.01 * seed, pruned)
        for rate, accuracy, pruned in ((0.0, 0.7, False), (1e-2, 0.8, False))
        + ((3.0, 0.9, True),)
        for seed in (1, 2)
    ]
    rows = report.aggregate(results, ("weight_decay", "dropout"))
    assert [r["pruned"] for r in rows] == [False, False, True]
    assert [r["epochs_trained"] for r in rows] == [3, 3, 1]
    assert sweep.best(rows)["weight_decay"] == 1e-2
    assert sweep.best([rows[2]]) is None
    table = report.format_sweep_table(rows, epochs=3).splitlines()
    assert table[0].endswith("| epochs |")
    assert table[-1].endswith("| pruned at 1/3 |")
    assert table[-2].endswith("| 3 |")
    assert "epochs" not in report.format_sweep_table(rows)  # --pruner none


def test_pruned_sweep_on_postgresql(postgres_url, tmp_path, capsys):
    argv = [*PRUNED, *PRUNED_GRID, "--workers", "0"]
    argv += ["--storage", postgres_url, "--study", "pruned"]
    status, _, err = _sweep_here(tmp_path, capsys, *argv)
    assert status == 0, err[-3000:]
    written = json.loads((tmp_path / "results.json").read_text())
    study = optuna.load_study(study_name="pruned", storage=postgres_url)
    _check_pruned_study(study, written)


def test_killed_pruned_sweep_resumes_without_training_a_pruned_point_again(
    tmp_path, capsys
):
    # 0 and 1e-2 complete, 3 is pruned, then 1e-3 trains: the
    # command is killed once a point is pruned.
    grid = ["--weight-decay", "0,1e-2,3,1e-3", "--seeds", "1,2"]
    argv = [*PRUNED, *grid]
    process = _sweep(tmp_path, *argv, "--workers", "1", wait=False)
    journal = tmp_path / engine_lib.JOURNAL_NAME
    pruned_state = optuna.trial.TrialState.PRUNED
    deadline = time.monotonic() + 300
    pruned = []
    while not pruned and time.monotonic() < deadline:
        time.sleep(0.2)
        if process.poll() is not None:
            break
        if journal.exists():
            pruned = _study(_journal(tmp_path)).get_trials(
                states=(pruned_state,)
            )
    assert pruned, process.communicate()[1][-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    point = pruned[0]
    label = f"[wd {point.params['weight_decay']:g} dropout 0 seeds 1,2]"
    before = _study(_journal(tmp_path)).get_trials()
    for trial in before:
        worker = trial.user_attrs.get("worker")
        deadline = time.monotonic() + 60
        while worker and engine_lib._alive(worker["pid"], worker["start"]):
            assert time.monotonic() < deadline, "the killed worker lives"
            time.sleep(0.1)
    status, out, err = _sweep_here(tmp_path, capsys, *argv, "--workers", "0")
    assert status == 0, err[-3000:]
    assert "to train in this process" in out and label not in out
    trials = _study(_journal(tmp_path)).get_trials()
    keys = [t.user_attrs["key"] for t in trials]
    assert keys.count(point.user_attrs["key"]) == 1  # never trained again
    assert trials[point.number].state == pruned_state
    assert trials[point.number].intermediate_values == point.intermediate_values
    state = optuna.trial.TrialState
    finished = {
        t.user_attrs["key"]
        for t in trials
        if t.state in (state.COMPLETE, state.PRUNED)
    }
    planned = [_point_key(r) for r in (None, 1e-2, 3.0, 1e-3)]
    assert sorted(finished) == sorted(planned)
    for trial in trials:
        if trial.state == state.FAIL:
            assert trial.user_attrs["status"] == "worker died"
    written = json.loads((tmp_path / "results.json").read_text())
    assert len(written["trials"]) == 8 and written["best"] is not None
