"""The end of a sweep: gather every trial's result.json into summary.json, draw the study's
plots and the top trials' own plots, print parameter importances and a table, and write
report.html."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cvsweep.config.objectives import directions_of, objectives_of
from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.reporting.report import advice_text, fmt, status_text
from cvsweep.study.constraints import limits_of, violated
from cvsweep.study.search_space import search_space
from cvsweep.training.artifact import MODEL_FILE
from cvsweep.training.result import is_completed

log = logging.getLogger("cvsweep.summary")
# plots=all: how many trials get their own plots when a sweep ends (each takes seconds to draw)
TRIALS_PLOTTED = 3


def summarize_sweep(cfg: DictConfig, console: Console | None = None, kept_models: dict | None = None,
                    ended_early: dict | None = None) -> dict:
    """``kept_models``: what artifacts=best deleted and kept (cvsweep/sweep/keep_models.py);
    ``ended_early``: why the run ended before n_trials ({"exit_code", "message"}: interrupted,
    failures in a row, the time limit), or None."""
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
    feasible = [t for t in completed if not t["violates"]]
    front = pareto_front(feasible, directions)
    best = best_trial(feasible, directions)
    summary = {
        "sweep_dir": str(sweep_dir),
        # "run": this run's trials; "study": this run started none, so the study's trials
        # whose result.json lies on this host (a re-run after a kill during the summary).
        "covers": covers,
        "objectives": names,
        "directions": directions,
        "study": _study_info(cfg, study),
        "n_trials": len(trials),
        "n_completed": len(completed),
        "n_pruned": sum(1 for t in trials if t["status"] == "pruned"),
        "n_failed": sum(1 for t in trials if t["status"] not in ("completed", "pruned")),
        "n_infeasible": sum(1 for t in trials if t["status"] == "infeasible"),
        "constraints": limits_of(cfg.hydra.sweeper) or None,
        "n_missing_constraints": sum(1 for t in trials if t["violates"]),
        "best": best and {**best, "config": read_json(sweep_dir / best["job"] / "result.json")["config"]},
        "pareto_front": front if len(names) > 1 else None,
        "importances": _importances(study, len(names)),
        "trials": trials,
        "artifacts": cfg.artifacts.name,
        "models_deleted": (kept_models or {}).get("deleted") or [],
        # artifacts=best kept these instead, since the best trial has no model on this host
        "models_kept_instead": (kept_models or {}).get("kept_instead"),
        "ended_early": ended_early,
    }
    summary["best_model"] = best_model(summary, sweep_dir)
    _plot_top_trials(sweep_dir, plotted_folders(cfg.plots.name, summary, directions, sweep_dir))
    sweep_plots = []
    if cfg.plots.name != "none" and study is not None:
        from cvsweep.reporting.plots import plot_study

        sweep_plots = plot_study(study, sweep_dir, len(names), names)
    summary["plots"] = [p.name for p in sweep_plots]
    write_json_atomic(sweep_dir / "summary.json", summary)
    from cvsweep.reporting.report import write_report

    write_report(summary, sweep_dir, sweep_plots)
    # Piped or logged output gets a wide table instead of rich's 80-column default.
    _print(summary, params, console or Console(width=None if Console().is_terminal else 200))
    return summary


def pareto_front(trials: list[dict], directions: list[str]) -> list[dict]:
    """The completed trials no other trial beats on every objective."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    scored = [(t, [s * v for s, v in zip(signs, t["objective_values"])]) for t in trials]

    def dominated(a):
        return any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a)) for _, b in scored)

    return [t for t, values in scored if not dominated(values)]


def best_of(completed: list[dict], direction: str):
    """The best trial; of several equal ones, the first (in job order)."""
    if not completed:
        return None
    pick = max if direction == "maximize" else min
    return pick(completed, key=lambda t: t["objective_values"][0])


def best_trial(completed: list[dict], directions: list[str]):
    """The trial a sweep names best: by its one objective, or the first of the Pareto front."""
    if len(directions) == 1:
        return best_of(completed, directions[0])
    front = pareto_front(completed, directions)
    return front[0] if front else None


def kept_best(completed: list[dict], directions: list[str]) -> list[dict]:
    """The trials that are best as this summary chooses them, in the order given (job order):
    the best one (a tie: the first), or with several objectives the Pareto front."""
    if len(directions) > 1:
        return pareto_front(completed, directions)
    best = best_of(completed, directions[0])
    return [best] if best else []


def plotted_trials(completed: list[dict], directions: list[str]) -> list[dict]:
    """The trials whose own plots a sweep draws when it ends (plots=all): the best
    TRIALS_PLOTTED by the primary objective, the best first (a tie: job order); with several
    objectives, those of the Pareto front. Any other trial's: ``python -m cvsweep.plot``."""
    candidates = pareto_front(completed, directions) if len(directions) > 1 else completed
    ranked = sorted(candidates, key=lambda t: t["objective_values"][0], reverse=directions[0] == "maximize")
    return ranked[:TRIALS_PLOTTED]


