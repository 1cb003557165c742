"""The study side of kept models, on crafted trial folders (no training): evaluate refuses a
malformed or hostile result.json with one line (exit 2), artifacts=best deletes only
model.keras files, keeps the trial the summary names best (a tie: the first job), keeps a model
when the best has none here, and no reason or value a worker sent is read as rich markup."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from conftest import TINY_RUN, compose_sweep
from rich.console import Console

from cvsweep.cli.main import main as cvsweep
from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.reporting.summary import summarize_sweep
from cvsweep.sweep.keep_models import keep_best
from cvsweep.training.artifact import MODEL_FILE

CONFIG = run_config_of(load_run_config(TINY_RUN))
MARKUP = "upload failed [/bold] [red]x"  # rich would raise MarkupError on the first tag


def trial(folder: Path, value: float | None = 0.5, model="keep", **result) -> Path:
    """A completed trial's folder as the sweep leaves it: result.json and (model="keep") a
    model.keras whose size and sha256 it records; ``model`` otherwise is the record itself."""
    folder.mkdir(parents=True)
    if model == "keep":
        data = folder.name.encode() * 10
        (folder / MODEL_FILE).write_bytes(data)
        model = {"path": MODEL_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    body = {"status": "completed", "config": CONFIG, "fingerprint": fingerprint(CONFIG),
            "metrics": {"test_loss": 1.0, "test_accuracy": 0.5},
            "trial": {"objective_values": [value]}, "model": model, **result}
    (folder / "result.json").write_text(json.dumps({k: v for k, v in body.items() if v is not None}))
    return folder


def sweep_config(sweep_dir: Path):
    return compose_sweep("artifacts=best", "plots=none", "hydra.sweeper.storage=null", f"hydra.sweep.dir={sweep_dir}")


def refused(capsys, path: Path) -> str:
    """evaluate's one line for ``path``, which it must refuse with exit 2 (no exception)."""
    assert cvsweep(["evaluate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip()


MALFORMED = {
    "model-not-a-mapping": ({"model": "abc"}, "its model record is not a mapping but str"),
    "path-not-a-string": ({"model": {"path": 5, "bytes": 1, "sha256": "0" * 64}}, "its model path is '5'"),
    "absolute-path": ({"model": {"path": "/etc/hostname", "bytes": 1, "sha256": "0" * 64}}, "'/etc/hostname'"),
    "path-outside": ({"model": {"path": "../../etc/hostname", "bytes": 1, "sha256": "0" * 64}}, "'../../etc/hostname'"),
    "no-config": ({"config": None}, "its config is not a valid run config"),
    "no-metrics": ({"metrics": None}, "records no metrics"),
    "metrics-not-a-mapping": ({"metrics": [1, 2]}, "records no metrics"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_evaluate_refuses_a_malformed_result_with_one_line(case, tmp_path, capsys):
    change, expected = MALFORMED[case]
    folder = trial(tmp_path / "1", **{"model": "keep", **change})
    message = refused(capsys, folder)
    assert message.startswith(f"cvsweep evaluate: {folder}/result.json: ") and expected in message, message


def test_evaluate_says_data_read_on_the_worker_must_be_here(tmp_path, capsys):
    config = run_config_of(load_run_config({**TINY_RUN, "dataset": {
        "name": "npz", "path": "/runpod-volume/absent/mnist.npz", "location": "worker", "num_classes": 10,
        "pixel_scale": 255.0, "test_fraction": None}}))
    folder = trial(tmp_path / "1", config=config, fingerprint=fingerprint(config))
    message = refused(capsys, folder)
    assert "dataset.location=worker, dataset.path=/runpod-volume/absent/mnist.npz" in message, message
    assert "needs that data on this machine" in message


def test_artifacts_best_deletes_only_model_files_whatever_a_result_names(tmp_path):
    sweep_dir = tmp_path / "sweep"
    bystander = tmp_path / "bystander.txt"
    bystander.write_text("not a model")
    trial(sweep_dir / "1", value=0.9)  # the best
    trial(sweep_dir / "2", value=0.1, model={"path": "../../bystander.txt", "bytes": 11, "sha256": "0" * 64})
    trial(sweep_dir / "3", value=0.2, model={"path": str(bystander), "bytes": 11, "sha256": "0" * 64})
    kept = keep_best(sweep_config(sweep_dir))
    assert bystander.read_text() == "not a model"
    assert kept["deleted"] == [] and (sweep_dir / "1" / MODEL_FILE).exists()


def test_artifacts_best_keeps_the_trial_the_summary_names_best_of_a_tie(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for job in ("2", "10"):  # "10/" sorts before "2/" as a string
        trial(sweep_dir / job, value=0.5)
    cfg = sweep_config(sweep_dir)
    kept = keep_best(cfg)
    assert [Path(d["folder"]).name for d in kept["deleted"]] == ["10"]
    summary = summarize_sweep(cfg, console=Console(file=io.StringIO()), kept_models=kept)
    assert summary["best"]["job"] == "2"
    assert summary["best_model"]["model"] == str((sweep_dir / "2" / MODEL_FILE).resolve())


def test_artifacts_best_keeps_a_model_here_when_the_best_has_none(tmp_path):
    sweep_dir = tmp_path / "sweep"
    trial(sweep_dir / "1", value=0.9, model={"missing": "the worker's upload failed"})
    trial(sweep_dir / "2", value=0.7)
    trial(sweep_dir / "3", value=0.3)
    cfg = sweep_config(sweep_dir)
    kept = keep_best(cfg)
    assert kept["kept_instead"] == {"folders": [str(sweep_dir / "2")], "because": "the worker's upload failed"}
    assert [Path(d["folder"]).name for d in kept["deleted"]] == ["3"]
    assert (sweep_dir / "2" / MODEL_FILE).exists() and not (sweep_dir / "3" / MODEL_FILE).exists()
    out = io.StringIO()
    summary = summarize_sweep(cfg, console=Console(file=out, width=300), kept_models=kept)
    assert summary["models_kept_instead"] == kept["kept_instead"]
    assert ("artifacts=best: the best trial has no model on this host (the worker's upload failed), so the best "
            f"trial here that has one kept it: {sweep_dir / '2'}") in out.getvalue()


def test_summary_shows_a_reason_with_rich_markup_as_text(tmp_path):
    sweep_dir = tmp_path / "sweep"
    trial(sweep_dir / "1", value=0.9, model={"missing": MARKUP})
    trial(sweep_dir / "2", value=0.1, status="failed", reason=MARKUP, trial=None)
    cfg = compose_sweep("plots=none", "hydra.sweeper.storage=null", f"hydra.sweep.dir={sweep_dir}")
    out = io.StringIO()
    summarize_sweep(cfg, console=Console(file=out, width=400))
    shown = out.getvalue()
    assert f"missing: {MARKUP}" in shown and f"failed: {MARKUP}" in shown
    assert f"Best model: missing ({MARKUP})" in shown


def test_live_progress_shows_a_worker_epoch_that_is_no_number_as_not_started(tmp_path):
    from cvsweep.reporting.progress import SweepProgress
    from cvsweep.training.progress_file import FILE_NAME

    (tmp_path / FILE_NAME).write_text(json.dumps({"epoch": 1, "epochs": MARKUP}))
    progress = SweepProgress(total=2, already_finished=0, objectives=["val_accuracy"], directions=["maximize"],
                             live=False, poll_s=60)
    progress.started(0, 0, tmp_path)
    out = io.StringIO()
    Console(file=out, width=200).print(progress._render())
    assert "starting" in out.getvalue()
    (tmp_path / FILE_NAME).write_text(json.dumps({"epoch": 1, "epochs": 4, "val_accuracy": 0.5}))
    Console(file=out, width=200).print(progress._render())
    assert "1/4" in out.getvalue() and "val_accuracy=0.5000" in out.getvalue()
