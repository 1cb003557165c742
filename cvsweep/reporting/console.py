"""The end of a sweep on the terminal: summary.json's trials as a table, the parameter
importances, the study, the best trial with its config and health advice, and where its
model is. Every value from a worker or a user is printed as text, never read as rich markup."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cvsweep.layout import report_of
from cvsweep.reporting.report import advice_text, epochs_text, fmt, status_text
from cvsweep.study.cost import COST_KEY, cell_text, spend_line


def print_summary(summary: dict, params: list[str], console: Console) -> None:
    """Print a sweep's summary.

    Args:
        summary: summary.json's content (cvsweep/reporting/summary.py ``summarize_sweep``).
        params: The swept keys, one column each.
        console: Where to print.
    """
    names = summary["objectives"]
    title = ", ".join(f"{n} ({d})" for n, d in zip(names, summary["directions"]))
    table = Table(title=escape(f"Sweep {summary['sweep_dir']}: {title}"))
    priced = any(COST_KEY in trial for trial in summary["trials"])  # a cost column for remote trials only
    for column in ("job", "status", *names, "test_acc", "health", "epochs", "secs", "where",
                   *(["cost"] if priced else []), "model"):
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
            epochs_text(trial),
            fmt(trial.get("train_seconds")),
            trial.get("where") or "-",
            *([cell_text(trial)] if priced else []),
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
        # A budget the study has spent also starts nothing; the hook prints that line.
        why = ("it ended early (the last line says why)" if summary.get("ended_early") else
               "the study already holds hydra.sweeper.n_trials finished trials (raise it to run more)")
        console.print(f"This run started no trial: {why}. The table shows the study's {len(summary['trials'])} "
                      "trials whose result.json lies on this host.")
    else:
        pruned = f"{summary['n_pruned']} pruned, " if summary.get("n_pruned") else ""
        console.print(f"This run: {summary['n_completed']} completed, {pruned}{summary['n_failed']} failed"
                      + (f" ({summary['n_infeasible']} of them infeasible)." if summary["n_infeasible"] else "."))
    spent = spend_line(summary, summary.get("study"))
    if spent:
        console.print(spent, markup=False)
    if summary.get("constraints"):
        best = f"; the best is the best of those that meet them (job {best_job})" if best_job else \
            "; no completed trial meets them"
        console.print(f"Constraints {summary['constraints']}: {summary['n_missing_constraints']} trials miss them"
                      + best, markup=False)
    if summary["pareto_front"]:
        console.print("Pareto front: jobs " + ", ".join(t["job"] for t in summary["pareto_front"]), markup=False)
    console.print(f"Report: {report_of(summary['sweep_dir'])}", markup=False)
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
    """A trial's model as a table cell.

    Args:
        cell: The row's ``model`` (``{"model": path, "bytes": n}`` or ``{"missing": why}``), or None.
        sweep_dir: The sweep folder; a model inside it is shown relative to it.

    Returns:
        The file and its size, or why there is none.
    """
    if not cell:
        return "-"
    if "model" not in cell:
        return f"missing: {cell['missing']}"
    path = Path(cell["model"])
    shown = path.relative_to(sweep_dir) if path.is_relative_to(sweep_dir) else path
    return f"{shown} ({_size(cell.get('bytes'))})"


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


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
