"""A data path inside the operator's data roots, accepted and swept by a real server process (the
refusals of every path outside them: tests/unit/service/test_service_hostile.py)."""

from __future__ import annotations

import pytest
from conftest import SENTINEL_API_KEY, ServiceProcess
from test_service_hostile import make_data_root

pytestmark = pytest.mark.slow  # a real sweep


def test_a_data_path_inside_the_roots_is_accepted(tmp_path_factory):
    data_root = make_data_root(tmp_path_factory)
    service = ServiceProcess(tmp_path_factory.mktemp("service") / "outputs", "--data-root", str(data_root),
                             env={"RUNPOD_API_KEY": SENTINEL_API_KEY, "AWS_SECRET_ACCESS_KEY": SENTINEL_API_KEY})
    try:
        response = service.post("/sweeps", json={"overrides": [
            "dataset=npz", f"dataset.path={data_root}/digits.npz", "dataset.num_classes=10", "model.conv_layers=1",
            "model.filters=8", "model.dense_layers=0", "training.epochs=1", "hydra.sweeper.n_trials=1", "plots=none"]})
        assert response.status_code == 201, response.text
        view = service.wait_for(response.json()["id"])
        assert view["status"] == "finished", view["reason"]
        assert view["best"]["config"]["dataset"]["path"] == f"{data_root}/digits.npz"
    finally:
        service.kill_sweeps()
        service.close()
