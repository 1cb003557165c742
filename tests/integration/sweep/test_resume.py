"""Crash and resume: kill -9 in the middle of a trial, the same command again, and the study
continues where it stopped; re-runs never repeat earlier suggestions; files are whole."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, TINY_OVERRIDES, as_the_command_checks, copy_of, read_json, run_cli
from optuna.trial import TrialState

from cvsweep import compat
from cvsweep.study.identity import IDENTITY_ATTR
from cvsweep.study.storage import RESULT_ATTR, claim, n_counted, open_storage, recover_interrupted


def load(root: Path) -> optuna.Study:
    """The one study of the storage (named digits-cnn-cnn-<hash of the experiment>)."""
    names = optuna.get_all_study_names(storage=f"sqlite:///{root}/optuna.db")
    assert len(names) == 1 and names[0].startswith("digits-cnn-cnn-"), names
    return optuna.load_study(study_name=names[0], storage=f"sqlite:///{root}/optuna.db")


def sweep_args(root: Path, n_trials: int, *extra: str) -> list[str]:
    return ["-m", *TINY_OVERRIDES, f"hydra.sweeper.n_trials={n_trials}", f"output_root={root}", *extra]


def start_sweep(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cvsweep", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(condition, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def every_output_is_whole(root: Path) -> int:
    """Every JSON parses and every PNG ends with its IEND chunk; temporaries are hidden."""
    checked = 0
    for path in root.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
            checked += 1
        elif path.suffix == ".png":
            assert path.read_bytes()[-12:-4] == b"\x00\x00\x00\x00IEND", path
            checked += 1
        elif path.name == "report.html":
            assert path.read_text().rstrip().endswith("</html>"), path
            checked += 1
    return checked


@pytest.mark.slow
def test_kill_9_mid_trial_then_the_same_command_finishes_the_study(tmp_path):
    args = sweep_args(tmp_path, 3, "training.epochs=10")
    sweep = start_sweep(args)
    # Kill once the second trial is training: the first one's result.json exists, and the second
    # has finished its first epoch (progress.json) of ten.
    wait_for(lambda: any(tmp_path.glob("sweeps/*/0/result.json")) and any(tmp_path.glob("sweeps/*/1/progress.json")))
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    first_dir = next(tmp_path.glob("sweeps/*"))
    first_result = (first_dir / "0" / "result.json").read_bytes()
    killed_study = load(tmp_path)
    before = killed_study.trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    identity = killed_study.user_attrs[IDENTITY_ATTR]
    assert identity["training.epochs"] == 10 and identity["objective"] == "val_accuracy"
    assert every_output_is_whole(tmp_path) >= 1

    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trial 1 was interrupted" in proc.stdout + proc.stderr
    resumed = load(tmp_path)  # the same study (load() finds exactly one), its identity kept
    assert (resumed.study_name, resumed.user_attrs[IDENTITY_ATTR]) == (killed_study.study_name, identity)
    trials = resumed.trials
    states = [t.state for t in trials]
    # 0 kept, 1 interrupted (failed, with its reason), 2 = 1's parameters again, 3 new.
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].user_attrs[RESULT_ATTR]["reason"].startswith(f"interrupted: sweep process {sweep.pid}")
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == 1
    assert trials[3].params not in (trials[0].params, trials[1].params)
    assert n_counted(trials) == 3
    # The completed trial's files are untouched; every record points at a whole result.json.
    assert (first_dir / "0" / "result.json").read_bytes() == first_result
    for trial in (trials[0], trials[2], trials[3]):
        result = read_json(trial.user_attrs[RESULT_ATTR]["path"])
        assert result["trial"]["objective_values"] == trial.values
    summary = read_json(next(p for p in tmp_path.glob("sweeps/*/summary.json")))
    assert summary["study"]["states"] == {"complete": 3, "interrupted": 1}
    assert every_output_is_whole(tmp_path) > 10

    # Once the study holds n_trials finished trials, the same command runs nothing.
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(load(tmp_path).trials) == 4 and "This run started no trial" in again.stdout


@pytest.mark.slow
def test_a_re_run_asks_new_parameters_and_the_same_history_asks_the_same(epochs_1_sweep, tmp_path):
    # The first run, two trials: conftest's EPOCHS_1 sweep (the same experiment), continued on a copy.
    proc = run_cli(*sweep_args(copy_of(epochs_1_sweep, tmp_path / "a"), 4, "training.epochs=1", "plots=none"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = [t.params for t in load(tmp_path / "a").trials]
    assert len(params) == 4
    assert all(params[i] != params[j] for i in range(4) for j in range(i))  # upstream repeated 0 and 1
    # Seeds come from (seed, trial number): the same study history gives the same trials.
    proc = run_cli(*sweep_args(tmp_path / "b", 4, "training.epochs=1", "plots=none"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [t.params for t in load(tmp_path / "b").trials] == params


# Loaded by the killed sweeps only (PYTHONPATH): the first write to a file whose name holds
# CVSWEEP_TEST_PAUSE_IN stops half-way, on disk, names the file in CVSWEEP_TEST_PAUSED and
# waits for the test's kill -9. It wraps open() itself, so it pauses any way of writing.
PAUSE_HOOK = """
import builtins, io, os, time

