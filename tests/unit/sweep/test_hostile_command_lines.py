"""Hostile and malformed command lines, in one process: each is composed as ``cvsweep -m`` composes
it and, where Hydra accepts it, put through the command's own checks before a sweep (the
callback cvsweep/sweep/hooks.py runs). Each fails with a message naming the problem, before any
trial, and leaves every file of an earlier sweep in the output folder byte for byte as it was.
CLI_INPUTS is the list of inputs tried; tests/e2e/test_hostile_cli.py sends some of them through
the real command after a real sweep (exit status, no traceback, no damage)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import TINY_OVERRIDES, as_the_command_checks, compose_sweep

from cvsweep import layout
from cvsweep.sweep.hooks import EXIT_INVALID_CONFIG
from cvsweep.sweep.preflight import check_sweep

DATA = "__data__"  # replaced by the folder of corrupt dataset files
ROOT = "__root__"  # replaced by the output folder holding the earlier sweep
STUDY = "__study__"  # replaced by the earlier sweep's study name

CLI_INPUTS = [
    # (id, arguments, what the message must say)
    ("unknown-group-option", ["dataset=imagenet"], "Could not find 'dataset/imagenet'"),
    ("added-top-level-key", ["+optimizer=adam"], "optimizer: not a setting of cvsweep"),
    ("added-nested-key", ["+model.dropuot=0.1"], "model.dropuot: not a setting of CnnModelConfig"),
    ("unknown-key", ["model.dropuot=0.1"], "Key 'dropuot' not in 'CnnModelConfig'"),
    ("unknown-top-level-key", ["learning_rate=0.1"], "Key 'learning_rate' not in 'Config'"),
    ("wrong-type-int", ["training.epochs=many"], "training.epochs"),
    ("wrong-type-bool", ["model.batch_norm=maybe"], "model.batch_norm"),
    ("bad-enum", ["model.activation=sigmoidish"], "model.activation"),
    ("out-of-range", ["model.dropout=1.5"], "model.dropout=1.5: allowed is"),
    ("negative", ["training.learning_rate=-1"], "training.learning_rate=-1.0: allowed is"),
    ("search-space-out-of-range", ["model.dropout=interval(0.1, 2.0)"], "model.dropout=2.0"),
    ("interpolation-to-env", ["dataset.path=${oc.env:HOME}/x.npz", "dataset=npz"], "dataset.path"),
    ("missing-dataset-file", ["dataset=npz", "dataset.path=/nonexistent/mnist.npz"], "no such file"),
    ("dataset-not-npz", ["dataset=npz", f"dataset.path={DATA}/text.npz"], "not a readable .npz file"),
    ("dataset-truncated", ["dataset=npz", f"dataset.path={DATA}/truncated.npz"], "not a readable .npz file"),
    ("dataset-wrong-keys", ["dataset=npz", f"dataset.path={DATA}/wrong_keys.npz"], "x_test"),
    ("dataset-wrong-shapes", ["dataset=npz", f"dataset.path={DATA}/flat.npz"], "x_train"),
    ("dataset-length-mismatch", ["dataset=npz", f"dataset.path={DATA}/mismatch.npz"], "y_train"),
    ("dataset-labels-out-of-range", ["dataset=npz", f"dataset.path={DATA}/labels.npz", "dataset.num_classes=10"], "labels"),
    ("dataset-is-a-folder", ["dataset=npz", f"dataset.path={DATA}"], "dataset.path"),
    ("output-root-unwritable", [f"output_root={DATA}/readonly/out"], "output_root="),
    ("output-root-is-a-file", [f"output_root={DATA}/text.npz"], "output_root="),
    ("storage-unreachable", ["hydra.sweeper.storage=postgresql+psycopg://u:pw@127.0.0.1:1/db"],
     "hydra.sweeper.storage=postgresql+psycopg://u:***@127.0.0.1:1/db: cannot open it"),
    ("storage-not-a-url", ["hydra.sweeper.storage=not a url"], "hydra.sweeper.storage=not a url: not a database URL"),
    ("storage-unknown-driver", ["hydra.sweeper.storage=nosuchdb://x/y"], "hydra.sweeper.storage=nosuchdb://x/y"),
    ("storage-unopenable-file", ["hydra.sweeper.storage=sqlite:////proc/x.db"], "cannot open it"),
    ("direction-against-objective", ["objective=val_loss", "hydra.sweeper.direction=maximize"],
     "hydra.sweeper.direction=maximize: the objectives (val_loss) are to minimize"),
    ("study-of-another-experiment", [f"hydra.sweeper.study_name={STUDY}", "training.epochs=3"],
     "that study is another experiment; what differs (stored -> now):\n    training.epochs: 1 -> 3"),
    ("study-of-another-objective", [f"hydra.sweeper.study_name={STUDY}", "training.epochs=1", "objective=params",
                                    "hydra/sweeper/pruner=none"],
     "direction: maximize -> minimize"),
    ("consecutive-failures-zero", ["hydra.sweeper.max_consecutive_failures=0"],
     "hydra.sweeper.max_consecutive_failures=0: allowed is a whole number >= 1"),
    ("runpod-without-endpoint", ["executor=runpod"], "executor.endpoint_id"),
]
# The earlier sweep: what the hostile command lines repeat, but for what each breaks.
EARLIER = [*TINY_OVERRIDES, "training.epochs=1", "hydra.sweeper.n_trials=1"]


def corrupt_datasets(folder: Path) -> None:
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 255, (n, 8, 8), dtype=np.uint8)  # noqa: E731
    labels = lambda n: np.arange(n, dtype=np.uint8) % 10  # noqa: E731
    good = {"x_train": images(50), "y_train": labels(50), "x_test": images(20), "y_test": labels(20)}
    (folder / "text.npz").write_text("not an npz\n")
    np.savez(folder / "full.npz", **good)
    (folder / "truncated.npz").write_bytes((folder / "full.npz").read_bytes()[:300])
    np.savez(folder / "wrong_keys.npz", images=good["x_train"], labels=good["y_train"])
    np.savez(folder / "flat.npz", **{**good, "x_train": good["x_train"].reshape(-1)})
    np.savez(folder / "mismatch.npz", **{**good, "y_train": good["y_train"][:10]})
    np.savez(folder / "labels.npz", **{**good, "y_train": good["y_train"] + 200})
    readonly = folder / "readonly"
    readonly.mkdir()
    readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def only_study_name(root: Path) -> str:
    storage = optuna.storages.RDBStorage(f"sqlite:///{root}/optuna.db")
    study = optuna.get_all_study_names(storage=storage)[0]
    storage.engine.dispose()  # an open connection to a WAL database keeps its -wal and -shm files
    return study


def hostile_args(case: str, args: list[str], root: Path, data: Path) -> list[str]:
    """CLI_INPUTS' arguments with the placeholders filled in and the output folder added."""
    if case == "output-root-unwritable" and os.geteuid() == 0:
        args = ["output_root=/proc/cvsweep-out"]  # root may write anywhere but /proc
    args = [a.replace(DATA, str(data)).replace(STUDY, only_study_name(root)) for a in args]
    if not any(a.startswith("output_root=") for a in args):
        args.append(f"output_root={root}")
    return args


