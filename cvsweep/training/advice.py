"""Plain-language advice for a completed run, from its health scores and diagnostics: each item
says what looks wrong (``issue``), the recorded numbers that show it (``evidence``), and the
settings to try (``try``, as ``key=value`` overrides). A plain function of result.json, so a
local and a remote run get the same advice; train() stores it as ``health.advice``. A healthy
run gets none.

The rules (thresholds below):
- dead units: a layer whose units are constantly 0 on the health sample, DEAD_SHARE or more
  of them: a leakier activation, a lower learning rate;
- saturated units: constant at another value (tanh or ELU at a bound), SATURATED_SHARE or more:
  batch normalisation, a lower learning rate;
- vanishing / exploding gradients: GRADIENT_SHARE or more of the (layer, epoch) gradient norms
  below health.grad_vanishing_below / above health.grad_exploding_above (or not finite):
  batch normalisation and He initialisation / a lower learning rate and gradient clipping
  (training.clipnorm, when no clipping is set);
- unstable loss: training_stability below UNSTABLE_BELOW: a lower learning rate, larger batches;
- overfitting: train accuracy above validation accuracy by more than half of
  health.overfit_gap_tolerance in the last epoch: more dropout, augmentation, early stopping.
"""

from __future__ import annotations

import math

DEAD_SHARE = 0.4
SATURATED_SHARE = 0.4
GRADIENT_SHARE = 0.1
UNSTABLE_BELOW = 0.7
LAYERS_NAMED = 3  # at most this many layers named in one item's evidence


def advise(result: dict) -> list[dict]:
    """The advice for a completed run.

    Args:
        result: The completed run's result (config, diagnostics, health, metrics).

    Returns:
        ``{"issue", "evidence", "try"}`` items: stuck units, gradients, instability, overfitting.
    """
    config, diagnostics = result["config"], result["diagnostics"]
    return [
        *_stuck_units(diagnostics["activations"]["layers"], config),
        *_gradients(diagnostics["gradient_norms"], config),
        *_unstable(result["health"]["training_stability"], result["metrics"].get("history", {}), config),
        *_overfitting(result["metrics"].get("history", {}), config),
    ]


def _item(issue: str, evidence: str, settings: list[str]) -> dict:
    return {"issue": issue, "evidence": evidence, "try": [s for s in settings if s]}


def _lower_learning_rate(config: dict) -> str:
    return f"training.learning_rate={config['training']['learning_rate'] / 10:g}"


def _batch_norm(config: dict) -> str | None:
    """Batch normalisation where the model has the switch (the CNN) and it is off."""
    return "model.batch_norm=true" if config["model"].get("batch_norm") is False else None


def _stuck_units(layers: list[dict], config: dict) -> list[dict]:
    model, advice = config["model"], []
    samples = config["health"]["sample_size"]
    for layer in layers:
        name, units = layer.get("follows", layer["name"]), layer["units"]
        kind = "filters" if name.startswith("conv") else "units"
        dead, saturated = layer.get("dead", 0), layer.get("saturated", 0)
        if units and dead / units >= DEAD_SHARE:
            # A CNN's dense layers have their own activation setting (null: the conv layers').
            dense = name.startswith("dense") and "dense_activation" in model
            key = "model.dense_activation" if dense else "model.activation"
            current = (model["dense_activation"] if dense else None) or model["activation"]
            leaky = f"{key}=leaky_relu" if current == "relu" else None
            advice.append(_item(f"dead units in {name}",
                                f"{dead} of {units} {kind} ({dead / units:.0%}) never activate on {samples} validation images",
                                [leaky, _lower_learning_rate(config)]))
        if units and saturated / units >= SATURATED_SHARE:
            advice.append(_item(f"saturated units in {name}",
                                f"{saturated} of {units} {kind} ({saturated / units:.0%}) are stuck at one value on "
                                f"{samples} validation images", [_batch_norm(config), _lower_learning_rate(config)]))
    return advice


def _gradients(norms: dict, config: dict) -> list[dict]:
    health = config["health"]
    low, high = health["grad_vanishing_below"], health["grad_exploding_above"]
    values = [(layer, v) for layer, per_epoch in norms.items() for v in per_epoch]
    if not values:
        return []
    vanishing = [layer for layer, v in values if v is not None and math.isfinite(v) and v < low]
    exploding = [layer for layer, v in values if v is None or not math.isfinite(v) or v > high]
    advice = []
    if len(vanishing) / len(values) >= GRADIENT_SHARE:
        advice.append(_item("vanishing gradients", f"{len(vanishing)} of {len(values)} per-layer gradient norms "
                            f"(layer, epoch) below {low:g}, in {_named(vanishing)}",
                            [_batch_norm(config), "model.kernel_initializer=he_normal"]))
    if len(exploding) / len(values) >= GRADIENT_SHARE:
        training = config["training"]
        unclipped = "clipnorm" in training and training["clipnorm"] is None and training.get("clipvalue") is None
        clip = "training.clipnorm=1.0" if unclipped else None
        advice.append(_item("exploding gradients", f"{len(exploding)} of {len(values)} per-layer gradient norms "
                            f"(layer, epoch) above {high:g} or not finite, in {_named(exploding)}",
                            [_lower_learning_rate(config), clip, _batch_norm(config)]))
    return advice


def _named(layers: list[str]) -> str:
    distinct = list(dict.fromkeys(layers))
    more = f" and {len(distinct) - LAYERS_NAMED} more" if len(distinct) > LAYERS_NAMED else ""
    return ", ".join(distinct[:LAYERS_NAMED]) + more


def _unstable(stability: float, history: dict, config: dict) -> list[dict]:
    if stability >= UNSTABLE_BELOW:
        return []
    loss = [v for v in history.get("loss", []) if v is not None]
    rose = sum(b > a for a, b in zip(loss, loss[1:]))
    batch = config["training"]["batch_size"]
    return [_item("unstable training loss", f"training_stability {stability:.2f} (below {UNSTABLE_BELOW}); the "
                  f"training loss rose in {rose} of {max(len(loss) - 1, 0)} epochs",
                  [_lower_learning_rate(config), f"training.batch_size={batch * 2}"])]


def _overfitting(history: dict, config: dict) -> list[dict]:
    accuracy, val_accuracy = history.get("accuracy") or [None], history.get("val_accuracy") or [None]
    if accuracy[-1] is None or val_accuracy[-1] is None:
        return []
    gap, limit = accuracy[-1] - val_accuracy[-1], config["health"]["overfit_gap_tolerance"] / 2
    if gap <= limit:
        return []
    model, training = config["model"], config["training"]
    dropout = f"model.dropout={min(model['dropout'] + 0.2, 0.5):g}" if model["dropout"] < 0.5 else None
    augmentation = model.get("augmentation")  # images only; off: every setting 0 or "none"
    augment = ("model.augmentation.translation=0.1"
               if augmentation is not None and not any(v for v in augmentation.values() if v != "none") else None)
    stop = "training.early_stopping_patience=3" if training["early_stopping_patience"] == 0 else None
    return [_item("overfitting", f"train accuracy {accuracy[-1]:.3f} vs validation {val_accuracy[-1]:.3f} in the last "
                  f"epoch: a gap of {gap:.3f} (more than {limit:g})", [dropout, augment, stop])]
