"""What a sweep leaves on disk: files with the mode the umask gives, and each trial's
run_config.yaml, the run config exactly as trained, with no secret in it."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pytest
import yaml
from conftest import SENTINEL_API_KEY, read_json

from cvsweep.jsonio import replaced_atomically, write_json_atomic, write_text_atomic

matplotlib.use("Agg")


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_atomic_writes_get_the_mode_a_plain_open_gets(mask, tmp_path):
    import matplotlib.pyplot as plt

    with umask(mask):
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
        write_json_atomic(tmp_path / "result.json", {"a": 1})
        write_text_atomic(tmp_path / "report.html", "<html></html>")
        figure, _ = plt.subplots()
        with replaced_atomically(tmp_path / "plot.png") as tmp:
            figure.savefig(tmp, format="png")
        plt.close(figure)
    expected = 0o666 & ~mask
    assert _mode(tmp_path / "plain.txt") == expected
    for name in ("result.json", "report.html", "plot.png"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "plot.png", "report.html", "result.json"]


@pytest.fixture(scope="module")
def sweep(tiny_sweep):
    """A real three-trial sweep with plots, under umask 027, with an API key in the environment
    (conftest's shared sweep)."""
    return tiny_sweep


@pytest.mark.slow
def test_every_file_of_a_sweep_gets_the_umask_mode(sweep):
    root, _ = sweep
    files = [p for p in root.rglob("*") if p.is_file()]
    kinds = {p.name for p in files}
    assert {"result.json", "summary.json", "report.html", "history.png", "run_config.yaml", "optuna.db"} <= kinds
    assert {str(p.relative_to(root)): oct(_mode(p)) for p in files if _mode(p) != 0o640} == {}


@pytest.mark.slow  # reads the module's real sweep
def test_each_trial_keeps_its_run_config_as_trained(sweep):
    root, proc = sweep
    trials = sorted((root / "sweeps").glob("*/[0-9]*"))
    assert len(trials) == 3
    for trial in trials:
        snapshot = yaml.safe_load((trial / "run_config.yaml").read_text())
        result = read_json(trial / "result.json")
        assert snapshot == result["config"]
        assert snapshot["dataset"]["sha256"]  # after pin_dataset: the data's content
        assert set(snapshot) == {"dataset", "model", "sampling", "training", "health"}  # no executor part
        assert (trial / ".hydra" / "config.yaml").exists()
    for path in root.rglob("*"):
        if path.is_file():
            assert SENTINEL_API_KEY.encode() not in path.read_bytes(), path
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr
