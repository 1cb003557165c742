"""The trained model comes out of a local sweep: every completed trial keeps model.keras,
registered as an Optuna artifact, that ``cvsweep evaluate`` loads and evaluates to
exactly the recorded test figures; ``artifacts=best`` keeps only the study's best (also after a
resumed run), ``artifacts=none`` nothing; bad input to evaluate is a clear error, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import REPO, TINY_OVERRIDES, evaluate_cli, evaluate_here, read_json, run_cli

from cvsweep.study.storage import RESULT_ATTR
from cvsweep.training.artifact import MODEL_FILE, sha256_of

# Each test that trains does so through the real CLI (marked slow); evaluate runs its main() in
# this process, as a command once for a trial (its quiet output) and for the data-changed refusal.


def sweep(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = run_cli("-m", *TINY_OVERRIDES, "plots=none", f"output_root={root}", *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def trial_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("sweeps/*/*/result.json"))


def load_study(root: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{root}/optuna.db")


@pytest.fixture(scope="module")
def kept_all(tiny_sweep):
    """Three trials, each keeping its model (the default artifacts=all): conftest's shared sweep."""
    return tiny_sweep


@pytest.mark.slow
def test_every_completed_trial_has_a_model_whose_evaluation_equals_its_result(kept_all, capsys):
    root, _ = kept_all
    folders = trial_folders(root)
    assert len(folders) == 3
    for i, folder in enumerate(folders):
        result = read_json(folder / "result.json")
        assert result["status"] == "completed"
        record = result["model"]
        assert record == {"path": MODEL_FILE, "bytes": (folder / MODEL_FILE).stat().st_size,
                          "sha256": sha256_of(folder / MODEL_FILE)}
        if i == 0:  # the command itself, in a fresh interpreter: TensorFlow's start-up stays off its output
            proc = evaluate_cli(str(folder))
            status, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            status, out, err = evaluate_here(folder, capsys)
        assert status == 0, out + err
        for key in ("test_loss", "test_accuracy"):
            line = next(line for line in out.splitlines() if line.startswith(key))
            assert line.split()[1:] == [repr(result["metrics"][key]), repr(result["metrics"][key]), "equal"]
        assert "Traceback" not in err and "tensorflow" not in err.lower()


@pytest.mark.slow
def test_each_model_is_an_optuna_artifact_of_its_trial(kept_all, tmp_path):
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

    root, _ = kept_all
    study = load_study(root)
    store = FileSystemArtifactStore(root / "artifacts")
    assert len(study.trials) == 3
    for trial in study.trials:
        record = trial.user_attrs[RESULT_ATTR]
        metas = get_all_artifact_meta(trial, storage=study._storage)
        assert [(m.artifact_id, m.filename) for m in metas] == [(record["artifact_id"], MODEL_FILE)]
        copy = tmp_path / f"{trial.number}.keras"
        download_artifact(artifact_store=store, artifact_id=record["artifact_id"], file_path=str(copy))
        model = read_json(record["path"])["model"]
        assert sha256_of(copy) == model["sha256"]


