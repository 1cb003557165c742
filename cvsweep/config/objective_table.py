"""What a sweep can optimise: the one table the ``Objective`` choices, their directions, the
help page's list and the pruner's per-epoch metric come from (never the test set)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: which way it improves, what it measures, where a pruner and result.json
    find it."""

    direction: str  # which way it improves: the sweeper's direction must agree
    description: str
    # The epoch report's metric a pruner watches for it (cvsweep/study/pruning.py); None: the
    # objective is known before training or only after it, so nothing can be pruned on it.
    per_epoch: Optional[str] = None
    # The part of result.json that records it under the objective's name (metrics, or health).
    recorded_in: str = "metrics"


OBJECTIVES = {
    "val_accuracy": ObjectiveSpec("maximize", "validation accuracy", per_epoch="val_accuracy"),
    "val_loss": ObjectiveSpec("minimize", "validation loss", per_epoch="val_loss"),
    # Health is measured once, after training: per epoch, a pruner sees the objective with the
    # health part counted as 0 (cvsweep/config/objectives.py, epoch_value).
    "health": ObjectiveSpec("maximize", "(1 - health_weight) * val_accuracy + health_weight * overall_health",
                            per_epoch="val_accuracy"),
    "params": ObjectiveSpec("minimize", "the model's parameter count"),
    "latency_ms": ObjectiveSpec("minimize", "inference time per image (ms), measured on a batch of validation images"),
    "train_seconds": ObjectiveSpec("minimize", "wall-clock seconds of the fit"),
    # The training process's peak memory during the fit (cvsweep/training/memory.py says how).
    "peak_memory_mb": ObjectiveSpec("minimize", "peak memory of the fit (MB), TF allocator, GPU:0 or CPU:0"),
    # Health scores (cvsweep/training/health.py), named as result.json's health records them.
    "neuron_utilisation": ObjectiveSpec("maximize", "health score: share of units that activate",
                                        recorded_in="health"),
    "training_stability": ObjectiveSpec("maximize", "health score: steady loss and weight changes",
                                        recorded_in="health"),
    "gradient_health": ObjectiveSpec("maximize", "health score: share of gradient norms neither vanishing nor "
                                     "exploding", recorded_in="health"),
}
Objective = Enum("Objective", [(name, name) for name in OBJECTIVES], module=__name__)
