"""report.html: one self-contained page per sweep (sweep plots embedded as data URIs, links
to each trial's own plots beside it), to open in any browser."""

from __future__ import annotations

import base64
import json
import os
from html import escape
from pathlib import Path

from cvsweep.jsonio import write_text_atomic
from cvsweep.layout import TRIAL_PLOTS, report_of
from cvsweep.study.cost import COST_KEY, cell_text, spend_line

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em} th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f3f3f3} tr.best{background:#fff6d5;font-weight:600} tr.failed td{color:#a33}
.plots img{max-width:48%;margin:.5em .5%;border:1px solid #eee} pre{background:#f7f7f7;padding:1em;overflow:auto}
.muted{color:#777} td.links{white-space:nowrap} td.links a{margin-right:.4em}
"""


def write_report(summary: dict, sweep_dir: Path, sweep_plots: list[Path]) -> Path:
    """Write a sweep's report.html.

    Args:
        summary: summary.json's content.
        sweep_dir: The sweep folder; the page links each trial's plots and model inside it.
        sweep_plots: The study's plots, embedded in the page.

    Returns:
        The report's path.
    """
    sweep_dir = Path(sweep_dir)
    names = summary["objectives"]
    best = summary["best"]
    params = list(summary["trials"][0]["params"]) if summary["trials"] else []
    priced = any(COST_KEY in trial for trial in summary["trials"])  # a cost column for remote trials only
    head = ["job", "status", *names, "test acc", "health", "epochs", "where", *(["cost"] if priced else []),
            *(p.rsplit(".", 1)[-1] for p in params), "model file", "plots", "advice"]
    rows = []
    for trial in summary["trials"]:
        job = trial["job"]
        values = trial["objective_values"] or [None] * len(names)
        links = " ".join(
            f'<a href="{escape(job)}/{name}">{name.split(".")[0][:4]}</a>'
            for name in TRIAL_PLOTS if (sweep_dir / job / name).exists()
        )
        status = status_text(trial) if trial["status"] == "completed" else f"{trial['status']}: {trial['reason']}"
        cells = [job, status, *map(fmt, values), fmt(trial.get("test_accuracy")), fmt(trial.get("overall_health")),
                 epochs_text(trial), trial.get("where") or "-", *([cell_text(trial)] if priced else []),
                 *(fmt(trial["params"].get(p)) for p in params)]
        css = "best" if best and job == best["job"] else ("failed" if trial["status"] != "completed"
                                                          or trial.get("violates") else "")
        rows.append(f'<tr class="{css}">' + "".join(f"<td>{escape(str(c))}</td>" for c in cells)
                    + f'<td>{_model_link(trial.get("model"), sweep_dir)}</td><td class="links">{links}</td>'
                    + f"<td>{_advice_cell(trial.get('advice'))}</td></tr>")
    images = "".join(
        f'<img alt="{escape(p.stem)}" title="{escape(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in sweep_plots
    )
    study = summary["study"]
    spent = spend_line(summary, study)
    importances = summary.get("importances") or {}
    importance_rows = "".join(f"<tr><td>{escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in importances.items())
    pareto = summary.get("pareto_front") or []
    best_html = (
        f"<p>Job <b>{escape(best['job'])}</b>: " + ", ".join(f"{n} = {fmt(v)}" for n, v in zip(names, best["objective_values"]))
        + f", test accuracy {fmt(best.get('test_accuracy'))}, fingerprint <code>{escape(best['fingerprint'])}</code></p>"
        f"<details><summary>its run config</summary><pre>{escape(json.dumps(best['config'], indent=2))}</pre></details>"
        + _advice_html(best.get("advice"))
        if best else "<p>No trial completed.</p>"
    )
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cvsweep report: {escape(sweep_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>cvsweep sweep {escape(str(sweep_dir))}</h1>
<p>Objectives: {escape(", ".join(f"{n} ({d})" for n, d in zip(names, summary["directions"])))}.
{summary["n_completed"]} completed, {summary.get("n_pruned", 0)} pruned, {summary["n_failed"]} failed.
Study <code>{escape(str(study["name"]))}</code> in <code>{escape(str(study["storage"]))}</code>
holds {escape(str(study["n_trials_in_study"]))} trials.</p>{f'<p class="cost">{escape(spent)}.</p>' if spent else ""}
{f'<p>Pruner: {escape(summary["pruner"]["name"])} ({escape(summary["pruner"]["why"])}).</p>' if summary.get("pruner") else ""}
{f'<p><b>Ended early:</b> {escape(summary["ended_early"]["message"])}</p>' if summary.get("ended_early") else ""}
{_constraints_html(summary)}
<h2>Best trial</h2>{best_html}{_best_model_html(summary.get("best_model"), sweep_dir)}
{f"<p>Pareto front: jobs {escape(', '.join(t['job'] for t in pareto))}</p>" if pareto else ""}
<h2>Trials</h2>
<table><tr>{"".join(f"<th>{escape(h)}</th>" for h in head)}</tr>{"".join(rows)}</table>
<p class="muted">Trial plots are drawn when the sweep ends, for its top trials (plots=all) or its best (plots=best). Any other trial's:
<code>cvsweep plot {escape(str(sweep_dir))}/JOB</code>; every trial's, with this page again:
<code>cvsweep plot {escape(str(sweep_dir))}</code>.</p>
<h2>Sweep plots</h2><div class="plots">{images or '<p class="muted">No sweep plots (plots=none, or too few trials).</p>'}</div>
<h2>Parameter importances</h2>
{f"<table><tr><th>parameter</th><th>importance</th></tr>{importance_rows}</table>" if importance_rows else '<p class="muted">Not enough completed trials yet.</p>'}
<p class="muted">Generated by cvsweep from summary.json and the Optuna study.</p>
</body></html>
"""
    return write_text_atomic(report_of(sweep_dir), html)


def advice_text(item: dict) -> str:
    """One advice item as a line.

    Args:
        item: ``{"issue", "evidence", "try"}`` (cvsweep/training/advice.py).

    Returns:
        The issue, its evidence and what to try.
    """
    tries = f"; try {', '.join(item['try'])}" if item.get("try") else ""
    return f"{item['issue']}: {item['evidence']}{tries}"


def _advice_html(advice: list | None) -> str:
    if not advice:
        return "<p>Health advice: none, nothing looks unhealthy.</p>"
    return "<p>Health advice:</p><ul>" + "".join(f"<li>{escape(advice_text(item))}</li>" for item in advice) + "</ul>"


def _advice_cell(advice: list | None) -> str:
    """A trial's advice: its count, the items unfolded on a click."""
    if not advice:
        return "-"
    items = "".join(f"<li>{escape(advice_text(item))}</li>" for item in advice)
    return f"<details><summary>{len(advice)}</summary><ul>{items}</ul></details>"


def _best_model_html(where: dict | None, sweep_dir: Path) -> str:
    if not where:
        return ""
    shown = _model_link({k: v for k, v in where.items() if k in ("model", "bytes", "missing")}, sweep_dir)
    return (f"<p>Best model (the study's best trial, {escape(where['trial_dir'])}): {shown}. "
            f"Evaluate it: <code>{escape(where['evaluate'])}</code></p>")


def _model_link(cell: dict | None, sweep_dir: Path) -> str:
    """A link to the trial's model.keras (relative to the report), or why there is none."""
    if not cell:
        return "-"
    if "model" not in cell:
        return f'<span class="muted">missing: {escape(cell["missing"])}</span>'
    href = os.path.relpath(cell["model"], sweep_dir)
    size = f' ({cell["bytes"] / 1024:.0f} KiB)' if cell.get("bytes") is not None else ""
    return f'<a href="{escape(href)}">{escape(Path(href).name)}</a>{size}'


def fmt(value) -> str:
    """A value as the tables show it: ``-`` for None, floats to 4 significant digits.

    Args:
        value: Any value.

    Returns:
        Its text.
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def epochs_text(trial: dict) -> str:
    """A trial's epochs as the tables show them: a remote trial stopped by the pruner or a cancel
    also shows the epochs its worker had trained (and was billed for) by then.

    Args:
        trial: A summary row (``epochs_run``, ``epochs_trained`` of a stopped remote trial).

    Returns:
        The text.
    """
    trained = trial.get("epochs_trained")
    shown = fmt(trial.get("epochs_run"))
    return shown if trained is None or trained == trial.get("epochs_run") else f"{shown} ({trained} trained)"


def status_text(trial: dict) -> str:
    """A trial's status as the tables show it.

    Args:
        trial: A summary row (``status``, ``violates``).

    Returns:
        The status, with the constraints it misses, if any.
    """
    return trial["status"] + (f" (misses {', '.join(trial['violates'])})" if trial.get("violates") else "")


def _constraints_html(summary: dict) -> str:
    if not summary.get("constraints"):
        return ""
    shown = ", ".join(f"{name} = {value}" for name, value in summary["constraints"].items())
    return (f"<p><b>Constraints</b> (hydra.sweeper.constraints): {escape(shown)}. "
            f"{summary.get('n_missing_constraints', 0)} trials miss them (marked); the best trial is the best "
            "feasible one.</p>")