@pytest.fixture(scope="module")
def earlier_sweep(tmp_path_factory):
    """An output folder as a finished one-trial sweep leaves it: its study (made by the same
    checks, so it carries the experiment's identity) with a completed trial, the trial's folder
    and the sweep's files."""
    root = tmp_path_factory.mktemp("outputs")
    cfg = compose_sweep(*EARLIER, f"output_root={root}")
    check_sweep(cfg)
    storage = optuna.storages.RDBStorage(cfg.hydra.sweeper.storage)
    study = optuna.load_study(study_name=cfg.hydra.sweeper.study_name, storage=storage)
    study.tell(study.ask({"model.dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}), 0.5)
    storage.engine.dispose()
    sweep_dir = root / "sweeps" / "earlier"
    trial = layout.trial_dir(sweep_dir, 0)
    trial.mkdir(parents=True)
    layout.result_of(trial).write_text(json.dumps({"status": "completed", "metrics": {"val_accuracy": 0.5}}))
    (trial / layout.RUN_CONFIG).write_text("training:\n  epochs: 1\n")
    layout.summary_of(sweep_dir).write_text(json.dumps({"n_trials": 1, "n_completed": 1}))
    layout.report_of(sweep_dir).write_text("<html></html>\n")
    data = tmp_path_factory.mktemp("data")
    corrupt_datasets(data)
    return root, data, snapshot(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_readonly_folder_is_readonly_for_this_user(earlier_sweep):
    assert not os.access(earlier_sweep[1] / "readonly", os.W_OK)


def test_the_earlier_sweep_passes_the_same_checks(earlier_sweep, capsys):
    root, _, before = earlier_sweep
    assert as_the_command_checks([*EARLIER, f"output_root={root}"], capsys) == (0, "")
    assert snapshot(root) == before


@pytest.mark.parametrize("case, args, message", CLI_INPUTS, ids=[c[0] for c in CLI_INPUTS])
def test_hostile_command_lines_fail_before_a_trial_and_damage_nothing(earlier_sweep, case, args, message, capsys,
                                                                      monkeypatch):
    root, data, before = earlier_sweep
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    status, said = as_the_command_checks([*TINY_OVERRIDES, "hydra.sweeper.n_trials=1",
                                          *hostile_args(case, args, root, data)], capsys)
    assert status == EXIT_INVALID_CONFIG and said.startswith("cvsweep: "), said  # one line's way out, no crash
    assert message in said, said
    assert "Traceback" not in said
    assert snapshot(root) == before  # nothing earlier lost or changed, and nothing new written
