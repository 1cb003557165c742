"""The end of a sweep: gather every trial's result.json into summary.json and a table."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.preflight import search_space
from cvsweep.schema import OBJECTIVE_DIRECTION

log = logging.getLogger("cvsweep.summary")


def summarize_sweep(cfg: DictConfig, console: Console | None = None) -> dict:
    sweep_dir = Path(cfg.hydra.sweep.dir)
    objective = cfg.objective.name
    direction = OBJECTIVE_DIRECTION[cfg.objective]
    params = list(search_space(cfg))
    trials = [_trial_row(folder, objective, params) for folder in _trial_folders(sweep_dir)]
    completed = [t for t in trials if t["status"] == "completed"]
    pick = max if direction == "maximize" else min
    best = pick(completed, key=lambda t: t["objective"]) if completed else None
    summary = {
        "sweep_dir": str(sweep_dir),
        "objective": objective,
        "direction": direction,
        "study": _study_info(cfg),
        "n_trials": len(trials),
        "n_completed": len(completed),
        "n_failed": len(trials) - len(completed),
        "best": best and {**best, "config": read_json(sweep_dir / best["job"] / "result.json")["config"]},
        "trials": trials,
    }
    write_json_atomic(sweep_dir / "summary.json", summary)
    # Piped or logged output gets a wide table instead of rich's 80-column default.
    _print(summary, params, console or Console(width=None if Console().is_terminal else 200))
    return summary


def _trial_folders(sweep_dir: Path) -> list[Path]:
    """Hydra's job folders (named by job number), in launch order."""
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(folders, key=lambda p: int(p.name))


def _trial_row(folder: Path, objective: str, params: list[str]) -> dict:
    path = folder / "result.json"
    if not path.exists():
        return {"job": folder.name, "status": "failed", "reason": "no result.json: the trial ended before writing it",
                "objective": None, "fingerprint": None, "params": {}}
    result = read_json(path)
    metrics = result.get("metrics", {})
    config = OmegaConf.create(result["config"])
    return {
        "job": folder.name,
        "status": result["status"],
        "reason": result.get("reason"),
        "objective": metrics.get(objective) if result["status"] == "completed" else None,
        "test_accuracy": metrics.get("test_accuracy"),
        "epochs_run": metrics.get("epochs_run"),
        "train_seconds": metrics.get("train_seconds"),
        "fingerprint": result["fingerprint"],
        "executor": result.get("executed_on", {}).get("executor"),
        "params": {key: OmegaConf.select(config, key) for key in params},
    }


def _study_info(cfg: DictConfig) -> dict:
    """Where the Optuna study lives (password hidden) and how many trials it now holds."""
    import optuna
    from sqlalchemy.engine import make_url

    storage, name = cfg.hydra.sweeper.storage, cfg.hydra.sweeper.study_name
    info = {"name": name, "storage": None, "n_trials_in_study": None}
    if not storage:
        return info
    info["storage"] = make_url(storage).render_as_string(hide_password=True)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        info["n_trials_in_study"] = len(study.trials)
    except Exception as err:  # the summary still stands without the study's count
        log.warning("could not read study %s: %s", name, err)
    return info


def _print(summary: dict, params: list[str], console: Console) -> None:
    table = Table(title=f"Sweep {summary['sweep_dir']}: {summary['objective']} ({summary['direction']})")
    for column in ("job", "status", summary["objective"], "test_acc", "epochs", "secs"):
        table.add_column(column)
    for key in params:  # the last part of each swept key names its column
        table.add_column(key.rsplit(".", 1)[-1], overflow="fold")
    best_job = summary["best"] and summary["best"]["job"]
    for trial in summary["trials"]:
        objective = "-" if trial["objective"] is None else f"{trial['objective']:.4f}"
        if trial["status"] != "completed":
            objective = f"failed: {trial['reason']}"
        table.add_row(
            trial["job"] + (" *" if trial["job"] == best_job else ""),
            trial["status"],
            objective,
            _fmt(trial.get("test_accuracy")),
            _fmt(trial.get("epochs_run")),
            _fmt(trial.get("train_seconds")),
            *(_fmt(trial["params"].get(key)) for key in params),
            style="bold" if trial["job"] == best_job else None,
        )
    console.print(table)
    study = summary["study"]
    console.print(
        f"{summary['n_completed']} completed, {summary['n_failed']} failed. "
        f"Study '{study['name']}' in {study['storage']} holds {study['n_trials_in_study']} trials."
    )
    if summary["best"] is None:
        console.print("No trial completed.")
        return
    best = summary["best"]
    console.print(
        f"Best: job {best['job']}, {summary['objective']}={best['objective']:.4f}, "
        f"test_accuracy={_fmt(best['test_accuracy'])}, fingerprint {best['fingerprint'][:12]}"
    )
    console.print(OmegaConf.to_yaml(OmegaConf.create(best["config"])).rstrip(), markup=False)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
