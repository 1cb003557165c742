"""What the service shows of a sweep, read from its files: the request (service.json), how far
its process got (service_state.json), each trial's result.json and progress.json, and the
summary and report the sweep writes when it ends. The same rows as the command's summary
(cvsweep/reporting/summary.py), and the same best trial (cvsweep/study/ranking.py)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

from cvsweep.config.schema import OBJECTIVES
from cvsweep.jsonio import read_json
from cvsweep.layout import is_trial_folder, report_of, result_of, summary_of
from cvsweep.reporting.folders import trial_folders
from cvsweep.reporting.summary import trial_row
from cvsweep.service import store
from cvsweep.study import ranking
from cvsweep.study.cost import COST_KEY, add_up
from cvsweep.training.progress_file import read_epoch

COUNTED = ("completed", "pruned", "infeasible")  # finished trials: they count towards n_trials


def sweep_view(folder: Path, with_trials: bool = True) -> dict:
    """What the service shows of one sweep.

    Args:
        folder: The service sweep's folder (its service.json, its trial folders).
        with_trials: Whether to list every trial (the sweep's own page) or not (the list of sweeps).

    Returns:
        Its status, request, study, progress, best trial (by the summary's rule), links, what its
        remote trials cost (``cost_usd``, ``cost_unknown_trials``; absent when all ran locally)
        and, when asked, its trials.
    """
    request = store.request_of(folder)
    status, state = store.status_of(folder)
    sweep_id = folder.name
    base = f"/sweeps/{sweep_id}"
    ended = _trials(folder, request, ended=status in store.FINAL)
    rows = [_row(trial, base) for trial in ended]
    running = [_running(trial, request) for trial in trial_folders(folder) if not is_trial_folder(trial)] \
        if status == store.RUNNING else []
    best_job = (ranking.best_row(ended, request["directions"]) or {}).get("job")
    best = next((r for r in rows if str(r["job"]) == best_job), None)
    view = {
        "id": sweep_id,
        "status": status,
        "overrides": request["client_overrides"],
        "created_at": request["created_at"],
        "started_at": (state or {}).get("started_at"),
        "finished_at": (state or {}).get("finished_at"),
        "exit_code": (state or {}).get("exit_code"),
        "reason": (state or {}).get("reason"),
        "objectives": request["objectives"],
        "directions": request["directions"],
        "study": _study(folder, request),
        "progress": {
            "finished": request["already_finished"] + sum(r["status"] in COUNTED for r in rows),
            "total": request["n_trials"],
            "failed": sum(r["status"] not in COUNTED for r in rows),
            "pruned": sum(r["status"] == "pruned" for r in rows),
            "running": [r for r in running if r is not None],
        },
        "best": best and _best(folder, best, base),
        "links": {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel", "log": f"{base}/log",
                  "report": f"{base}/report" if report_of(folder).exists() else None,
                  "dashboard": "/dashboard/"},
    }
    view.update(add_up(rows).fields())  # this sweep's remote trials' cost; the study's is view["study"]'s
    if with_trials:
        view["trials"] = [{k: v for k, v in r.items() if k != "objective_values"} for r in rows]
    return view


def _study(folder: Path, request: dict) -> dict:
    """The study: its name and storage; once the sweep has written its summary, the whole
    study as the summary read it from the storage (trials by state over every run and process,
    finished of n_trials, its best trials)."""
    try:
        return read_json(summary_of(folder))["study"]
    except (OSError, ValueError, KeyError, TypeError):
        return request["study"]


def _trials(folder: Path, request: dict, ended: bool) -> list[dict]:
    """This sweep's trials that ended, in job order: while it runs, those with a result.json;
    once it ended, every one (a trial stopped before it wrote one is failed, as in the summary)."""
    rows = []
    for trial in trial_folders(folder):
        try:
            written = result_of(trial).stat()
        except OSError:  # no result.json: running, or stopped before it wrote one
            if ended:
                rows.append(trial_row(trial, request["params"], trial.name))
            continue
        rows.append(_ended_row(trial, written.st_mtime_ns, written.st_size, tuple(request["params"])))
    return rows


@functools.lru_cache(maxsize=4096)
def _ended_row(trial: Path, mtime_ns: int, size: int, params: tuple[str, ...]) -> dict:
    """A trial's row, read once: a trial writes its result.json once, when it ends (the file's
    time and size in the key notice a rewrite). Building a row parses the trial's config, and
    the poller would otherwise build every row of every running sweep at each poll."""
    return trial_row(trial, list(params), trial.name)


def _row(row: dict, base: str) -> dict:
    job = int(row["job"])
    model = row.get("model") or {}
    return {
        "job": job, "status": row["status"], "reason": row["reason"], "objective": row["objective"],
        "objective_values": row["objective_values"], "test_accuracy": row.get("test_accuracy"),
        "epochs_run": row.get("epochs_run"), "train_seconds": row.get("train_seconds"),
        "fingerprint": row["fingerprint"], "params": row["params"],
        "result_url": f"{base}/trials/{job}",
        "model_url": f"{base}/trials/{job}/model" if model.get("model") else None,
        # A remote trial's: its cost, billed seconds and, stopped early, the epochs it trained.
        **{key: row[key] for key in (COST_KEY, "billed_s", "epochs_trained") if key in row},
    }


def _running(trial: Path, request: dict) -> Optional[dict]:
    update = read_epoch(trial)
    metric = OBJECTIVES[request["objectives"][0]].per_epoch or "val_accuracy"
    if update is None:
        return {"job": int(trial.name), "epoch": 0, "epochs": None, "metric": metric, "value": None}
    value = update.get(metric)
    return {"job": int(trial.name), "epoch": update["epoch"], "epochs": update["epochs"], "metric": metric,
            "value": value if isinstance(value, (int, float)) and not isinstance(value, bool) else None}


def _best(folder: Path, row: dict, base: str) -> dict:
    result = read_json(result_of(folder / str(row["job"])))
    return {"job": row["job"], "objective": row["objective"], "test_accuracy": row["test_accuracy"],
            "fingerprint": row["fingerprint"], "config": result["config"], "model_url": row["model_url"],
            "result_url": row["result_url"]}


def trial_file(folder: Path, job: str, name: str) -> Optional[Path]:
    """A trial's file, when ``job`` names one of the sweep's trials.

    Args:
        folder: The sweep's folder.
        job: The job number, as a client sent it.
        name: The file's name (its result.json or model file).

    Returns:
        The file's path, or None for a job that is no number or a file that is not there.
    """
    if not (job.isascii() and job.isdigit()) or len(job) > 9:  # "²".isdigit(), but int("²") fails
        return None
    path = folder / str(int(job)) / name
    return path if path.is_file() else None
