"""A full disk mid-sweep, in-process: the loop (cvsweep/sweep/loop.py) over a real study and a
fake launcher whose jobs end with prepared outcomes. A full disk is no trial's failure: the sweep
stops with one line naming what could not be written and the fix, exit 1, no traceback, and the
trials it abandoned are marked failed at once, so that a re-run runs them again.

The errors are real where the machine allows it without filling a disk: a write to /dev/full
(ENOSPC), an SQLite database held at its page count (SQLITE_FULL, as a full disk answers)."""

from __future__ import annotations

import errno
import sqlite3

import optuna
import pytest
from fake_launcher import FakeLauncher
from optuna.trial import TrialState
from sqlalchemy import event

from cvsweep.jsonio import write_text_atomic
from cvsweep.study import storage as studies
from cvsweep.study.full_disk import DiskFullStop, FullDisk, full_disk_of
from cvsweep.sweep.context import LoopSettings, SweepContext
from cvsweep.sweep.loop import run_sweep
from cvsweep.sweep.study_trials import StudyTrials

def _enospc(path=None) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", *([str(path)] if path else []))


def _trials(study: optuna.Study, tmp_path, storage_shown="memory") -> StudyTrials:
    return StudyTrials(study, tmp_path / "sweep", ["maximize"], {"x": optuna.distributions.FloatDistribution(0, 1)},
                       storage_shown=storage_shown)


def _stopped(capsys, ctx, trials, launcher) -> str:
    """The loop stops with exit 1 and says one line, no traceback; that line."""
    with pytest.raises(SystemExit) as stopped:
        run_sweep(ctx, trials, launcher)
    printed = capsys.readouterr()
    assert stopped.value.code == 1
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvsweep: no space left on the device to write "), printed.err
    assert "Traceback" not in printed.err + printed.out
    assert ctx.early_end is not None and ctx.early_end.exit_code == 1
    return lines[0]


def _by_state(study: optuna.Study) -> dict:
    found: dict = {}
    for trial in study.get_trials(deepcopy=False):
        found.setdefault(trial.state, []).append(trial)
    return found


def test_a_job_that_meets_a_full_disk_stops_the_sweep_and_its_trial_is_released_at_once(tmp_path, capsys):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    result = tmp_path / "sweep" / "0" / "result.json"
    launcher = FakeLauncher(lambda job: _enospc(result) if job == 0 else 0.5)
    ctx = SweepContext(LoopSettings(n_trials=4, n_jobs=2, max_failure_rate=1.0), tmp_path / "sweep")

    line = _stopped(capsys, ctx, _trials(study, tmp_path), launcher)

    assert f"to write {result}: free space on its disk, or point hydra.sweep.dir" in line
    assert "output_root=DIR" in line and line.endswith("trial 0 marked failed, so the same command runs it again")
    assert launcher.started == [0, 1] and not launcher.interrupted  # nothing new; the one in flight finished
    states = _by_state(study)
    assert [t.number for t in states[TrialState.FAIL]] == [0] and [t.number for t in states[TrialState.COMPLETE]] == [1]
    failed = states[TrialState.FAIL][0]
    assert failed.user_attrs[studies.RESULT_ATTR]["reason"] == "no space left on the device"
    assert [t.params for t in states[TrialState.WAITING]] == [failed.params]  # a re-run asks them again
    assert studies.n_to_ask(study, 4) == 3  # and counts only the finished trial


def test_a_write_of_the_sweep_process_stops_the_jobs_in_flight_and_releases_their_trials(tmp_path, capsys):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def fill(job):
        if job == 1:
            raise _enospc()  # no file named: the message names the sweep's folder

    launcher = FakeLauncher(lambda job: 0.5, before_end=fill)
    ctx = SweepContext(LoopSettings(n_trials=5, n_jobs=2, max_failure_rate=1.0), tmp_path / "sweep")

    line = _stopped(capsys, ctx, _trials(study, tmp_path), launcher)

    assert f"to write {tmp_path / 'sweep'}: free space" in line and "trials 1, 2 marked failed" in line
    assert launcher.interrupted and not ctx.running
    states = _by_state(study)
    assert [t.number for t in states[TrialState.FAIL]] == [1, 2] and TrialState.RUNNING not in states


def test_hydras_own_job_files_on_a_full_disk_release_the_trials_asked(tmp_path, capsys):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def fill(first_job):
        if first_job == 1:
            raise _enospc()  # Hydra writes a job's .hydra/ in this process before it runs

    launcher = FakeLauncher(lambda job: 0.5, on_start=fill)
    ctx = SweepContext(LoopSettings(n_trials=3, n_jobs=1, max_failure_rate=1.0), tmp_path / "sweep")

    line = _stopped(capsys, ctx, _trials(study, tmp_path), launcher)

    assert f"to write {tmp_path / 'sweep' / '1'}: free space" in line and "trial 1 marked failed" in line
    assert [t.state for t in study.get_trials(deepcopy=False)][:2] == [TrialState.COMPLETE, TrialState.FAIL]


