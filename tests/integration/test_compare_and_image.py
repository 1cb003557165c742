"""The result comparison command, and the worker image's recipe against the repository."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, TINY_RUN

from cvsweep.reporting.result_diff import COMPARED, explain, is_timing, without_timings
from cvsweep.training.train import train


@pytest.fixture(scope="module")
def result():
    return train(copy.deepcopy(TINY_RUN))


def _compare(tmp_path, a, b):
    paths = []
    for name, data in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(data))
        paths.append(str(tmp_path / name))
    return subprocess.run([sys.executable, "-m", "cvsweep", "compare", *paths], cwd=REPO, capture_output=True, text=True)


@pytest.mark.slow
def test_identical_results_compare_equal(result, tmp_path):
    proc = _compare(tmp_path, result, copy.deepcopy(result))
    assert proc.returncode == 0 and "metrics: bit-identical" in proc.stdout and "fingerprint: same" in proc.stdout


@pytest.fixture(scope="module")
def rerun():
    """The same config trained again: what a trial and its fallback rerun are."""
    return train(copy.deepcopy(TINY_RUN))


def test_two_real_runs_of_one_config_compare_identical(result, rerun, tmp_path):
    proc = _compare(tmp_path, result, rerun)
    assert proc.returncode == 0, proc.stdout
    assert "metrics: bit-identical" in proc.stdout


def test_a_real_metric_change_is_reported(result, tmp_path):
    other_seed = copy.deepcopy(TINY_RUN)
    other_seed["training"]["seed"] = 4
    proc = _compare(tmp_path, result, train(other_seed))
    assert proc.returncode == 1
    assert "metrics differ:" in proc.stdout and "val_loss:" in proc.stdout


def _leaves(data, path=()):
    """(path, value) of every leaf, through dicts and lists."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for index, value in enumerate(data):
            yield from _leaves(value, (*path, index))
    else:
        yield path, data


def test_the_timing_rule_covers_every_timing_a_real_result_has(result, rerun):
    # What differs between two runs of one config is timing, and the rule must drop all of it.
    for part in COMPARED:
        first, second = dict(_leaves(result[part])), dict(_leaves(rerun[part]))
        varying = {path for path in first.keys() | second.keys() if first.get(path) != second.get(path)}
        assert all(any(is_timing(key) for key in path if isinstance(key, str)) for path in varying), (part, varying)
        assert without_timings(result[part]) == without_timings(rerun[part]), part
    # And it drops exactly the timings: every key train() writes that measures time, nothing else.
    dropped = {path for part in COMPARED for path, _ in _leaves({part: result[part]})
               if any(is_timing(key) for key in path if isinstance(key, str))}
    assert dropped == {("metrics", "train_seconds"), ("metrics", "evaluate_seconds"), ("metrics", "latency_ms"),
                       ("metrics", "peak_memory_mb"), ("metrics", "peak_rss_mb")}


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
    assert "--require-hashes --no-deps" in dockerfile and "-r remote/requirements.lock" in dockerfile
    assert 'CMD ["python", "-u", "remote/handler.py"]' in dockerfile


def _locked() -> dict[str, tuple[str, list[str]]]:
    """remote/requirements.lock as {name: (version, hashes)}."""
    text = (REPO / "remote" / "requirements.lock").read_text()
    locked = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        name, version = re.match(r"([A-Za-z0-9_.\-]+)==([^ ;\\]+)", entry).groups()
        locked[name.lower().replace("_", "-")] = (version, re.findall(r"--hash=sha256:[0-9a-f]{64}", entry))
    return locked


def test_the_worker_lock_matches_pyproject_and_is_hashed_without_addresses():
    """The image installs remote/requirements.lock with hashes required: it must hold every pin
    of pyproject.toml (dependencies, the gpu extra, uv's overrides) at the same version, a hash
    for every package, and no download address (uv.lock, which records them, stays ignored)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["gpu"],
            *project["tool"]["uv"]["override-dependencies"]]
    locked = _locked()
    for pin in pins:
        name, version = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^]]*\])?==(\S+)", pin).groups()
        assert locked.get(name.lower().replace("_", "-"), (None,))[0] == version, (
            f"{pin}: remote/requirements.lock has {locked.get(name.lower())}; refresh it (see remote/Dockerfile)")
    assert "nvidia-cudnn-cu12" in locked  # the gpu extra's CUDA libraries are in it
    assert all(hashes for _, hashes in locked.values())
    text = (REPO / "remote" / "requirements.lock").read_text()
    assert "://" not in text and "--index-url" not in text
