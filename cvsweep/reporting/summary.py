"""The end of a sweep: gather every trial's result.json into summary.json, draw the study's
plots and the top trials' own plots, write report.html and print the summary
(cvsweep/reporting/console.py). Which trial is best is cvsweep/study/ranking.py's answer."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from cvsweep.config.objectives import directions_of, objectives_of
from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.layout import MODEL, result_of, summary_of
from cvsweep.reporting.console import print_summary
from cvsweep.reporting.folders import trial_folders
from cvsweep.study import ranking
from cvsweep.study.constraints import limits_of, violated
from cvsweep.study.cost import add_up, cost_record, study_spend
from cvsweep.study.pruning import pruner_record
from cvsweep.study.search_space import search_space
from cvsweep.training.result import is_completed

log = logging.getLogger("cvsweep.summary")
# plots=all: how many trials get their own plots when a sweep ends (each takes seconds to draw)
TRIALS_PLOTTED = 3


def summarize_sweep(cfg: DictConfig, console: Console | None = None, kept_models: dict | None = None,
                    ended_early: dict | None = None) -> dict:
    """Write a sweep's summary.json and report.html, draw its plots and print its summary.

    Args:
        cfg: The sweep's config (its sweep folder, objectives, study, artifacts and plots).
        console: Where to print; a wide one when None and not on a terminal.
        kept_models: What artifacts=best deleted and kept (cvsweep/sweep/keep_models.py).
        ended_early: Why the run ended before n_trials (``{"exit_code", "message"}``:
            interrupted, failures in a row, the time limit), or None.

    Returns:
        The summary as written to summary.json.
    """
    sweep_dir = Path(cfg.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)  # absent when the study needed no more trials
    names = [o.name for o in objectives_of(cfg)]
    directions = directions_of(cfg)
    params = list(search_space(cfg))
    study = load_study(cfg)
    folders, covers = trial_folders(sweep_dir), "run"
    if not folders and study is not None:  # a re-run of a finished sweep: summarize the study
        folders, covers = _study_trial_folders(study), "study"
    trials = [trial_row(folder, params, os.path.relpath(folder, sweep_dir)) for folder in folders]
    completed = [t for t in trials if t["status"] == "completed"]
    # With constraints, the best is the best trial that meets them (as Optuna's best_trial).
    competing = ranking.competing_rows(trials)
    best = ranking.best(competing, directions)
    summary = {
        "sweep_dir": str(sweep_dir),
        # "run": this run's trials; "study": this run started none, so the study's trials
        # whose result.json lies on this host (a re-run after a kill during the summary).
        "covers": covers,
        "objectives": names,
        "directions": directions,
        "study": _study_info(cfg, study),
        # Which pruner ran and why: hydra/sweeper/pruner=auto settles on one from the objectives.
        "pruner": pruner_record(cfg),
        "n_trials": len(trials),
        "n_completed": len(completed),
        "n_pruned": sum(1 for t in trials if t["status"] == "pruned"),
        "n_failed": sum(1 for t in trials if t["status"] not in ("completed", "pruned")),
        "n_infeasible": sum(1 for t in trials if t["status"] == "infeasible"),
        "constraints": limits_of(cfg.hydra.sweeper) or None,
        "n_missing_constraints": sum(1 for t in trials if t["violates"]),
        "best": best and {**best, "config": read_json(result_of(sweep_dir / best["job"]))["config"]},
        "pareto_front": ranking.pareto_front(competing, directions) if len(names) > 1 else None,
        "importances": _importances(study, len(names)),
        "trials": trials,
        "artifacts": cfg.artifacts.name,
        "models_deleted": (kept_models or {}).get("deleted") or [],
        # artifacts=best kept these instead, since the best trial has no model on this host
        "models_kept_instead": (kept_models or {}).get("kept_instead"),
        "ended_early": ended_early,
        # This run's trials' cost (cvsweep/study/cost.py): absent when every trial ran here;
        # the whole study's is summary["study"]["cost_usd"].
        **add_up(trials).fields(),
    }
    summary["best_model"] = best_model(summary, sweep_dir)
    _plot_top_trials(sweep_dir, plotted_folders(cfg.plots.name, summary, directions, sweep_dir))
    sweep_plots = []
    if cfg.plots.name != "none" and study is not None:
        from cvsweep.reporting.plots import plot_study

        sweep_plots = plot_study(study, sweep_dir, len(names), names)
    summary["plots"] = [p.name for p in sweep_plots]
    write_json_atomic(summary_of(sweep_dir), summary)
    from cvsweep.reporting.report import write_report

    write_report(summary, sweep_dir, sweep_plots)
    # Piped or logged output gets a wide table instead of rich's 80-column default.
    print_summary(summary, params, console or Console(width=None if Console().is_terminal else 200))
    return summary


def plotted_folders(plots: str, summary: dict, directions: list[str], sweep_dir: Path) -> list[Path]:
    """The trial folders whose own plots a sweep draws when it ends.

    Args:
        plots: The ``plots`` setting: all, best, summary or none.
        summary: The summary so far (its ``trials`` and ``best_model``).
        directions: One direction per objective.
        sweep_dir: The sweep folder.

    Returns:
        plots=all: the top TRIALS_PLOTTED of this run's trials, best first (cvsweep/study/ranking.py
        ``top``); plots=best: the best trial's only, the one the best model is taken from
        (``best_model``), so that its plots lie beside the model the summary points to;
        summary and none: no trial's.
    """
    if plots == "all":
        top = ranking.top(ranking.competing_rows(summary["trials"]), directions, TRIALS_PLOTTED)
        return [sweep_dir / t["job"] for t in top]
    if plots == "best" and summary["best_model"]:
        return [Path(summary["best_model"]["trial_dir"])]
    return []


def _plot_top_trials(sweep_dir: Path, folders: list[Path]) -> None:
    if not folders:
        return
    from cvsweep.reporting.plots import plot_trial_folders  # matplotlib: only where something is drawn

    shown = ", ".join(os.path.relpath(f, sweep_dir) for f in folders)
    log.info("Drawing the plots of %d trial(s) (%s); any other trial's: cvsweep plot %s/JOB",
             len(folders), shown, sweep_dir)
    plot_trial_folders(folders)


def best_model(summary: dict, sweep_dir: Path) -> dict | None:
    """Where the best trial's model is, and the command that evaluates it.

    The best is the study's (over every run of this command) when its result.json lies on this
    host, else this run's; both by cvsweep/study/ranking.py's rule (several objectives: the
    first of the Pareto front).

    Args:
        summary: A sweep's summary (its ``study``, ``directions`` and ``trials``).
        sweep_dir: The sweep folder.

    Returns:
        ``{"trial_dir", "evaluate"}`` with the model's path (``model``, ``bytes``) or why it is
        missing (``missing``); None when no trial completed.
    """
    import socket

    folder = None
    directions = summary["directions"]
    for best in ranking.ranked(summary["study"].get("best") or [], directions):
        where = best.get("result") or {}
        if where.get("host") == socket.gethostname() and where.get("path") and Path(where["path"]).exists():
            folder = Path(where["path"]).parent
            break
    best = ranking.best_row(summary["trials"], directions)
    if folder is None and best:
        folder = (Path(sweep_dir) / best["job"]).resolve()  # a command that works from anywhere
    if folder is None:
        return None
    record = read_json(result_of(folder)).get("model")
    return {"trial_dir": str(folder), **model_cell(folder, record),
            "evaluate": f"cvsweep evaluate {folder}"}


def model_cell(folder: Path, record: dict | None) -> dict:
    """A trial's model as the summary shows it.

    Args:
        folder: The trial folder.
        record: Its result.json's ``model``.

    Returns:
        ``{"model": path, "bytes": n}`` when the file is there, else ``{"missing": why}``.
    """
    if not record:
        return {"missing": "not saved (artifacts=none, or no model to save)"}
    if not isinstance(record, dict) or record.get("path") != MODEL:  # only ever model.keras beside it
        return {"missing": str((isinstance(record, dict) and record.get("missing")) or "not recorded")}
    path = Path(folder) / MODEL
    if not path.exists():
        return {"missing": f"{path} is gone (deleted after the run)"}
    return {"model": str(path), "bytes": record.get("bytes")}


def _study_trial_folders(study) -> list[Path]:
    """The trial folders of the study's trials that ran on this host, in trial order."""
    import socket

    from cvsweep.study.storage import RESULT_ATTR

    folders = []
    for trial in study.get_trials(deepcopy=False):
        record = trial.user_attrs.get(RESULT_ATTR) or {}
        if record.get("host") == socket.gethostname() and record.get("path") and Path(record["path"]).exists():
            folder = Path(record["path"]).parent
            if folder not in folders:
                folders.append(folder)
    return folders