def plotted_folders(plots: str, summary: dict, directions: list[str], sweep_dir: Path) -> list[Path]:
    """The trial folders whose own plots a sweep draws when it ends: plots=all, those of
    plotted_trials; plots=best, the best trial's only: the one the best model is taken from
    (the study's best when its folder is on this host, else this run's; with several
    objectives, the first of the Pareto front), so that its plots lie beside the model the
    summary points to; summary and none: no trial's."""
    if plots == "all":
        completed = [t for t in summary["trials"] if t["status"] == "completed"]
        return [sweep_dir / t["job"] for t in plotted_trials(completed, directions)]
    if plots == "best" and summary["best_model"]:
        return [Path(summary["best_model"]["trial_dir"])]
    return []


def _plot_top_trials(sweep_dir: Path, folders: list[Path]) -> None:
    from cvsweep.reporting.plots import plot_trial_folders

    if not folders:
        return
    shown = ", ".join(os.path.relpath(f, sweep_dir) for f in folders)
    log.info("Drawing the plots of %d trial(s) (%s); any other trial's: python -m cvsweep.plot %s/JOB",
             len(folders), shown, sweep_dir)
    plot_trial_folders(folders)


def best_model(summary: dict, sweep_dir: Path) -> dict | None:
    """Where the best trial's model is, and the command that evaluates it. The best is the
    study's (over every run of this command) when its result.json lies on this host, else this
    run's; a multi-objective study's first Pareto-front trial."""
    import socket

    folder = None
    for best in (summary["study"].get("best") or []):
        where = best.get("result") or {}
        if where.get("host") == socket.gethostname() and where.get("path") and Path(where["path"]).exists():
            folder = Path(where["path"]).parent
            break
    if folder is None and summary["best"]:
        folder = (Path(sweep_dir) / summary["best"]["job"]).resolve()  # a command that works from anywhere
    if folder is None:
        return None
    record = read_json(folder / "result.json").get("model")
    return {"trial_dir": str(folder), **model_cell(folder, record),
            "evaluate": f"python -m cvsweep.evaluate {folder}"}


def model_cell(folder: Path, record: dict | None) -> dict:
    """A trial's model as the summary shows it: ``{"model": path}`` when the file is there,
    else ``{"missing": why}``."""
    if not record:
        return {"missing": "not saved (artifacts=none, or no model to save)"}
    if not isinstance(record, dict) or record.get("path") != MODEL_FILE:  # only ever model.keras beside it
        return {"missing": str((isinstance(record, dict) and record.get("missing")) or "not recorded")}
    path = Path(folder) / MODEL_FILE
    if not path.exists():
        return {"missing": f"{path} is gone (deleted after the run)"}
    return {"model": str(path), "bytes": record.get("bytes")}


def trial_folders(sweep_dir: Path) -> list[Path]:
    """Hydra's job folders (named by job number), in launch order."""
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(folders, key=lambda p: int(p.name))


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
    path = folder / "result.json"
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
        **({"model": model_cell(folder, result.get("model"))} if is_completed(result) else {}),
        "params": {key: OmegaConf.select(config, key) for key in params},
    }


