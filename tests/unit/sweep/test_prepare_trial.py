"""prepare, run, record: a trial's data is read once in the sweep process, for its identity
(the sha256 pinned into the run config) and its shape (the size check) together."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import compose

from cvsweep import layout
from cvsweep.data import sources
from cvsweep.sweep import trial


@pytest.fixture
def reads(monkeypatch) -> list:
    """Every read of a data file, counted at the loader's one way to read one."""
    counted, read = [], sources._read_data_file

    def counting(path, policy):
        counted.append(path)
        return read(path, policy)

    monkeypatch.setattr(sources, "_read_data_file", counting)
    return counted


def _npz(tmp_path) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 12, 12), dtype=np.uint8), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 256, (20, 12, 12), dtype=np.uint8), y_test=np.arange(20) % 10)
    return str(path)


def test_a_trial_over_max_params_reads_its_data_once(tmp_path, reads):
    cfg = compose("dataset=mnist", f"dataset.path={_npz(tmp_path)}")
    result = trial._prepare_and_run(cfg, tmp_path, {"max_params": 10}, prune=None)
    assert len(reads) == 1  # the sha256 and the shape from one read
    assert result["failure"]["code"] == "constraint" and result["metrics"]["params"] > 10
    written = yaml.safe_load((tmp_path / layout.RUN_CONFIG).read_text())
    assert written["dataset"]["sha256"] == result["config"]["dataset"]["sha256"] == sources.load_source(cfg.dataset).sha256


def test_prepare_gives_the_identity_and_shape_of_one_read(tmp_path, reads):
    cfg = compose("dataset=mnist", f"dataset.path={_npz(tmp_path)}")
    prepared = trial.prepare(cfg, {"max_params": 10**9})
    assert len(reads) == 1
    assert prepared.data.shape[:2] == (12, 12) and prepared.run_config["dataset"]["sha256"] == prepared.data.sha256
    assert trial.over_max_params(prepared, {"max_params": 10**9}) is None and len(reads) == 1


def test_a_download_is_not_read_to_learn_its_shape(monkeypatch, reads):
    monkeypatch.setattr(sources, "_load_keras", lambda *a: pytest.fail("downloaded"))
    prepared = trial.prepare(compose("dataset=mnist"), {"max_params": 10**9})
    assert reads == [] and prepared.data.shape == (28, 28, 1) and prepared.data.sha256 is None
    assert prepared.run_config["dataset"]["sha256"] is None
