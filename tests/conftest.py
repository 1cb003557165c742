"""Shared helpers: the real CLI in a subprocess, Hydra's compose API, a tiny real run config."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
# The real MNIST shipped beside the checkout (see ../shared/data/README.md).
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"

# A real run on sklearn's digits that trains in about a second.
TINY_RUN = {
    "dataset": {"name": "digits", "path": None, "num_classes": 10, "pixel_scale": 16.0, "test_fraction": 0.2},
    "model": {"conv_layers": 1, "filters": 8, "dense_layers": 0, "dropout": 0.1},
    "sampling": {"strategy": "full", "fraction": 1.0},
    "training": {"epochs": 2, "batch_size": 64, "seed": 3},
}
# The same, as command-line overrides, for the end-to-end tests.
TINY_OVERRIDES = ["model.conv_layers=1", "model.filters=8", "model.dense_layers=0", "training.epochs=2", "training.batch_size=64"]


@pytest.fixture
def tiny_run() -> dict:
    return copy.deepcopy(TINY_RUN)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m cvsweep ARGS`` in a fresh interpreter, from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "cvsweep", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def compose(*overrides: str):
    """The config Hydra composes for these overrides (hydra node included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cvsweep.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def read_json(path: Path):
    return json.loads(Path(path).read_text())
