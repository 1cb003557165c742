"""``cvsweep evaluate`` compares a model's test figures with its record exactly: a
valid, consistent model file (its size and sha256 as recorded) whose recorded figures differ
from what it gives by a hundredth is reported as differing (exit 1), not called equal. One tiny
real training on digits, in this process."""

from __future__ import annotations

import pytest

from cvsweep.cli.main import main as cvsweep
from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.layout import MODEL, result_of
from cvsweep.training.artifact import sha256_of
from cvsweep.training.reevaluate import COMPARED
from cvsweep.training.train import train


@pytest.fixture(scope="module")
def trial_folder(tmp_path_factory):
    """A completed trial's folder as a local sweep leaves it: result.json and its model.keras."""
    from conftest import TINY_RUN

    folder = tmp_path_factory.mktemp("trial")
    result = train(TINY_RUN, model_dir=str(folder))
    assert result["status"] == "completed" and result["model"]["path"] == MODEL, result.get("reason")
    write_json_atomic(result_of(folder), result)
    return folder


def _figures(out: str) -> dict[str, list[str]]:
    """evaluate's table, by metric: recorded, now, verdict."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(COMPARED)}


def test_the_model_gives_its_recorded_figures_exactly(trial_folder, capsys):
    assert cvsweep(["evaluate", str(trial_folder)]) == 0
    recorded = read_json(result_of(trial_folder))["metrics"]
    assert _figures(capsys.readouterr().out) == {key: [repr(recorded[key])] * 2 + ["equal"] for key in COMPARED}


@pytest.mark.parametrize("key", COMPARED)
def test_recorded_figures_a_hundredth_off_are_reported_as_differing(key, trial_folder, tmp_path, capsys):
    folder = tmp_path / "trial"
    folder.mkdir()
    (folder / MODEL).write_bytes((trial_folder / MODEL).read_bytes())
    result = read_json(result_of(trial_folder))
    true_value = result["metrics"][key]
    result["metrics"][key] = true_value + 0.01
    write_json_atomic(result_of(folder), result)
    assert result["model"]["sha256"] == sha256_of(folder / MODEL)  # the model is valid and consistent

    assert cvsweep(["evaluate", str(folder)]) == 1
    captured = capsys.readouterr()
    assert _figures(captured.out)[key] == [repr(true_value + 0.01), repr(true_value), "DIFFERS"]
    assert "differ from the recorded ones" in captured.err