def _capped(storage) -> None:
    """Hold the SQLite database at the pages it has, as a full disk does: every connection from
    now on gets max_page_count 1 (SQLite keeps the pages already there)."""
    @event.listens_for(storage.engine, "connect")
    def _cap(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA max_page_count = 1")
        cursor.close()

    storage.engine.dispose()


def _fill(trial: optuna.Trial) -> None:
    """Write until the held database refuses, in ever smaller pieces, so no room is left."""
    for size in (4000, 400, 40, 4):
        for i in range(1000):
            try:
                trial.set_user_attr(f"filler-{size}-{i}", "x" * size)
            except optuna.exceptions.StorageInternalError as err:
                assert full_disk_of(err) == FullDisk(in_study=True)
                break


def test_a_full_study_database_stops_the_sweep_and_says_the_trial_waits_for_a_rerun(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = studies.open_storage(url, heartbeat_interval=10, grace_period=20)
    study = studies.create_or_load(storage, "s", directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    filler = study.ask()

    def fill(job):
        _capped(storage)
        _fill(filler)

    launcher = FakeLauncher(lambda job: 0.5, before_end=fill)
    ctx = SweepContext(LoopSettings(n_trials=3, n_jobs=1, max_failure_rate=1.0), tmp_path / "sweep")
    try:
        line = _stopped(capsys, ctx, _trials(study, tmp_path, storage_shown=url), launcher)
    finally:
        storage.engine.dispose()

    assert f"to write the study storage {url}: free space on its disk, or point hydra.sweeper.storage" in line
    assert line.endswith("trial 1 could not be marked failed (the database cannot be written): "
                         "the same command on this host marks it failed at once")
    job_trial = optuna.load_study(study_name="s", storage=url).trials[1]
    assert job_trial.state == TrialState.RUNNING and studies.OWNER_ATTR in job_trial.user_attrs  # claimed


def test_a_full_disk_is_told_apart_from_other_errors(tmp_path):
    with pytest.raises(OSError) as refused:
        with open("/dev/full", "w") as full:  # the kernel's always-full device
            full.write("x" * 100_000)
            full.flush()
    assert full_disk_of(refused.value) == FullDisk(path=None)
    wrapped = RuntimeError("the trial's worker process failed")
    wrapped.__cause__ = refused.value
    assert full_disk_of(wrapped) == FullDisk(path=None)

    database = sqlite3.connect(tmp_path / "small.db")
    database.execute("CREATE TABLE t (x)")
    database.commit()
    database.execute("PRAGMA max_page_count = 1")
    with pytest.raises(sqlite3.OperationalError) as database_full:
        database.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    database.close()
    assert full_disk_of(database_full.value) == FullDisk(in_study=True)

    assert full_disk_of(OSError(errno.EACCES, "Permission denied", "/x")) is None
    assert full_disk_of(sqlite3.OperationalError("database is locked")) is None
    assert full_disk_of(ValueError("no")) is None and full_disk_of(None) is None


def test_an_atomic_write_that_meets_a_full_disk_names_its_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    real_open = open

    def to_the_full_device(path, mode="r", *args, **kwargs):  # the temporary file lands on /dev/full
        if str(path).startswith(str(tmp_path / ".result.json.")) and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", to_the_full_device)
    with pytest.raises(OSError) as refused:
        write_text_atomic(target, "x" * 100_000)
    assert refused.value.errno == errno.ENOSPC and refused.value.filename == str(target)
    assert full_disk_of(refused.value) == FullDisk(path=str(target))
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no temporary file left


def test_the_line_names_each_place_and_its_fix():
    trial_file = DiskFullStop(FullDisk(path="/o/sweeps/s/3/model.keras"), "/o/sweeps/s/3", "sqlite:////o/optuna.db",
                              released=[3, 4])
    assert trial_file.message() == (
        "no space left on the device to write /o/sweeps/s/3/model.keras: free space on its disk, or point "
        "hydra.sweep.dir (the trial folders) at another disk (output_root=DIR moves the sweeps and the study "
        "storage together); trials 3, 4 marked failed, so the same command runs them again")
    database = DiskFullStop(FullDisk(in_study=True), "/o/sweeps/s", "sqlite:////o/optuna.db", held=[7])
    assert database.message().startswith(
        "no space left on the device to write the study storage sqlite:////o/optuna.db: "
        "free space on its disk, or point hydra.sweeper.storage at a database")


def test_a_full_disk_while_the_summary_is_written_ends_in_one_line_not_hydras_warning(tmp_path, capsys, monkeypatch):
    """Hydra turns a callback's error into a warning and exits 0; the end-of-sweep hook says the
    line and exits 1 instead."""
    from omegaconf import OmegaConf

    from cvsweep.reporting import summary
    from cvsweep.sweep import keep_models
    from cvsweep.sweep.hooks import CvsweepHooks

    def summarize_onto_a_full_disk(config, **kwargs):  # the seam: the summary's write, on /dev/full
        with open("/dev/full", "w") as full:
            full.write("x" * 100_000)

    monkeypatch.setattr(keep_models, "keep_best", lambda config: None)
    monkeypatch.setattr(summary, "summarize_sweep", summarize_onto_a_full_disk)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")},
                                         "sweeper": {"storage": "postgresql+psycopg://u:secret@db/x"}}})
    with pytest.raises(SystemExit) as stopped:
        CvsweepHooks().on_multirun_end(config)
    printed = capsys.readouterr()
    assert stopped.value.code == 1 and "Traceback" not in printed.err
    assert printed.err.splitlines() == [(
        f"cvsweep: no space left on the device to write {tmp_path / 'sweep'}: free space on its disk, or point "
        "hydra.sweep.dir (the trial folders) at another disk (output_root=DIR moves the sweeps and the study "
        "storage together)")]
