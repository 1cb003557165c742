"""One study per experiment: the default study name carries a hash of the experiment (fixed
settings and data, objectives and directions, search space), so a changed command never adds
its trials to another experiment's study; the direction follows from the objective."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from conftest import EPOCHS_1, as_the_command_checks, compose_sweep, copy_of, read_json, run_cli

from cvsweep.study.identity import IDENTITY_ATTR, differences, identity_of
from cvsweep.sweep.preflight import check_sweep


def settled(*overrides: str, root) -> tuple[str, list]:
    """The study name and direction the checks before a sweep settle on (no sweep runs)."""
    cfg = compose_sweep(*overrides, f"output_root={root}", "hydra.sweeper.storage=null")
    check_sweep(cfg)
    direction = cfg.hydra.sweeper.direction
    return cfg.hydra.sweeper.study_name, list(direction) if not isinstance(direction, str) else [direction]


def write_npz(path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    labels = lambda n: np.arange(n, dtype=np.uint8) % 10  # noqa: E731
    np.savez(path, x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y_train=labels(60),
             x_test=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), y_test=labels(20))
    return str(path)


def test_every_change_of_the_experiment_gets_its_own_study_name(tmp_path):
    a = write_npz(tmp_path / "a.npz", 0)
    variants = {
        "default": [],
        "epochs": ["training.epochs=2"],
        "proxy": ["sampling=proxy"],
        "objective": ["objective=val_loss"],
        "search space": ["model.filters=choice(8, 16)"],
        "search key fixed": ["model.filters=16"],
        "data a": ["dataset=npz", f"dataset.path={a}"],
    }
    names = {label: settled(*overrides, root=tmp_path)[0] for label, overrides in variants.items()}
    # Another file under the same name is another experiment (its sha256 is in the identity).
    write_npz(tmp_path / "a.npz", 1)
    names["data a, new content"] = settled("dataset=npz", f"dataset.path={a}", root=tmp_path)[0]
    assert names["default"].startswith("digits-cnn-cnn-") and len(names["default"]) == len("digits-cnn-cnn-") + 8
    assert len(set(names.values())) == len(names), names  # all different
    # The same experiment spelled differently is the same study.
    assert settled("training.learning_rate=1e-3", "training.epochs=3", root=tmp_path)[0] == \
        settled("training.epochs=3", "training.learning_rate=0.001", root=tmp_path)[0]


def test_the_direction_follows_from_the_objectives(tmp_path):
    assert settled(root=tmp_path)[1] == ["maximize"]
    assert settled("objective=val_loss", root=tmp_path)[1] == ["minimize"]
    assert settled("objective=health", "secondary_objectives=[params,latency_ms]", "hydra/sweeper/pruner=none",
                   root=tmp_path)[1] == ["maximize", "minimize", "minimize"]
    assert settled("objective=val_loss", "hydra.sweeper.direction=minimize", root=tmp_path)[1] == ["minimize"]


def test_differences_name_each_key_with_before_and_after():
    stored = identity_of(compose_sweep("training.epochs=1"))
    now = identity_of(compose_sweep("training.epochs=2", "objective=val_loss", "model.filters=choice(8, 16)"))
    assert differences(stored, now) == [
        "direction: maximize -> minimize",
        "objective: val_accuracy -> val_loss",
        "search model.filters: choice(8, 16, 32) -> choice(8, 16)",
        "training.epochs: 1 -> 2",
    ]


@pytest.mark.slow
def test_another_objective_never_joins_the_accuracy_study(epochs_1_sweep, tmp_path):
    """Reproduction 1: a val_loss sweep after an accuracy sweep used to add losses to the
    accuracy study (MAXIMIZE) and call its worst model best."""
    common = [*EPOCHS_1, f"output_root={copy_of(epochs_1_sweep, tmp_path)}"]  # the first sweep: conftest's
    second = run_cli("-m", "objective=val_loss", "hydra.sweeper.direction=minimize", *common)
    assert second.returncode == 0, second.stderr[-2000:]
    storage = f"sqlite:///{tmp_path}/optuna.db"
    studies = {name: optuna.load_study(study_name=name, storage=storage) for name in optuna.get_all_study_names(storage)}
    assert len(studies) == 2
    by_objective = {s.user_attrs[IDENTITY_ATTR]["objective"]: s for s in studies.values()}
    accuracy, loss = by_objective["val_accuracy"], by_objective["val_loss"]
    assert [d.name for d in accuracy.directions] == ["MAXIMIZE"] and [d.name for d in loss.directions] == ["MINIMIZE"]
    assert len(accuracy.trials) == 2 and len(loss.trials) == 2
    # The loss study's best is its lowest loss, and the summary says so.
    summary = read_json(sorted((tmp_path / "sweeps").iterdir())[-1] / "summary.json")
    assert summary["study"]["name"] == loss.study_name
    assert summary["study"]["best"][0]["values"] == [min(t.value for t in loss.trials)]


@pytest.mark.slow
def test_a_changed_fixed_setting_runs_its_own_trials(epochs_1_sweep, tmp_path, capsys):
    """Reproduction 2: training.epochs=2 after an epochs=1 sweep used to run nothing and call
    an epochs=1 trial best."""
    common = [*EPOCHS_1, f"output_root={copy_of(epochs_1_sweep, tmp_path)}"]  # the first sweep: conftest's
    proc = run_cli("-m", *common, "training.epochs=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = read_json(sorted((tmp_path / "sweeps").iterdir())[-1] / "summary.json")
    assert summary["n_completed"] == 2 and summary["best"]["config"]["training"]["epochs"] == 2
    assert "This run started no trial" not in proc.stdout
    # Named explicitly, the epochs=1 study refuses the epochs=2 command, before any trial.
    first_study = summary["study"]["name"]
    names = optuna.get_all_study_names(f"sqlite:///{tmp_path}/optuna.db")
    (epochs_1,) = [n for n in names if n != first_study]
    # (The command's checks in this process; through the real command: tests/e2e/test_hostile_cli.py.)
    status, said = as_the_command_checks([*common, "training.epochs=2", f"hydra.sweeper.study_name={epochs_1}"], capsys)
    assert status == 2
    assert "training.epochs: 1 -> 2" in said and "Traceback" not in said
    assert len(list((tmp_path / "sweeps").iterdir())) == 2  # no new sweep folder
