"""train(): real training on digits, bit-identical reruns, failures reported, never raised."""

from __future__ import annotations

import json

import pytest

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import ConfigError
from cvsweep.training.train import train


@pytest.fixture(scope="module")
def first_run():
    from conftest import TINY_RUN

    return train(TINY_RUN)


def test_result_says_what_ran_where_and_how_well(first_run, tiny_run):
    result = first_run
    assert result["status"] == "completed" and result["reason"] is None
    assert result["fingerprint"] == fingerprint(result["config"])
    assert result["config"]["training"]["seed"] == 3 and result["config"]["model"]["activation"] == "relu"
    metrics = result["metrics"]
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert isinstance(metrics[key], float)
    assert metrics["val_accuracy"] > 0.3  # it learned: chance is 0.1 (two epochs of a tiny CNN)
    assert metrics["epochs_run"] == 2 and len(metrics["history"]["val_accuracy"]) == 2
    assert metrics["history"]["val_accuracy"][-1] == pytest.approx(metrics["val_accuracy"])
    assert result["data"] == {**result["data"], "train": 1293, "val": 144, "test": 360, "image_shape": [8, 8, 1]}
    assert result["executed_on"]["device"]["type"] in ("CPU", "GPU") and result["executed_on"]["hostname"]
    assert {"python", "keras", "numpy", "cvsweep"} <= set(result["versions"])
    assert "tensorflow" in result["versions"] or "tensorflow-cpu" in result["versions"]
    json.dumps(result, allow_nan=False)  # JSON-safe: no NumPy scalars, no NaN


def test_same_config_and_seed_give_bit_identical_results(first_run, tiny_run):
    again = train(tiny_run)
    assert again["metrics"]["history"] == first_run["metrics"]["history"]
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert again["metrics"][key] == first_run["metrics"][key]  # exact, not approx


def test_another_seed_gives_another_run(first_run, tiny_run):
    tiny_run["training"]["seed"] = 4
    other = train(tiny_run)
    assert other["fingerprint"] != first_run["fingerprint"]
    assert other["metrics"]["history"] != first_run["metrics"]["history"]


def test_cosine_schedule_decays_the_learning_rate_to_zero(first_run, tiny_run):
    tiny_run["training"]["lr_schedule"] = "cosine"
    cosine = train(tiny_run)
    rate = cosine["config"]["training"]["learning_rate"]
    assert first_run["metrics"]["history"]["learning_rate"] == pytest.approx([rate, rate])  # constant
    # Keras's CosineDecay over both epochs: half the rate after one epoch, zero after the last.
    assert cosine["metrics"]["history"]["learning_rate"] == pytest.approx([rate / 2, 0.0], abs=1e-6)
    assert cosine["fingerprint"] != first_run["fingerprint"]
    assert cosine["metrics"]["history"]["loss"] != first_run["metrics"]["history"]["loss"]


def test_divergence_is_a_failed_result_not_an_exception(tiny_run):
    tiny_run["dataset"]["pixel_scale"] = 1e-30  # inputs near 1e31: activations overflow
    result = train(tiny_run)
    assert result["status"] == "failed" and result["infeasible"] is True
    assert result["reason"].startswith("diverged: training loss became NaN or infinite")
    json.dumps(result, allow_nan=False)


def test_time_budget_overrun_is_a_failed_result(tiny_run):
    tiny_run["training"].update(time_budget_s=0.05, epochs=500)
    result = train(tiny_run)
    assert result["status"] == "failed" and result["infeasible"] is True
    assert result["reason"].startswith("time budget exceeded: training.time_budget_s=0.05")
    assert result["metrics"]["epochs_run"] < 500


def test_impossible_model_is_a_failed_result(tiny_run):
    tiny_run["model"].update(conv_layers=4, padding="valid")
    result = train(tiny_run)
    assert result["status"] == "failed" and result["infeasible"] is True and "a 8x8 image is used up" in result["reason"]


def test_invalid_config_is_refused_before_any_work(tiny_run):
    tiny_run["training"]["epochs"] = -1
    with pytest.raises(ConfigError, match=r"training.epochs=-1: allowed is \[1, 10000\]"):
        train(tiny_run)