@pytest.mark.slow
def test_summary_and_report_name_each_model_and_the_best_one(kept_all, capsys):
    root, proc = kept_all
    sweep_dir = next((root / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    report = (sweep_dir / "report.html").read_text()
    for trial in summary["trials"]:
        model = Path(trial["model"]["model"])
        assert model == sweep_dir / trial["job"] / MODEL_FILE and model.exists()
        assert f'href="{trial["job"]}/{MODEL_FILE}"' in report
        assert f"{trial['job']}/{MODEL_FILE}" in proc.stdout  # the table's model column
    best = summary["best_model"]
    study_best = load_study(root).best_trial.user_attrs[RESULT_ATTR]["path"]
    assert best["trial_dir"] == str(Path(study_best).parent)
    assert f"Best model: {best['model']}" in proc.stdout
    assert f"Evaluate it: cvsweep evaluate {best['trial_dir']}" in proc.stdout
    # A sweep folder means its study's best trial.
    status, out, err = evaluate_here(sweep_dir, capsys)
    assert status == 0, err
    assert f"model: {best['trial_dir']}" in out


def _models(root: Path) -> list[Path]:
    return sorted(root.glob(f"sweeps/*/*/{MODEL_FILE}"))


@pytest.mark.slow
def test_artifacts_best_keeps_only_the_study_best_also_after_a_resumed_run(tmp_path, capsys):
    first = sweep(tmp_path, "artifacts=best", "hydra.sweeper.n_trials=2")
    models = _models(tmp_path)
    assert len(models) == 1
    best = load_study(tmp_path).best_trial.user_attrs[RESULT_ATTR]
    assert models[0].parent == Path(best["path"]).parent
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == [best["artifact_id"]]
    summary = read_json(next((tmp_path / "sweeps").iterdir()) / "summary.json")
    assert len(summary["models_deleted"]) == 1
    for deleted in summary["models_deleted"]:
        reason = read_json(Path(deleted["folder"]) / "result.json")["model"]["missing"]
        assert reason.startswith("deleted when the sweep ended (artifacts=best)")
        assert deleted["folder"] in first.stdout.replace("\n", "")
    # The same command, resumed with more trials: a new sweep folder, one study.
    sweep(tmp_path, "artifacts=best", "hydra.sweeper.n_trials=3")
    study = load_study(tmp_path)
    assert len(study.trials) == 3
    best = study.best_trial.user_attrs[RESULT_ATTR]
    models = _models(tmp_path)
    assert [m.parent for m in models] == [Path(best["path"]).parent]  # wherever the best came from
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == [best["artifact_id"]]
    assert evaluate_here(models[0].parent, capsys)[0] == 0


@pytest.mark.slow
def test_an_in_memory_study_registers_no_artifact_and_best_keeps_one_model(tmp_path):
    proc = sweep(tmp_path, "artifacts=best", "hydra.sweeper.storage=null", "hydra.sweeper.n_trials=2")
    models = _models(tmp_path)
    assert len(models) == 1
    assert not (tmp_path / "artifacts").exists()  # nothing that no one could ever remove
    assert f"Best model: {models[0]} (" in proc.stdout


@pytest.mark.slow
def test_artifacts_none_keeps_no_model(tmp_path):
    proc = sweep(tmp_path, "artifacts=none", "hydra.sweeper.n_trials=2")
    assert _models(tmp_path) == []
    assert not (tmp_path / "artifacts").exists()
    folders = trial_folders(tmp_path)
    assert len(folders) == 2 and all("model" not in read_json(f / "result.json") for f in folders)
    assert "Best model: missing (not saved" in proc.stdout
    assert not any(key.startswith("artifacts:") for t in load_study(tmp_path).trials for key in t.system_attrs)


# Bad input: a copy of a real trial folder, spoilt one way at a time.

def _spoilt(kept_all, tmp_path, spoil) -> Path:
    root, _ = kept_all
    folder = tmp_path / "trial"
    shutil.copytree(trial_folders(root)[0], folder)
    spoil(folder, read_json(folder / "result.json"))
    return folder


def _rewrite(folder: Path, result: dict) -> None:
    (folder / "result.json").write_text(json.dumps(result))


def _truncate(folder, result):
    model = folder / MODEL_FILE
    model.write_bytes(model.read_bytes()[:1000])


def _flip_a_byte(folder, result):
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / MODEL_FILE).write_bytes(bytes(data))


def _wrong_sha256(folder, result):
    result["model"]["sha256"] = "0" * 64
    _rewrite(folder, result)


def _garbage_with_its_sha256_recorded(folder, result):
    (folder / MODEL_FILE).write_bytes(b"not a keras file" * 100)
    result["model"] = {"path": MODEL_FILE, "bytes": 1600, "sha256": sha256_of(folder / MODEL_FILE)}
    _rewrite(folder, result)


def _missing_with_reason(folder, result):
    (folder / MODEL_FILE).unlink()
    result["model"] = {"missing": "the worker's upload failed: store unreachable"}
    _rewrite(folder, result)


def _config_edited(folder, result):
    result["config"]["training"]["epochs"] += 1
    _rewrite(folder, result)


def _not_json(folder, result):
    (folder / "result.json").write_text("{ half a file")


BAD = {
    "truncated": (_truncate, [MODEL_FILE, "the file was changed, truncated or replaced"]),
    "tampered": (_flip_a_byte, [MODEL_FILE, "the file was changed, truncated or replaced"]),
    "wrong-sha256": (_wrong_sha256, [MODEL_FILE, "records"]),
    "not-a-keras-file": (_garbage_with_its_sha256_recorded, [MODEL_FILE, "cannot be loaded"]),
    "missing-with-reason": (_missing_with_reason, ["result.json", "the model is missing: the worker's upload failed"]),
    "config-edited": (_config_edited, ["result.json", "no longer matches its fingerprint"]),
    "not-json": (_not_json, ["result.json", "cannot be read as JSON"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_evaluate_refuses_bad_input_naming_the_file(case, kept_all, tmp_path, capsys):
    spoil, expected = BAD[case]
    folder = _spoilt(kept_all, tmp_path, spoil)
    status, out, err = evaluate_here(folder, capsys)
    assert status == 2, out + err
    message = err.strip()
    assert message.startswith(f"cvsweep evaluate: {folder}/"), message
    assert all(part in message for part in expected), message
    assert "Traceback" not in err and out == ""


def test_evaluate_refuses_a_path_that_is_no_trial_result_or_sweep(tmp_path, capsys):
    from cvsweep.reporting.folders import EXPECTED

    for given, what in ((tmp_path, "not"), (tmp_path / "absent", "does not exist; expected"), (REPO / "README.md", "not")):
        status, _, err = evaluate_here(given, capsys)
        assert status == 2
        assert err.strip() == f"cvsweep evaluate: {given}: {what} {EXPECTED}"


@pytest.mark.slow
def test_evaluate_refuses_data_that_changed_since_training(tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = tmp_path / "digits.npz"
    x, y = digits.images.astype(np.uint8), digits.target.astype(np.uint8)
    np.savez(data, x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])
    proc = run_cli(*TINY_OVERRIDES, "dataset=npz", f"dataset.path={data}", "dataset.pixel_scale=16",
                   "plots=none", f"output_root={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next((tmp_path / "out" / "runs").iterdir())
    assert evaluate_here(run, capsys)[0] == 0
    x[1400, 0, 0] += 1  # one pixel of the test set
    np.savez(data, x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])
    proc = evaluate_cli(str(run))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"cvsweep evaluate: {run}/result.json: the data cannot be loaded as recorded: "
                                  "dataset.sha256=")
    assert "Traceback" not in proc.stderr
