"""What remote trials cost, where a user reads it: summary.json (each row, this run, the whole
study), the summary table, report.html and the service's sweep view. The trial folders and the
study are written as a sweep leaves them, with prepared result.json files carrying
``remote.cost_usd`` as the RunPod client writes it: nothing trains."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import optuna
from conftest import TINY_RUN, compose_sweep
from rich.console import Console

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.layout import report_of, result_of, summary_of
from cvsweep.reporting.summary import summarize_sweep
from cvsweep.service import store
from cvsweep.service.snapshot import sweep_view
from cvsweep.study.storage import RESULT_ATTR

CONFIG = run_config_of(load_run_config(TINY_RUN))
STUDY = "priced"
LOCAL = object()


def _trial(folder: Path, value: float, cost, **remote_more) -> dict:
    """A trial's folder with its result.json; returns its record in the study."""
    folder.mkdir(parents=True)
    remote = {} if cost is LOCAL else {"remote": {"job_id": f"job-{folder.name}", "billed_ms": 2500, "cost_usd": cost,
                                                  **remote_more}}
    result = {"status": "completed", "config": CONFIG, "fingerprint": fingerprint(CONFIG),
              "metrics": {"test_accuracy": 0.5, "epochs_run": 2}, "trial": {"objective_values": [value]},
              "executed_on": {"executor": "local" if cost is LOCAL else "runpod"}, **remote}
    result_of(folder).write_text(json.dumps(result))
    return {"host": socket.gethostname(), "path": str(result_of(folder)),
            **({} if cost is LOCAL else {"cost_usd": cost})}


def _summary(tmp_path: Path, costs: list, earlier: list | None = None) -> tuple[dict, str, Path]:
    """A finished sweep of trials costing ``costs`` (job number = trial number), in a study that
    also holds ``earlier`` trials' records (another run's, or another process's)."""
    sweep_dir = tmp_path / "sweeps" / "20260101-000000-abcdef"
    cfg = compose_sweep("plots=none", f"output_root={tmp_path}", f"hydra.sweep.dir={sweep_dir}",
                        f"hydra.sweeper.study_name={STUDY}")
    study = optuna.create_study(storage=cfg.hydra.sweeper.storage, study_name=STUDY, direction="maximize")
    for cost in earlier or []:
        study.add_trial(optuna.trial.create_trial(values=[0.1], user_attrs={RESULT_ATTR: {"cost_usd": cost}}))
    for job, cost in enumerate(costs):
        record = _trial(sweep_dir / str(job), 0.5 + job / 100, cost)
        study.add_trial(optuna.trial.create_trial(values=[0.5 + job / 100], user_attrs={RESULT_ATTR: record}))
    out = io.StringIO()
    summary = summarize_sweep(cfg, console=Console(file=out, width=250))
    return summary, out.getvalue(), sweep_dir


def _service_view(sweep_dir: Path) -> dict:
    request = {"client_overrides": [], "created_at": "2026-01-01T00:00:00+00:00", "objectives": ["val_accuracy"],
               "directions": ["maximize"], "params": [], "already_finished": 0, "n_trials": 20, "study": {}}
    (sweep_dir / store.REQUEST_FILE).write_text(json.dumps(request))
    store.write_state(sweep_dir, status=store.FINISHED)
    return sweep_view(sweep_dir)


def test_the_summary_report_and_service_show_each_trials_cost_and_the_sums(tmp_path):
    summary, printed, sweep_dir = _summary(tmp_path, [0.25, 0.5, 0.0125], earlier=[1.0])
    assert [t["cost_usd"] for t in summary["trials"]] == [0.25, 0.5, 0.0125]
    assert summary["cost_usd"] == 0.7625 and summary["cost_unknown_trials"] == 0
    assert summary["study"]["cost_usd"] == 1.7625  # with the earlier run's trial
    assert json.loads(summary_of(sweep_dir).read_text())["cost_usd"] == 0.7625

    assert "cost" in printed and "$0.2500" in printed and "$0.0125" in printed
    assert "Cost: this run's trials $0.7625; the whole study's $1.76" in printed

    html = report_of(sweep_dir).read_text()
    assert "<th>cost</th>" in html and "<td>$0.5000</td>" in html
    assert "Cost: this run&#x27;s trials $0.7625; the whole study&#x27;s $1.76" in html

    view = _service_view(sweep_dir)
    assert view["cost_usd"] == 0.7625 and view["study"]["cost_usd"] == 1.7625
    assert [t["cost_usd"] for t in view["trials"]] == [0.25, 0.5, 0.0125]
    assert view["trials"][0]["billed_s"] == 2.5


def test_remote_trials_without_a_price_are_unknown_not_free(tmp_path):
    summary, printed, sweep_dir = _summary(tmp_path, [0.5, None, LOCAL])
    assert summary["cost_usd"] == 0.5 and summary["cost_unknown_trials"] == 1
    assert "cost_usd" not in summary["trials"][2]
    assert "$0.5000 + unknown for 1 trial (no executor.price_per_hour)" in printed
    assert "unknown" in report_of(sweep_dir).read_text()


def test_a_local_sweep_shows_no_cost_anywhere(tmp_path):
    summary, printed, sweep_dir = _summary(tmp_path, [LOCAL, LOCAL])
    assert "cost_usd" not in summary and "cost_usd" not in summary["study"]
    assert not any("cost_usd" in t for t in summary["trials"])
    html = report_of(sweep_dir).read_text()
    assert "Cost:" not in printed and "Cost:" not in html and "<th>cost</th>" not in html
    view = _service_view(sweep_dir)
    assert "cost_usd" not in view and not any("cost_usd" in t for t in view["trials"])


def test_a_pruned_remote_trial_shows_the_epochs_and_seconds_its_worker_was_billed_for(tmp_path):
    sweep_dir = tmp_path / "trials"
    _trial(sweep_dir / "0", 0.5, 0.01, epochs_trained=4, execution_ms=9000, billed_ms=9400)
    from cvsweep.reporting.report import epochs_text
    from cvsweep.reporting.summary import trial_row

    row = trial_row(sweep_dir / "0", [], "0")
    assert (row["epochs_run"], row["epochs_trained"], row["billed_s"]) == (2, 4, 9.4)
    assert epochs_text(row) == "2 (4 trained)"
    assert epochs_text({"epochs_run": 3, "epochs_trained": 3}) == "3" and epochs_text({"epochs_run": 3}) == "3"