def trial_row(folder: Path, params: list[str], job: str) -> dict:
    """One trial's row of summary.json, from its result.json.

    Args:
        folder: The trial folder.
        params: The swept keys, whose values the row carries.
        job: The trial's name in the summary (its folder relative to the sweep folder).

    Returns:
        Its status, objective values, metrics, constraints missed, where it ran, what it cost
        (remote trials only) and its model; a trial without result.json is failed.
    """
    path = result_of(folder)
    if not path.exists():
        return {"job": job, "status": "failed",
                "reason": "no result.json: the trial was stopped (interrupted or killed) before it wrote one",
                "objective": None, "objective_values": None, "fingerprint": None, "params": {}, "violates": []}
    result = read_json(path)
    metrics = result.get("metrics", {})
    config = OmegaConf.create(result["config"])
    values = result.get("trial", {}).get("objective_values") if is_completed(result) else None
    where = result.get("executed_on", {})
    return {
        "job": job,
        # infeasible: failed because of its configuration (an answer the sampler learns from)
        "status": "infeasible" if result.get("infeasible") else result["status"],
        "reason": result.get("reason"),
        "objective": values[0] if values else None,
        "objective_values": values,
        "test_accuracy": metrics.get("test_accuracy"),
        "overall_health": (result.get("health") or {}).get("overall_health"),
        "advice": (result.get("health") or {}).get("advice") or [],  # cvsweep/training/advice.py
        "epochs_run": metrics.get("epochs_run"),
        "train_seconds": metrics.get("train_seconds"),
        "fingerprint": result["fingerprint"],
        "constraints": result.get("constraints"),  # each value <= 0: met (cvsweep/study/constraints.py)
        "violates": violated(result.get("constraints")),
        "executor": where.get("executor"),
        "where": f"{where.get('executor')}:{where.get('worker_id') or where.get('hostname')}",
        "fallback": bool(result.get("fallback")),
        **cost_record(result),  # cost_usd of a remote job: null without a price, absent for a local one
        **_remote_time(result.get("remote")),
        **({"model": model_cell(folder, result.get("model"))} if is_completed(result) else {}),
        "params": {key: OmegaConf.select(config, key) for key in params},
    }


