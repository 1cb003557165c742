"""The sweep service's API, on a real server process over real HTTP on 127.0.0.1: options read
from the config tree, a sweep started, watched (views and server-sent events), collected
(result, model, report, log, dashboard) and cancelled; the queue; a restarted server finding
its sweeps; remote jobs cancelled with the sweep."""

from __future__ import annotations

import json
import time
import zipfile

import pytest
from conftest import TINY_OVERRIDES, ServiceApp, ServiceProcess, read_json

from cvsweep.compose import group_options
from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import OBJECTIVES
from cvsweep.study.pruning import PRUNER_TARGETS

TINY_SWEEP = [*TINY_OVERRIDES, "hydra.sweeper.n_trials=2", "plots=none"]  # the report is written without plots
# A sweep that runs until it is cancelled (one trial of many epochs).
LONG_SWEEP = ["model.conv_layers=1", "model.filters=8", "model.dense_layers=0", "training.epochs=400",
              "training.early_stopping_patience=0", "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=2",
              "plots=none"]


@pytest.fixture
def service(tmp_path):
    server = ServiceProcess(tmp_path / "outputs")
    yield server
    server.kill_sweeps()
    server.close()


def events_of(server: ServiceProcess, sweep_id: str, timeout: float = 300,
              last_event_id: int | str | None = None) -> list[tuple[str, dict]]:
    """Every event of the sweep's stream (after ``last_event_id``), until it ends with sweep_finished."""
    found, name = [], None
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    with server.session.get(f"{server.base_url}/sweeps/{sweep_id}/events", stream=True, timeout=timeout,
                            headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                found.append((name, json.loads(line[len("data: "):])))
    return found


def test_options_are_the_config_trees(tmp_path):
    service = ServiceApp(tmp_path / "outputs")  # the routes of a server process, in this one
    options = service.get("/options").json()
    groups = group_options(*options["groups"])
    assert options["groups"] == groups and {"dataset", "model", "search", "executor", "sampling"} <= set(groups)
    assert "digits" in groups["dataset"] and options["defaults"]["dataset"] == "digits"
    assert [o["name"] for o in options["objectives"]] == list(OBJECTIVES)
    assert set(PRUNER_TARGETS) <= set(options["pruners"]) and "median_warmup" in options["pruners"]
    assert options["defaults"]["pruner"] == "auto" and options["defaults"]["n_trials"] == 10
    assert service.get("/health").json()["max_running"] == 1  # a CPU machine
    service.close()


@pytest.mark.slow
def test_a_sweep_started_watched_and_collected_through_the_api(service):
    sweep_id = service.start_sweep(*TINY_SWEEP)
    events = events_of(service, sweep_id)
    view = service.get(f"/sweeps/{sweep_id}").json()
    assert view["status"] == "finished" and view["exit_code"] == 0, view["reason"]
    assert view["progress"]["finished"] == view["progress"]["total"] == 2 and view["progress"]["running"] == []
    assert view["overrides"] == TINY_SWEEP and view["objectives"] == ["val_accuracy"]
    assert view["study"]["n_finished"] == 2 and view["study"]["states"] == {"complete": 2}  # from the storage

    # The events tell the story in order: each trial starts, reports epochs, ends; then the sweep.
    names = [name for name, _ in events]
    assert names[-1] == "sweep_finished" and events[-1][1]["status"] == "finished"
    for job in (0, 1):
        mine = [name for name, data in events if data.get("job") == job]
        assert mine[0] == "trial_started" and mine[-1] == "trial_finished", mine
    assert "epoch" in names
    # A client that reconnects with the last id it saw gets only what came after.
    assert events_of(service, sweep_id, last_event_id=len(events) - 2) == events[-2:]
    # An id that is no number of ours (a digit int() cannot read, too many digits, one past the end
    # as an earlier server's stream may have sent): the whole stream, not an empty one.
    for unreadable in ("\u00b2", "9" * 5000, len(events) + 5):
        assert events_of(service, sweep_id, last_event_id=unreadable) == events

    # The best trial: its config and fingerprint, the same as its result.json's.
    best = view["best"]
    result = service.get(best["result_url"]).json()
    assert best["fingerprint"] == result["fingerprint"] == fingerprint(best["config"])
    assert best["objective"] == max(t["objective"] for t in view["trials"])

    # Its model: the very file the sweep kept, as a .keras archive.
    model = service.get(best["model_url"])
    assert model.status_code == 200 and "attachment" in model.headers["content-disposition"]
    on_disk = service.output_root / "sweeps" / sweep_id / str(best["job"]) / "model.keras"
    assert model.content == on_disk.read_bytes() and zipfile.is_zipfile(on_disk)
    assert service.get(view["links"]["report"]).text.lstrip().lower().startswith("<!doctype html")
    assert "Best model:" in service.get(view["links"]["log"]).text

    # The dashboard, over the same storage, knows the study.
    assert service.get("/dashboard").status_code == 200
    studies = service.get("/api/studies").json()["study_summaries"]
    assert view["study"]["name"] in [s["study_name"] for s in studies]
    listed = service.get("/sweeps").json()["sweeps"]
    assert [s["id"] for s in listed] == [sweep_id] and "trials" not in listed[0]


@pytest.mark.slow
def test_a_pruned_trial_is_an_event_and_a_row(service):
    # As tests/integration/study/test_pruning.py's PRUNING, through what a request may say: one good and one
    # hopeless learning rate, the median pruner judging after the first completed trial.
    sweep_id = service.start_sweep(*[o for o in TINY_OVERRIDES if not o.startswith("training.epochs")],
                                   "training.epochs=4", "training.early_stopping_patience=0", "search=base",
                                   "training.learning_rate=choice(0.01, 0.000001)",
                                   "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.n_trials=5", "plots=none")
    events = events_of(service, sweep_id)
    view = service.get(f"/sweeps/{sweep_id}").json()
    pruned = [t for t in view["trials"] if t["status"] == "pruned"]
    assert pruned and view["progress"]["pruned"] == len(pruned) and view["status"] == "finished"
    said = {data["job"]: data for name, data in events if name == "trial_pruned"}
    assert sorted(said) == [t["job"] for t in pruned]
    assert all(said[t["job"]]["epoch"] == t["epochs_run"] < 4 for t in pruned)


@pytest.mark.slow
def test_sweeps_queue_and_cancel_like_ctrl_c(service):
    running = service.start_sweep(*LONG_SWEEP)
    queued = service.start_sweep(*TINY_SWEEP)
    assert service.get(f"/sweeps/{queued}").json()["status"] == "queued"  # max_running 1

    # Cancelled while queued: it never starts.
    assert service.post(f"/sweeps/{queued}/cancel").json()["status"] == "cancelled"
    folder = service.output_root / "sweeps" / queued
    assert not (folder / "service_state.json").exists() and not (folder / "service.log").exists()

    # Cancelled while training: stopped as Ctrl-C stops it (exit 130, the trial in flight failed
    # as interrupted, the summary written).
    wait_until(lambda: any(r["epoch"] >= 2 for r in service.get(f"/sweeps/{running}").json()["progress"]["running"]))
    assert service.post(f"/sweeps/{running}/cancel").status_code == 202
    view = service.wait_for(running, timeout=120)
    assert view["status"] == "cancelled" and view["exit_code"] == 130, view
    assert [t["status"] for t in view["trials"]] == ["failed"] and "interrupted" in view["trials"][0]["reason"]
    assert (service.output_root / "sweeps" / running / "summary.json").exists()
    assert service.post(f"/sweeps/{running}/cancel").status_code == 409  # already over
    assert service.get("/health").json()["running"] == 0


@pytest.mark.slow
def test_a_sweep_cancelled_as_it_starts_never_runs_and_is_cancelled_at_once(service):
    """Cancelled while its supervisor process is still starting (it could not take a signal
    yet): the supervisor reads the cancel itself and records it; nothing is left running."""
    sweep_id = service.start_sweep(*LONG_SWEEP)
    assert service.post(f"/sweeps/{sweep_id}/cancel").status_code == 202
    assert service.wait_for(sweep_id, timeout=120)["status"] == "cancelled"
    state = read_json(service.output_root / "sweeps" / sweep_id / "service_state.json")
    assert state["status"] == "cancelled", state  # recorded by the supervisor, not inferred from a dead one
    assert service.get("/health").json()["running"] == 0


@pytest.mark.slow
def test_a_restarted_server_finds_every_sweep_and_runs_the_queue_it_left(tmp_path):
    root = tmp_path / "outputs"
    first = ServiceProcess(root)
    try:
        finished = first.start_sweep(*TINY_SWEEP)
        first.wait_for(finished)
        long_running = first.start_sweep(*LONG_SWEEP)
        queued = first.start_sweep(*TINY_SWEEP[:-2], "hydra.sweeper.n_trials=1", "plots=none")
        first.close(kill=True)  # kill -9: the sweep it started runs on
        second = ServiceProcess(root)
    except BaseException:
        first.kill_sweeps()
        raise
    try:
        views = {s["id"]: s for s in second.get("/sweeps").json()["sweeps"]}
        assert views[finished]["status"] == "finished" and views[finished]["best"] is not None
        assert views[long_running]["status"] == "running" and views[queued]["status"] == "queued"
        second.post(f"/sweeps/{long_running}/cancel")
        assert second.wait_for(long_running, timeout=120)["status"] == "cancelled"
        assert second.wait_for(queued)["status"] == "finished"  # the new server ran the queue
        names = [name for name, _ in events_of(second, finished)]  # rebuilt from the files
        assert names.count("trial_finished") == 2 and names[-1] == "sweep_finished"
    finally:
        second.kill_sweeps()
        second.close()


@pytest.mark.slow
def test_cancelling_a_remote_sweep_cancels_its_runpod_jobs(runpod_env, tmp_path):
    import os

    server = ServiceProcess(tmp_path / "outputs", env={k: os.environ[k] for k in os.environ if k.startswith(
        ("RUNPOD", "CVSWEEP"))})
    try:
        sweep_id = server.start_sweep("executor=runpod", "executor.poll_interval_s=0.2", *LONG_SWEEP)
        wait_until(lambda: any(r["epoch"] >= 1 for r in server.get(f"/sweeps/{sweep_id}").json()["progress"]["running"]),
                   timeout=180)
        server.post(f"/sweeps/{sweep_id}/cancel")
        view = server.wait_for(sweep_id, timeout=120)
        assert view["status"] == "cancelled"
        job_id = read_json(next((server.output_root / "sweeps" / sweep_id).glob("*/result.json")))["remote"]["job_id"]
        state = runpod_env.admin("state")
        assert job_id in state["cancelled"] and state["jobs"][job_id]["status"] == "CANCELLED"
    finally:
        server.kill_sweeps()
        server.close()


def wait_until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
