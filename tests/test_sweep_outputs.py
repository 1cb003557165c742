"""Per-trial plots, sweep plots, report.html, objectives and TensorBoard, end to end."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, read_json, require, run_cli

from cvsweep.reporting.plots import TRIAL_PLOTS

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
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    proc = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=3", f"output_root={root}")
    assert proc.returncode == 0, proc.stderr
    assert "Parameter importances (val_accuracy):" in proc.stdout
    return next((root / "sweeps").iterdir())


@pytest.mark.slow
def test_every_trial_has_its_plots(sweep_dir):
    for job in ("0", "1", "2"):
        for name in TRIAL_PLOTS:
            assert (sweep_dir / job / name).read_bytes().startswith(PNG), (job, name)


def test_sweep_plots_importances_and_summary(sweep_dir):
    summary = read_json(sweep_dir / "summary.json")
    for name in ("optimization_history.png", "param_importances.png", "parallel_coordinate.png", "slice.png"):
        assert (sweep_dir / name).read_bytes().startswith(PNG) and name in summary["plots"]
    assert summary["importances"] and abs(sum(summary["importances"].values()) - 1) < 1e-6
    assert all(t["overall_health"] is not None for t in summary["trials"])


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
