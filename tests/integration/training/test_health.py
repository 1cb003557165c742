"""Health scores on crafted cases: real networks, real training, the formulas of cvsweep/training/health.py."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import TINY_RUN

from cvsweep.training import health
from cvsweep.training.train import train


def test_formulas_on_known_numbers():
    assert health.neuron_utilisation([np.zeros((5, 4)), np.arange(10.0).reshape(5, 2)]) == pytest.approx(2 / 6)
    norms = {"a": [1e-9, 0.1, 1e3], "b": [None, 1.0, math.inf]}
    assert health.gradient_health(norms, 1e-5, 1e2) == pytest.approx(2 / 6)
    assert health.overfitting([0.99], [0.89], tolerance=0.2) == pytest.approx(0.5)
    assert health.overfitting([0.80], [0.85], tolerance=0.2) == 1.0
    assert health.parameter_efficiency(0.9, 1_000) == pytest.approx(0.9)
    assert health.parameter_efficiency(0.9, 10_000_000) == 0.0
    assert health.convergence_quality([2.0, 1.0], [1.0, 0.5, 1.0]) == pytest.approx(0.5 * 0.5)
    assert health.accuracy_consistency([0.9, 0.9, 0.9], 3) == 1.0
    assert health.training_stability([1.0, float("nan")], {}, 0.1, 0.5) == 0.0
    steady = health.training_stability([1.0, 0.8, 0.6, 0.4], {"l": {"kernel": [0.1] * 3, "bias": [0.01] * 3}}, 0.1, 0.5)
    jumpy = health.training_stability([1.0, 5.0, 0.5, 4.0], {"l": {"kernel": [9.0] * 3, "bias": [1.0] * 3}}, 0.1, 0.5)
    assert steady > 0.9 and jumpy < 0.1


def test_dead_relus_score_low_on_utilisation():
    """The same real CNN, before and after pushing every bias far below zero."""
    import keras

    from cvsweep.config.validate import load_run_config
    from cvsweep.models import architectures as models
    from cvsweep.training import diagnostics

    cfg = load_run_config(copy.deepcopy(TINY_RUN))
    keras.utils.set_random_seed(0)
    model = models.build(cfg, (8, 8, 1))
    images = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    alive = diagnostics._activation_summary(model, images, cfg.health)["utilisation"]
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.bias is not None:
            layer.bias.assign(np.full(layer.bias.shape, -100.0, dtype="float32"))
    dead = diagnostics._activation_summary(model, images, cfg.health)
    assert alive > 0.9 and dead["utilisation"] == 0.0
    conv = dead["layers"][0]
    assert conv["follows"] == model.layers[0].name and conv["dead"] == conv["units"] == 8 and conv["saturated"] == 0
    assert dead["maps"][0]["dead"] == list(range(8))


def test_units_stuck_at_a_bound_are_saturated_not_dead():
    """tanh with every bias far above zero: constantly 1, so neither alive nor dead."""
    import keras

    from cvsweep.config.validate import load_run_config
    from cvsweep.models import architectures as models
    from cvsweep.training import diagnostics

    run = copy.deepcopy(TINY_RUN)
    run["model"].update(activation="tanh", conv_layers=2)
    cfg = load_run_config(run)
    keras.utils.set_random_seed(0)
    model = models.build(cfg, (8, 8, 1))
    conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    conv[1].bias.assign(np.full(conv[1].bias.shape, 100.0, dtype="float32"))
    images = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    summary = diagnostics._activation_summary(model, images, cfg.health)
    first, second = summary["maps"]  # every conv layer's maps, each with its flags
    assert (first["layer"], first["dead"], first["saturated"]) == (conv[0].name, [], [])
    assert (second["layer"], second["dead"], second["saturated"]) == (conv[1].name, [], list(range(16)))
    assert len(summary["inputs"]) == len(first["images"]) == cfg.health.activation_images
    assert [len(per_image) for per_image in second["images"]] == [cfg.health.activation_channels] * 2


@pytest.fixture(scope="module")
def healthy_and_huge_lr():
    healthy = copy.deepcopy(TINY_RUN)
    healthy["model"].update(conv_layers=2, filters=16, dense_layers=1)
    healthy["training"].update(epochs=12)
    huge = copy.deepcopy(TINY_RUN)
    huge["training"].update(epochs=6, optimizer="sgd", learning_rate=10.0)
    return train(healthy), train(huge)


@pytest.mark.slow
def test_a_healthy_small_cnn_on_digits_scores_high(healthy_and_huge_lr):
    scores = dict(healthy_and_huge_lr[0]["health"])
    assert scores.pop("advice") == []  # nothing to advise on a healthy run
    assert set(scores) == {*health.SCORES, "overall_health"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["overall_health"] > 0.85
    assert scores["gradient_health"] > 0.9 and scores["training_stability"] > 0.85


def test_a_huge_learning_rate_scores_low_on_stability_and_gradients(healthy_and_huge_lr):
    healthy, huge = (r["health"] for r in healthy_and_huge_lr)
    assert huge["training_stability"] < 0.7 and huge["training_stability"] < healthy["training_stability"] - 0.2
    assert huge["gradient_health"] <= 0.5 and huge["gradient_health"] < healthy["gradient_health"] - 0.4
    assert huge["neuron_utilisation"] < 0.2  # the ReLUs died
    assert huge["overall_health"] < healthy["overall_health"] - 0.25


def test_diagnostics_are_compact_json(healthy_and_huge_lr):
    import json

    result = healthy_and_huge_lr[0]
    diagnostics = result["diagnostics"]
    assert set(diagnostics) >= {"gradient_norms", "relative_change", "weight_histograms", "confusion_matrix",
                                "per_class", "activations"}
    matrix = np.array(diagnostics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == result["data"]["val"]
    assert all(len(v) == result["metrics"]["epochs_run"] for v in diagnostics["gradient_norms"].values())
    assert len(json.dumps(result)) < 64 * 1024


def test_advice_names_the_dead_layer_the_gradients_and_the_unstable_loss(healthy_and_huge_lr):
    huge = healthy_and_huge_lr[1]
    by_issue = {item["issue"]: item for item in huge["health"]["advice"]}
    assert set(by_issue) >= {"dead units in conv2d", "vanishing gradients", "unstable training loss"}, by_issue
    dead = by_issue["dead units in conv2d"]
    assert dead["evidence"] == "8 of 8 filters (100%) never activate on 256 validation images"
    assert dead["try"] == ["model.activation=leaky_relu", "training.learning_rate=1"]  # from 10
    assert "conv2d" in by_issue["vanishing gradients"]["evidence"]
    assert by_issue["unstable training loss"]["try"] == ["training.learning_rate=1", "training.batch_size=128"]


def test_advice_on_an_overfitting_gap_and_exploding_gradients(healthy_and_huge_lr):
    """The healthy run's real result, with the numbers a sick run would have recorded."""
    from cvsweep.training.advice import advise

    result = copy.deepcopy(healthy_and_huge_lr[0])
    assert advise(result) == []
    history = result["metrics"]["history"]
    history["accuracy"][-1], history["val_accuracy"][-1] = 1.0, 0.8
    result["config"]["model"]["dropout"] = 0.1
    result["config"]["training"]["early_stopping_patience"] = 0
    layer = next(iter(result["diagnostics"]["gradient_norms"]))
    result["diagnostics"]["gradient_norms"][layer] = [None] + [1e4] * (result["metrics"]["epochs_run"] - 1)
    by_issue = {item["issue"]: item for item in advise(result)}
    assert set(by_issue) == {"overfitting", "exploding gradients"}
    assert by_issue["overfitting"]["try"] == ["model.dropout=0.3", "model.augmentation.translation=0.1",
                                              "training.early_stopping_patience=3"]
    assert "gap of 0.200" in by_issue["overfitting"]["evidence"]
    assert by_issue["exploding gradients"]["evidence"].endswith(f"above 100 or not finite, in {layer}")
    assert by_issue["exploding gradients"]["try"] == ["training.learning_rate=0.0001", "training.clipnorm=1.0",
                                                      "model.batch_norm=true"]
