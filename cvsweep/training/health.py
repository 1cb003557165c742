"""Training health scores, each in [0, 1] (1 is healthy), computed from a run's diagnostics.

Every score is a plain function of recorded numbers, so local and remote trials score alike
and a result can be re-scored later. The formulas (also in docs/guides/objectives.md):

- neuron_utilisation = alive units / all units of the conv and dense activations, on a fixed,
  seeded sample of validation images. A unit is alive when its activation varies across the
  sample (std > 1e-6): a dead ReLU is constantly 0, a saturated unit constantly at its bound.
- gradient_health = share of (layer, epoch) gradient norms inside
  [grad_vanishing_below, grad_exploding_above]; a NaN or infinite norm is outside.
- training_stability = geometric mean of three parts (one bad part pulls it down): trend (share of epochs whose training loss fell),
  smoothness 1 / (1 + std(delta loss) / mean(loss)), and parameter change (share of
  (layer, epoch) bias changes RMS(b_t - b_(t-1)) at most max_bias_change_per_epoch, and of
  relative kernel changes ||W_t - W_(t-1)|| / (||W_(t-1)|| + 1e-8) at most
  max_weight_change_per_epoch).
- convergence_quality = improvement * nearness, improvement = clip((loss_1 - loss_last) / loss_1,
  0, 1) of the training loss, nearness = min(val_loss) / val_loss_last (1: ended at its best).
- accuracy_consistency = max(0, 1 - std(val_accuracy over the last consistency_epochs) / 0.05).
- overfitting = max(0, 1 - gap / overfit_gap_tolerance), gap = max(0, train accuracy - val
  accuracy) in the last epoch.
- parameter_efficiency = val_accuracy * (1 - clip((log10(params) - 3) / 4, 0, 1)): full at 1k
  parameters or fewer, none at 10M.
- overall_health = weighted mean of the above with health.weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from cvsweep.config.schema import HealthWeights

ALIVE_STD = 1e-6
# One score per weight in health.weights.
SCORES = tuple(f.name for f in dataclasses.fields(HealthWeights))


def neuron_utilisation(activations: Iterable[np.ndarray]) -> float:
    """Share of units whose activation varies across the sample (std > ``ALIVE_STD``).

    Args:
        activations: One array per layer, [samples, ..., units] (units on the last axis).

    Returns:
        Alive units over all units; 0.0 without units.
    """
    alive = total = 0
    for layer in activations:
        per_unit = np.asarray(layer, dtype=np.float64).reshape(-1, layer.shape[-1])
        alive += int((per_unit.std(axis=0) > ALIVE_STD).sum())
        total += per_unit.shape[1]
    return alive / total if total else 0.0


def gradient_health(norms: Mapping[str, Sequence[Optional[float]]], vanishing_below: float, exploding_above: float) -> float:
    """Share of (layer, epoch) gradient norms inside ``[vanishing_below, exploding_above]``.

    Args:
        norms: Per layer, the gradient norm of each epoch (None or non-finite counts as outside).
        vanishing_below: Norms below it vanish.
        exploding_above: Norms above it explode.

    Returns:
        The score; 0.0 without norms.
    """
    values = [v for per_layer in norms.values() for v in per_layer]
    if not values:
        return 0.0
    healthy = [v is not None and math.isfinite(v) and vanishing_below <= v <= exploding_above for v in values]
    return sum(healthy) / len(healthy)


def training_stability(loss: Sequence[Optional[float]], relative_changes: Mapping[str, Mapping[str, Sequence[float]]],
                       max_bias_change: float, max_weight_change: float) -> float:
    """Geometric mean of the loss's trend and smoothness and the parameters' change.

    Args:
        loss: The training loss per epoch.
        relative_changes: Per layer, {"kernel": [relative], "bias": [RMS]} per epoch.
        max_bias_change: The largest bias change per epoch that counts as steady.
        max_weight_change: The largest relative kernel change per epoch that counts as steady.

    Returns:
        The score; 0.0 without a loss or with a missing or non-finite one.
    """
    if not loss or any(v is None or not math.isfinite(v) for v in loss):
        return 0.0
    loss = np.asarray(loss, dtype=np.float64)
    deltas = np.diff(loss)
    trend = float((deltas < 0).mean()) if len(deltas) else 1.0
    smoothness = 1.0 / (1.0 + float(deltas.std()) / max(float(loss.mean()), 1e-12)) if len(deltas) > 1 else 1.0
    within = []
    for changes in relative_changes.values():
        within += [c is not None and c <= max_bias_change for c in changes.get("bias", [])]
        within += [c is not None and c <= max_weight_change for c in changes.get("kernel", [])]
    change = sum(within) / len(within) if within else 1.0
    return (trend * smoothness * change) ** (1 / 3)


def convergence_quality(loss: Sequence[Optional[float]], val_loss: Sequence[Optional[float]]) -> float:
    """The training loss's relative improvement times how near val_loss ended to its best.

    Args:
        loss: The training loss per epoch.
        val_loss: The validation loss per epoch.

    Returns:
        The score; 0.0 when either is empty or has a missing epoch.
    """
    if not loss or not val_loss or any(v is None for v in (*loss, *val_loss)):
        return 0.0
    improvement = min(max((loss[0] - loss[-1]) / max(loss[0], 1e-12), 0.0), 1.0)
    nearness = min(val_loss) / val_loss[-1] if val_loss[-1] > 0 else 1.0
    return improvement * nearness


def accuracy_consistency(val_accuracy: Sequence[Optional[float]], last_epochs: int) -> float:
    """How steady val_accuracy was over the last epochs: ``max(0, 1 - std / 0.05)``.

    Args:
        val_accuracy: The validation accuracy per epoch.
        last_epochs: How many last epochs count.

    Returns:
        The score; 0.0 without values.
    """
    tail = [v for v in val_accuracy[-last_epochs:] if v is not None]
    if not tail:
        return 0.0
    return max(0.0, 1.0 - float(np.std(tail)) / 0.05)


def overfitting(accuracy: Sequence[Optional[float]], val_accuracy: Sequence[Optional[float]], tolerance: float) -> float:
    """``max(0, 1 - gap / tolerance)``, gap the last epoch's training minus validation accuracy.

    Args:
        accuracy: The training accuracy per epoch.
        val_accuracy: The validation accuracy per epoch.
        tolerance: The gap that scores 0.

    Returns:
        The score; 0.0 without a last value of each.
    """
    if not accuracy or not val_accuracy or accuracy[-1] is None or val_accuracy[-1] is None:
        return 0.0
    gap = max(0.0, accuracy[-1] - val_accuracy[-1])
    return max(0.0, 1.0 - gap / tolerance)


def parameter_efficiency(val_accuracy: float, params: int) -> float:
    """val_accuracy, less a penalty from 1k parameters (none) to 10M (all).

    Args:
        val_accuracy: The final validation accuracy.
        params: The model's parameter count.

    Returns:
        The score.
    """
    size_penalty = min(max((math.log10(max(params, 1)) - 3) / 4, 0.0), 1.0)
    return val_accuracy * (1.0 - size_penalty)


def scores(diagnostics: dict, metrics: dict, health_cfg) -> dict:
    """All health scores of a run, from its diagnostics and metrics, and their weighted mean.

    Args:
        diagnostics: The run's diagnostics (activations, gradient norms, relative changes).
        metrics: The run's metrics, with their ``history``.
        health_cfg: The ``health`` config node (thresholds and weights).

    Returns:
        Each score of ``SCORES`` and ``overall_health``, rounded to 6 places.
    """
    history = metrics.get("history", {})
    result = {
        "neuron_utilisation": diagnostics["activations"]["utilisation"],
        "gradient_health": gradient_health(
            diagnostics["gradient_norms"], health_cfg.grad_vanishing_below, health_cfg.grad_exploding_above
        ),
        "training_stability": training_stability(
            history.get("loss", []), diagnostics["relative_change"],
            health_cfg.max_bias_change_per_epoch, health_cfg.max_weight_change_per_epoch,
        ),
        "convergence_quality": convergence_quality(history.get("loss", []), history.get("val_loss", [])),
        "accuracy_consistency": accuracy_consistency(history.get("val_accuracy", []), health_cfg.consistency_epochs),
        "overfitting": overfitting(history.get("accuracy", []), history.get("val_accuracy", []),
                                   health_cfg.overfit_gap_tolerance),
        "parameter_efficiency": parameter_efficiency(metrics.get("val_accuracy") or 0.0, metrics.get("params", 1)),
    }
    weights = {name: float(health_cfg.weights[name]) for name in SCORES}
    total = sum(weights.values())
    result["overall_health"] = sum(weights[n] * result[n] for n in SCORES) / total if total else 0.0
    return {name: round(float(value), 6) for name, value in result.items()}