def _remote_time(remote) -> dict:
    """What a remote job was billed for: its billed seconds (RunPod's execution plus delay time)
    and, when the pruner or a cancel stopped it, the epochs its worker had trained by then."""
    if not isinstance(remote, dict):
        return {}
    row = {}
    billed = remote.get("billed_ms")
    if isinstance(billed, (int, float)) and not isinstance(billed, bool):
        row["billed_s"] = round(billed / 1000, 3)
    trained = remote.get("epochs_trained")
    if isinstance(trained, int) and not isinstance(trained, bool):
        row["epochs_trained"] = trained
    return row


def load_study(cfg: DictConfig):
    """The sweep's Optuna study, or None (no storage, or it cannot be read: the summary still
    stands without it).

    Args:
        cfg: The sweep's config (``hydra.sweeper.storage`` and ``study_name``).

    Returns:
        An ``optuna.Study`` or None.
    """
    import optuna

    storage, name = cfg.hydra.sweeper.storage, cfg.hydra.sweeper.study_name
    if not storage:
        return None
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except Exception as err:  # the summary still stands without the study
        log.warning("could not read study %s: %s", name, err)
        return None


def _study_info(cfg: DictConfig, study) -> dict:
    """The whole study, over every run of this command and every process sharing it: where it
    lives (password hidden), its trials by state, its best trial with where that trial's
    result.json lies, and what its remote trials cost. Every process reading the same study reports the same best trial."""
    from sqlalchemy.engine import make_url

    from cvsweep.study.storage import RESULT_ATTR, interrupted_numbers, is_infeasible, n_counted

    storage = cfg.hydra.sweeper.storage
    info = {
        "name": cfg.hydra.sweeper.study_name,
        "storage": make_url(storage).render_as_string(hide_password=True) if storage else None,
        "n_trials_in_study": None,
    }
    if study is None:
        return info
    trials = study.get_trials(deepcopy=False)
    interrupted = interrupted_numbers(trials)
    states = {}
    for t in trials:
        state = "interrupted" if t.number in interrupted else "infeasible" if is_infeasible(t) else t.state.name.lower()
        states[state] = states.get(state, 0) + 1
    best = ranking.study_best(study, [t for t in trials if t.state.name == "COMPLETE"])
    info.update({
        "n_trials_in_study": len(trials),
        "n_finished": n_counted(trials),
        "n_trials_target": cfg.hydra.sweeper.n_trials,
        "states": states,
        "best": [{"number": t.number, "values": t.values, "params": t.params, "result": t.user_attrs.get(RESULT_ATTR)}
                 for t in best],
        **study_spend(trials).fields(),  # every run's and process's trials, from their records
    })
    return info


def _importances(study, n_objectives: int) -> dict | None:
    """Optuna's parameter importances (fANOVA) for the primary objective, over the whole study."""
    import optuna

    if study is None:
        return None
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return None
    target = (lambda t: t.values[0]) if n_objectives > 1 else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, target=target)
    except Exception as err:  # e.g. every completed trial has the same parameters
        log.warning("no parameter importances: %s", err)
        return None
    return {name: round(float(value), 6) for name, value in importances.items()}


