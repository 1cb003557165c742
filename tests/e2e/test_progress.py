"""Live progress of a sweep: plain lines when stdout is not a terminal, the rich display under a
pseudo-terminal, and every trial's progress.json, for local trials and through the emulator."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY_OVERRIDES, read_json, run_cli

from cvsweep.reporting.progress import SweepProgress

TINY = [o for o in TINY_OVERRIDES if not o.startswith("training.epochs=")]


def _sweep_dir(root):
    return next((root / "sweeps").iterdir())


@pytest.mark.slow
def test_local_sweep_prints_progress_lines_and_every_trial_writes_progress_json(tiny_sweep):
    root, proc = tiny_sweep  # conftest's shared sweep: three local trials of two epochs, stdout no terminal
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for k in (1, 2, 3):
        assert f"[progress] trial {k} of 3 started: job {k - 1}" in out
        assert re.search(rf"\[progress\] trial {k} of 3 \(job {k - 1}\): epoch [12]/2, val_accuracy=0\.\d{{4}}", out)
        assert re.search(rf"\[progress\] trial {k} of 3 \(job {k - 1}\) completed in 0:00:\d\d: val_accuracy=", out)
    assert re.search(r"\[progress\] 3 of 3 trials finished \(0 failed this run\), 0 running; "
                     r"best so far val_accuracy=0\.\d{4} \(job \d\); elapsed 0:0\d:\d\d, about 0:00:00 left", out)
    assert "1 of 3 trials finished" in out and "about 0:00:" in out  # an estimate after the first
    # TensorFlow's start-up lines are in the first trial's log, not on the console.
    assert "absl::InitializeLog" not in proc.stderr + out and "cuInit" not in proc.stderr + out
    sweep_dir = _sweep_dir(root)
    assert "tensorflow.startup" in (sweep_dir / "0" / "app.log").read_text()
    for job in ("0", "1", "2"):
        progress = read_json(sweep_dir / job / "progress.json")
        result = read_json(sweep_dir / job / "result.json")
        assert progress["epoch"] == result["metrics"]["epochs_run"] == 2 and progress["epochs"] == 2
        assert progress["val_accuracy"] == result["metrics"]["history"]["val_accuracy"][-1]
        assert progress["updated_at"] > 0


@pytest.mark.slow
def test_remote_trial_reports_its_epochs_into_progress_json(runpod_env, tmp_path):
    # 20 short epochs, status polled every 0.1 s: the worker's per-epoch progress updates,
    # seen through the job status, reach the trial folder and the sweep's lines as they happen.
    proc = run_cli("-m", "executor=runpod", "executor.poll_interval_s=0.1", "hydra.sweeper.n_trials=1",
                   *TINY, "training.epochs=20", "training.early_stopping_patience=0", "plots=none",
                   f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = _sweep_dir(tmp_path)
    result = read_json(sweep_dir / "0" / "result.json")
    assert result["executed_on"]["executor"] == "runpod"
    progress = read_json(sweep_dir / "0" / "progress.json")
    assert (progress["epoch"], progress["epochs"]) == (20, 20)
    assert progress["val_accuracy"] == result["metrics"]["history"]["val_accuracy"][-1]
    shown = [int(e) for e in re.findall(r"\[progress\] trial 1 of 1 \(job 0\): epoch (\d+)/20", proc.stdout)]
    assert len(shown) >= 2 and shown == sorted(set(shown)) and shown[-1] == 20, proc.stdout


@pytest.mark.slow
def test_live_display_under_a_terminal(tmp_path):
    output = _run_in_pseudo_terminal(["-m", "hydra.sweeper.n_trials=2", *TINY, "training.epochs=15",
                                      "training.early_stopping_patience=0", "plots=none", f"output_root={tmp_path}"])
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)  # the text, without cursor moves and colours
    assert "0 of 2 trials finished" in screen and "2 of 2 trials finished · 0 running · 0 failed" in screen
    assert "1 running" in screen and "running for" in screen
    assert re.search(r"1 of 2 +0 +\d+/15 +val_accuracy=0\.\d{4}", screen), screen  # a running trial's epoch
    assert re.search(r"best so far: val_accuracy 0\.\d{4} \(job \d\) · elapsed 0:00:\d\d · about 0:\d\d:\d\d left",
                     screen)
    assert re.search(r"trial 1 of 2 \(job 0\) completed in 0:00:\d\d: val_accuracy=", screen)
    assert "Launching 1 jobs locally" in screen  # Hydra's log lines still show, above the display
    assert "absl::InitializeLog" not in screen and "cuInit" not in screen
    assert "This run: 2 completed, 0 failed." in screen


def test_best_so_far_follows_the_direction_and_the_estimate_the_trials_in_flight(capsys):
    progress = SweepProgress(total=6, already_finished=2, objectives=["val_loss"], directions=["minimize"],
                             live=False, poll_s=60)
    with progress:
        progress.started(5, 0, "/nonexistent/0")
        progress.started(6, 1, "/nonexistent/1")
        progress.finished(5, "completed", 0.40)
        progress.finished(6, "completed", [0.25])
        progress.started(7, 2, "/nonexistent/2")
        progress.finished(7, "failed", reason="worker lost")
        progress.started(8, 3, "/nonexistent/3")  # takes the failed one's place
        progress.finished(8, "infeasible", reason="diverged")
    out = capsys.readouterr().out
    assert "[progress] trial 3 of 6 started: job 0, Optuna trial 5 (1 running)" in out
    assert "trial 4 of 6 started: job 1, Optuna trial 6 (2 running)" in out
    assert "trial 5 of 6 (job 2) failed after 0:00:00: worker lost" in out
    assert "trial 5 of 6 (job 3) infeasible after 0:00:00: diverged" in out
    last = out.strip().splitlines()[-1]
    # Failed trials count towards nothing; infeasible ones are finished (cvsweep/study/storage.py).
    assert last.startswith("[progress] 5 of 6 trials finished (1 failed this run), 0 running; "
                           "best so far val_loss=0.2500 (job 1)"), last
    assert last.endswith("about 0:00:00 left")  # instant trials: one more of no time


def _run_in_pseudo_terminal(args: list[str], timeout: float = 300) -> str:
    """``python -m cvsweep ARGS`` with a pseudo-terminal as its stdout and stderr; all it wrote."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "cvsweep", *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process has exited
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(controller)
    assert proc.wait(timeout=30) == 0
    return b"".join(chunks).decode("utf-8", "replace")