_target, _open = os.environ["CVSWEEP_TEST_PAUSE_IN"], builtins.open


class _HalfThenWait:
    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        self._handle.write(data[:max(1, len(data) // 2)])
        self._handle.flush()
        os.fsync(self._handle.fileno())
        with _open(os.environ["CVSWEEP_TEST_PAUSED"], "w") as note:
            note.write(str(self._handle.name))
        time.sleep(600)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)


def _open_pausing(file, mode="r", *args, **kwargs):
    global _target
    handle = _open(file, mode, *args, **kwargs)
    named = not isinstance(file, int)  # open() also takes a file descriptor
    if _target and named and set(mode) & set("wax") and _target in os.path.basename(os.fsdecode(file)):
        _target = None  # once
        return _HalfThenWait(handle)
    return handle


builtins.open = io.open = _open_pausing
"""


def kill_inside_a_write(args: list[str], name: str, hook_dir: Path) -> tuple[int, str]:
    """Start the sweep, kill -9 it while it is half-way through writing a file whose name
    holds ``name``; returns its pid and the file it was writing."""
    paused = hook_dir / "paused"
    paused.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(hook_dir),
           "CVSWEEP_TEST_PAUSE_IN": name, "CVSWEEP_TEST_PAUSED": str(paused)}
    sweep = subprocess.Popen([sys.executable, "-m", "cvsweep", *args], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: paused.exists() or sweep.poll() is not None)
        assert sweep.poll() is None, f"the sweep ended (exit {sweep.returncode}) without writing {name}"
        wait_for(lambda: paused.read_text())  # the note is whole
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    return sweep.pid, paused.read_text()


def whole_or_why(root: Path):
    """None when every output under ``root`` is whole (every_output_is_whole), else why not."""
    try:
        every_output_is_whole(root)
    except (AssertionError, ValueError) as err:  # a half-written PNG, or JSON that does not parse
        return f"{type(err).__name__}: {err}"
    return None


# The kills inside writes, in the order they happen: which file, and the study's states after the kill.
DONE = ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]  # 0 found interrupted; 1 asked its parameters again
KILLED_WRITING = {
    "result.json": ["RUNNING"],  # trial 0, killed as its result is written
    "history.png": DONE,  # plots are drawn after the last trial: the study is done
    "summary.json": DONE,  # a re-run of the finished sweep, killed writing its summary
}


@pytest.fixture(scope="module")
def killed_inside_writes(tmp_path_factory):
    """One three-trial sweep killed -9 half-way through writing a trial's result.json, then one of
    the trial plots drawn when the sweep ends, then (re-run, finished) its summary; then the same
    command once more. Returns the output folder, for each kill (file name, pid, the file it was
    writing, why the outputs were not whole or None, the study's states), and the last run."""
    tmp_path = tmp_path_factory.mktemp("kills-inside-writes")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(PAUSE_HOOK)
    root = tmp_path / "out"
    args = sweep_args(root, 3, "training.epochs=1")
    kills = []
    for name in KILLED_WRITING:
        pid, written = kill_inside_a_write(args, name, tmp_path / "hook")
        kills.append((name, pid, written, whole_or_why(root), [t.state.name for t in load(root).trials]))
    return root, kills, run_cli(*args)


@pytest.mark.slow
def test_kills_inside_writes_leave_only_whole_files(killed_inside_writes):
    """kill -9 half-way through writing a trial's result.json, then one of the trial plots drawn
    when the sweep ends, then the summary; every file left is whole, and the study records
    what each kill interrupted."""
    root, kills, proc = killed_inside_writes
    assert [name for name, *_ in kills] == list(KILLED_WRITING)
    for name, _, written, broken, states in kills:
        assert name in Path(written).name, written
        assert broken is None, (name, broken)
        assert states == KILLED_WRITING[name], name

    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(root).trials
    assert [t.state.name for t in trials] == DONE
    assert trials[0].user_attrs[RESULT_ATTR]["reason"].startswith(f"interrupted: sweep process {kills[0][1]}")
    # The interrupted trial's parameters were asked again by the next run (Optuna's record
    # names the first trial of those parameters).
    assert trials[1].system_attrs.get("failed_trial") == 0
    assert trials[0].params == trials[1].params != trials[2].params
    for trial in trials[1:]:
        assert read_json(trial.user_attrs[RESULT_ATTR]["path"])["trial"]["objective_values"] == trial.values
    assert every_output_is_whole(root) > 10


@pytest.mark.slow
def test_a_trial_of_a_dead_process_on_another_host_is_found_by_its_stale_heartbeat(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("cvsweep.owner", {"host": "another-host", "pid": os.getpid()})
    storage.record_heartbeat(compat.trial_id(trial))
    assert recover_interrupted(study) == []  # alive as far as anyone can tell
    time.sleep(3)
    assert recover_interrupted(study) == [0]
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.params == trial.params
    assert recover_interrupted(study) == []  # found once


def test_a_live_trial_of_this_host_is_left_alone(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1, grace_period=60)
    study = optuna.create_study(study_name="s", storage=storage)
    claim(study.ask())  # this very process: alive
    assert recover_interrupted(study) == [] and study.trials[0].state == TrialState.RUNNING


@pytest.mark.parametrize("interval, grace", [(0, 60), (10, 10), (30, 5)])
def test_heartbeat_settings_are_checked_before_the_sweep(tmp_path, interval, grace, capsys):
    status, said = as_the_command_checks([f"output_root={tmp_path}", f"hydra.sweeper.heartbeat_interval={interval}",
                                          f"hydra.sweeper.grace_period={grace}"], capsys)
    assert status == 2 and "0 < heartbeat_interval < grace_period" in said
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.slow
def test_a_trial_asked_but_never_claimed_is_recovered(epochs_1_sweep, tmp_path):
    """Reproduction: a crash between asking the study for a trial and claiming it left a RUNNING
    trial with no owner and no heartbeat, and every later run said "started no trial"."""
    root = copy_of(epochs_1_sweep, tmp_path / "out")  # conftest's EPOCHS_1 sweep: two trials done
    study = load(root)
    orphan = study.ask()  # what a sweep process that died right after ask() leaves
    time.sleep(3)  # older than the grace period
    proc = run_cli(*sweep_args(root, 3, "training.epochs=1", "plots=none", "hydra.sweeper.heartbeat_interval=1",
                               "hydra.sweeper.grace_period=2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"trial {orphan.number} was interrupted" in proc.stdout + proc.stderr
    trials = load(root).trials
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs[RESULT_ATTR]["reason"] == \
        "interrupted: its sweep process died before claiming it"
    assert n_counted(trials) == 3 and "This run started no trial" not in proc.stdout


@pytest.mark.slow
def test_a_re_run_of_a_finished_sweep_writes_the_studys_summary_and_report(killed_inside_writes):
    """Reproduction: a sweep killed during its summary never got summary.json or report.html,
    and a re-run printed "No trial completed." although the study was complete. (The module's
    killed sweep: its third run was killed writing its summary; its last run is the re-run.)"""
    root, _, again = killed_inside_writes
    *_, killed, second = sorted(root.glob("sweeps/*"))
    assert not (killed / "summary.json").exists() and not (killed / "report.html").exists()  # as the kill left it
    assert again.returncode == 0, again.stderr[-3000:]
    summary = read_json(second / "summary.json")
    assert summary["covers"] == "study" and summary["n_completed"] == 3
    best = load(root).best_trial
    assert summary["best"]["objective"] == best.value
    assert (second / summary["best"]["job"] / "result.json").resolve() == \
        Path(best.user_attrs[RESULT_ATTR]["path"]).resolve()
    assert "No trial completed." not in again.stdout and "Best: job" in again.stdout
    assert every_output_is_whole(second) >= 2 and (second / "report.html").exists()


def test_a_sqlite_study_keeps_a_write_ahead_log_and_syncs_every_commit(tmp_path):
    """One fsync a commit instead of a journal's several (storage.py), and still durable."""
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=10, grace_period=60)
    optuna.create_study(study_name="s", storage=storage).ask()
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    reader = sqlite3.connect(tmp_path / "optuna.db")  # the mode is the file's, for every reader
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert reader.execute("SELECT count(*) FROM trials").fetchone() == (1,)
    finally:
        reader.close()
