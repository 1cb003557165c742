"""The result comparison command, and the worker image's recipe against the repository."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, TINY_RUN
from cvsweep.compare import explain
from cvsweep.train import train


@pytest.fixture(scope="module")
def result():
    return train(copy.deepcopy(TINY_RUN))


def _compare(tmp_path, a, b):
    paths = []
    for name, data in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(data))
        paths.append(str(tmp_path / name))
    return subprocess.run([sys.executable, "-m", "cvsweep.compare", *paths], cwd=REPO, capture_output=True, text=True)


def test_identical_results_compare_equal(result, tmp_path):
    proc = _compare(tmp_path, result, copy.deepcopy(result))
    assert proc.returncode == 0 and "metrics: bit-identical" in proc.stdout and "fingerprint: same" in proc.stdout


def test_differences_are_explained_config_first(result, tmp_path):
    other = copy.deepcopy(result)
    other["config"]["training"]["seed"] = 99
    other["versions"]["numpy"] = "0.0.1"
    other["executed_on"]["device"] = {"type": "GPU", "name": "NVIDIA H200", "count": 1}
    other["metrics"]["history"]["loss"][1] += 1e-7
    lines, identical = explain(result, other)
    assert not identical
    text = "\n".join(lines)
    assert text.index("config differs") < text.index("versions differs") < text.index("device differs")
    assert "training.seed: 3 -> 99" in text and "history.loss first differs in epoch 2" in text
    assert _compare(tmp_path, result, other).returncode == 1


def test_dockerfile_copies_only_what_exists_and_pins_like_ci():
    dockerfile = (REPO / "remote" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    uv_pin = re.search(r"uv==([\d.]+)", dockerfile).group(1)
    assert f"uv=={uv_pin}" in (REPO / ".ci" / "run").read_text()
    assert "--extra gpu" in dockerfile and 'CMD ["python", "-u", "remote/handler.py"]' in dockerfile
