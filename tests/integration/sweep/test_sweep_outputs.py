"""Per-trial plots (drawn after the sweep, and on demand), sweep plots, report.html,
objectives and TensorBoard, end to end."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO, TINY_OVERRIDES, read_json, require, run_cli

from cvsweep.reporting.plots import TRIAL_PLOTS
from cvsweep.reporting.summary import TRIALS_PLOTTED
from cvsweep.study.ranking import top

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


@pytest.fixture(scope="module")
def sweep_dir(tiny_sweep):
    """Three trials with the default plots=all; a probe records each trial folder as its trial ends
    (conftest's shared sweep)."""
    root, proc = tiny_sweep
    assert "Parameter importances (val_accuracy):" in proc.stdout
    assert "Warning" not in proc.stderr  # matplotlib's notes on Optuna's plots of a tiny study are filtered
    return next((root / "sweeps").iterdir())


def _valid_png(path: Path) -> bool:
    from PIL import Image  # matplotlib's own dependency

    with Image.open(path) as image:
        image.verify()  # the whole file decodes
        return image.format == "PNG" and min(image.size) > 100


@pytest.mark.slow  # reads the module's real sweep
def test_trials_draw_no_plots_while_the_sweep_runs(sweep_dir):
    at_job_end = [json.loads(line) for line in (sweep_dir.parents[1] / "at_job_end.jsonl").read_text().splitlines()]
    assert sorted(row["job"] for row in at_job_end) == ["0", "1", "2"]
    for row in at_job_end:
        assert "result.json" in row["files"] and not [f for f in row["files"] if f.endswith(".png")], row


@pytest.mark.slow
def test_the_top_trials_have_their_plots_after_the_sweep(sweep_dir):
    for job in ("0", "1", "2"):  # three trials: all of them are the top three
        for name in TRIAL_PLOTS:
            assert _valid_png(sweep_dir / job / name), (job, name)


def _row(job: str, *values: float) -> dict:
    return {"job": job, "objective_values": list(values)}


def plotted_trials(rows, directions):
    return top(rows, directions, TRIALS_PLOTTED)


def test_the_plotted_trials_are_the_top_three_best_first():
    rows = [_row("0", 0.5), _row("1", 0.9), _row("2", 0.7), _row("3", 0.9), _row("4", 0.1)]
    assert TRIALS_PLOTTED == 3
    assert [t["job"] for t in plotted_trials(rows, ["maximize"])] == ["1", "3", "2"]  # a tie: job order
    assert [t["job"] for t in plotted_trials(rows, ["minimize"])] == ["4", "0", "2"]
    # several objectives: the Pareto front (job 1 is dominated by job 0), by the primary objective
    rows = [_row("0", 0.9, 500), _row("1", 0.8, 900), _row("2", 0.95, 800), _row("3", 0.1, 10)]
    assert [t["job"] for t in plotted_trials(rows, ["maximize", "minimize"])] == ["2", "0", "3"]
    assert plotted_trials([], ["maximize"]) == []


def _without_trial_plots(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for png in target.glob("*/*.png"):
        png.unlink()
    return target


def _plot_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvsweep", "plot", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_plot_command_draws_a_trials_plots_from_its_result(sweep_dir, tmp_path):
    trial = _without_trial_plots(sweep_dir, tmp_path / "sweep") / "1"
    assert not list(trial.glob("*.png"))
    proc = _plot_command(str(trial))
    assert proc.returncode == 0, proc.stderr
    for name in TRIAL_PLOTS:
        assert _valid_png(trial / name), name
    assert not list((tmp_path / "sweep" / "0").glob("*.png"))  # that trial only


@pytest.mark.slow
def test_plot_command_on_a_sweep_draws_every_trial_and_links_them_in_the_report(sweep_dir, tmp_path):
    sweep = _without_trial_plots(sweep_dir, tmp_path / "sweep")
    (sweep / "report.html").unlink()
    proc = _plot_command(str(sweep))
    assert proc.returncode == 0, proc.stderr
    for job in ("0", "1", "2"):
        assert all(_valid_png(sweep / job / name) for name in TRIAL_PLOTS), job
    page = _Page()
    page.feed((sweep / "report.html").read_text())
    assert len(page.images) == 4 and len(page.links) == 3 * (len(TRIAL_PLOTS) + 1) + 1
    assert f"Report: {sweep / 'report.html'}" in proc.stdout


def test_plot_command_refuses_a_path_that_is_not_a_trial_or_sweep_folder(tmp_path, capsys):
    from cvsweep.cli.main import main as cvsweep

    expected = ("a trial folder (a folder with result.json), a result.json or a sweep folder (a folder with "
                "summary.json, or with trial folders 0, 1, ... that hold result.json)")
    (tmp_path / "empty").mkdir()
    (tmp_path / "0").mkdir()  # a trial folder without its result
    assert cvsweep(["plot", str(tmp_path / "empty")]) == 2
    assert f"cvsweep plot: {tmp_path / 'empty'}: not {expected}" in capsys.readouterr().err
    assert cvsweep(["plot", str(tmp_path)]) == 2
    assert f"{tmp_path}: not {expected}" in capsys.readouterr().err
    assert cvsweep(["plot", str(tmp_path / "nothing")]) == 2
    assert f"{tmp_path / 'nothing'}: does not exist; expected {expected}" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text('{"trials": [{"job": 3}]}')
    assert cvsweep(["plot", str(tmp_path)]) == 2
    assert f"{tmp_path / 'summary.json'}: not a sweep summary" in capsys.readouterr().err
    assert cvsweep(["plot"]) == 2
    assert capsys.readouterr().err == "cvsweep plot: the following arguments are required: path (see cvsweep plot --help)\n"


@pytest.mark.slow  # reads the module's real sweep
def test_sweep_plots_importances_and_summary(sweep_dir):
    summary = read_json(sweep_dir / "summary.json")
    for name in ("optimization_history.png", "param_importances.png", "parallel_coordinate.png", "slice.png"):
        assert (sweep_dir / name).read_bytes().startswith(PNG) and name in summary["plots"]
    assert summary["importances"] and abs(sum(summary["importances"].values()) - 1) < 1e-6
    assert all(t["overall_health"] is not None for t in summary["trials"])
    # Local trials cost nothing: no cost at all, rather than 0 (cvsweep/study/cost.py).
    assert "cost_usd" not in summary and "cost_usd" not in summary["study"]
    assert not any("cost_usd" in t for t in summary["trials"])


@pytest.mark.slow  # reads the module's real sweep
def test_report_is_self_contained_and_links_every_trial_plot(sweep_dir):
    page = _Page()
    page.feed((sweep_dir / "report.html").read_text())
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    # each trial's plots and its model.keras, and the best trial's model once more at the top
    assert len(page.links) == 3 * (len(TRIAL_PLOTS) + 1) + 1
    assert {f"{job}/model.keras" for job in "012"} <= set(page.links)
    assert all((sweep_dir / link).exists() for link in page.links)


@pytest.mark.slow  # reads the module's real sweep
def test_report_renders_in_headless_chromium(sweep_dir, tmp_path):
    require(shutil.which("chromium") is not None, "Debian's chromium")
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2000", f"--screenshot={shot}",
         (sweep_dir / "report.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    from PIL import Image  # matplotlib's own dependency

    pixels = Image.open(shot).convert("L")
    assert pixels.size == (1400, 2000)
    assert len(pixels.getcolors(maxcolors=1 << 16) or []) > 50  # text, tables and plots, not a blank page


@pytest.mark.slow
def test_multi_objective_sweep_shows_the_pareto_front(tmp_path):
    proc = run_cli(
        "-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=3", "objective=health", "secondary_objectives=[params]",
        "hydra.sweeper.direction=[maximize,minimize]", "hydra/sweeper/pruner=none", "plots=summary", f"output_root={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    assert summary["objectives"] == ["health", "params"] and summary["pareto_front"]
    for trial in summary["trials"]:
        result = read_json(sweep_dir / trial["job"] / "result.json")
        health, params = trial["objective_values"]
        expected = 0.7 * result["metrics"]["val_accuracy"] + 0.3 * result["health"]["overall_health"]
        assert health == pytest.approx(expected) and params == result["metrics"]["params"]
        assert not (sweep_dir / trial["job"] / "history.png").exists()  # plots=summary
    assert (sweep_dir / "pareto_front.png").exists() and "Pareto front: jobs" in proc.stdout


@pytest.mark.slow
def test_tensorboard_logs_for_local_runs_only(tmp_path):
    proc = run_cli(*TINY_OVERRIDES, "tensorboard=true", "plots=none", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    assert list(Path(run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert not list(run_dir.glob("*.png"))
    proc = run_cli("tensorboard=true", "executor=runpod", f"output_root={tmp_path / 'x'}")
    assert proc.returncode == 2 and "TensorBoard logs are written by executor=local only" in proc.stderr


@pytest.mark.slow  # reads the shared sweep, a real one
def test_the_sweep_names_its_study_once_without_optunas_lines(tiny_sweep):
    _, proc = tiny_sweep
    said = proc.stdout + proc.stderr
    assert "A new study created" not in said and "Using an existing study" not in said
    assert len(re.findall(r"Study \S+ in sqlite:///\S+: 0 trials so far", said)) == 1, said[:3000]