def load_study(cfg: DictConfig):
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
    lives (password hidden), its trials by state, and its best trial with where that trial's
    result.json lies. Every process reading the same study reports the same best trial."""
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
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = []
    if complete:
        best = [study.best_trial] if len(study.directions) == 1 else study.best_trials
    info.update({
        "n_trials_in_study": len(trials),
        "n_finished": n_counted(trials),
        "n_trials_target": cfg.hydra.sweeper.n_trials,
        "states": states,
        "best": [{"number": t.number, "values": t.values, "params": t.params, "result": t.user_attrs.get(RESULT_ATTR)}
                 for t in best],
    })
    return info


def _print_study(study: dict, names: list[str], console: Console) -> None:
    line = f"Study '{study['name']}' in {study['storage']}"
    if study["n_trials_in_study"] is None:
        console.print(line + ".", markup=False)
        return
    states = ", ".join(f"{n} {state}" for state, n in sorted(study["states"].items()))
    console.print(f"{line}: {study['n_finished']} of {study['n_trials_target']} trials finished ({states}).",
                  markup=False)
    for best in study["best"]:
        where = best["result"] or {}
        values = ", ".join(f"{n}={fmt(v)}" for n, v in zip(names, best["values"]))
        console.print(f"Study best: trial {best['number']}, {values}, result {where.get('host')}:{where.get('path')}",
                      markup=False)


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


def _print(summary: dict, params: list[str], console: Console) -> None:
    names = summary["objectives"]
    title = ", ".join(f"{n} ({d})" for n, d in zip(names, summary["directions"]))
    table = Table(title=escape(f"Sweep {summary['sweep_dir']}: {title}"))
    for column in ("job", "status", *names, "test_acc", "health", "epochs", "secs", "where", "model"):
        table.add_column(column)
    for key in params:  # the last part of each swept key names its column
        table.add_column(key.rsplit(".", 1)[-1], overflow="fold")
    best_job = summary["best"] and summary["best"]["job"]
    for trial in summary["trials"]:
        values = trial["objective_values"] or [None] * len(names)
        shown = [fmt(v) for v in values]
        if trial["status"] != "completed":
            shown = [f"{trial['status']}: {trial['reason']}"] + ["-"] * (len(names) - 1)
        cells = (
            trial["job"] + (" *" if trial["job"] == best_job else ""),
            status_text(trial),
            *shown,
            fmt(trial.get("test_accuracy")),
            fmt(trial.get("overall_health")),
            fmt(trial.get("epochs_run")),
            fmt(trial.get("train_seconds")),
            trial.get("where") or "-",
            model_text(trial.get("model"), Path(summary["sweep_dir"])),
            *(fmt(trial["params"].get(key)) for key in params),
        )  # Text: reasons, hosts and values from workers or users are never read as rich markup
        table.add_row(*(Text(str(cell)) for cell in cells), style="bold" if trial["job"] == best_job else None)
    console.print(table)
    if summary["importances"]:
        console.print("Parameter importances (" + names[0] + "): " + ", ".join(
            f"{key} {value:.3f}" for key, value in summary["importances"].items()), markup=False)
    _print_study(summary["study"], names, console)
    if summary["covers"] == "study":
        console.print("This run started no trial: the study already holds hydra.sweeper.n_trials finished trials "
                      f"(raise it to run more). The table shows the study's {len(summary['trials'])} trials "
                      "whose result.json lies on this host.")
    else:
        pruned = f"{summary['n_pruned']} pruned, " if summary.get("n_pruned") else ""
        console.print(f"This run: {summary['n_completed']} completed, {pruned}{summary['n_failed']} failed"
                      + (f" ({summary['n_infeasible']} of them infeasible)." if summary["n_infeasible"] else "."))
    if summary.get("constraints"):
        best = f"; the best is the best of those that meet them (job {best_job})" if best_job else \
            "; no completed trial meets them"
        console.print(f"Constraints {summary['constraints']}: {summary['n_missing_constraints']} trials miss them"
                      + best, markup=False)
    if summary["pareto_front"]:
        console.print("Pareto front: jobs " + ", ".join(t["job"] for t in summary["pareto_front"]), markup=False)
    console.print(f"Report: {Path(summary['sweep_dir']) / 'report.html'}", markup=False)
    if summary["best"] is None:
        console.print("No trial completed.")
        return
    best = summary["best"]
    console.print(
        f"Best: job {best['job']}, " + ", ".join(f"{n}={fmt(v)}" for n, v in zip(names, best["objective_values"]))
        + f", test_accuracy={fmt(best['test_accuracy'])}, fingerprint {best['fingerprint'][:12]}", markup=False
    )
    console.print(OmegaConf.to_yaml(OmegaConf.create(best["config"])).rstrip(), markup=False)
    _print_advice(best, console)
    _print_models(summary, console)


def _print_advice(best: dict, console: Console) -> None:
    if not best.get("advice"):
        console.print(f"Health advice for job {best['job']}: none, nothing looks unhealthy.", markup=False)
        return
    console.print(f"Health advice for job {best['job']}:", markup=False)
    for item in best["advice"]:
        console.print(f"  - {advice_text(item)}", markup=False, soft_wrap=True)


def _print_models(summary: dict, console: Console) -> None:
    """What artifacts=best deleted, where the best model is, and how to evaluate it."""
    deleted = summary["models_deleted"]
    if deleted:
        console.print(f"artifacts=best: deleted the models of {len(deleted)} trial(s) not the study's best "
                      "(with several objectives: not on its Pareto front): " + ", ".join(d["folder"] for d in deleted), markup=False, soft_wrap=True)
    instead = summary["models_kept_instead"]
    if instead:
        console.print(f"artifacts=best: the best trial has no model on this host ({instead['because']}), so the best "
                      "trial here that has one kept it: " + ", ".join(instead["folders"]), markup=False, soft_wrap=True)
    where = summary["best_model"]
    if where is None:
        return
    if "model" in where:
        console.print(f"Best model: {where['model']} ({_size(where['bytes'])})", markup=False, soft_wrap=True)
        console.print(f"Evaluate it: {where['evaluate']}", markup=False, soft_wrap=True)
    else:
        console.print(f"Best model: missing ({where['missing']}), trial {where['trial_dir']}", markup=False,
                      soft_wrap=True)


def model_text(cell: dict | None, sweep_dir: Path) -> str:
    """A table cell: the model file (relative to the sweep folder when inside it), or why not."""
    if not cell:
        return "-"
    if "model" not in cell:
        return f"missing: {cell['missing']}"
    path = Path(cell["model"])
    shown = path.relative_to(sweep_dir) if path.is_relative_to(sweep_dir) else path
    return f"{shown} ({_size(cell.get('bytes'))})"


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"
