"""Diagnostics of a training run, recorded as compact JSON-safe data (plots are drawn from it
later, wherever the run happened): per-layer gradient norms and weight changes per epoch,
final weight and bias distributions, the validation confusion matrix with per-class
precision and recall, an activation summary with neuron utilisation, activation maps of
every conv layer (dead and saturated channels named), and inference latency.

Gradients are taken in inference mode (dropout off, batch norm on its moving statistics), so
recording them draws no random numbers and leaves training exactly as it would be without.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from cvsweep.training.health import ALIVE_STD, neuron_utilisation
from cvsweep.training.result import finite_or_none

HISTOGRAM_BINS = 20


def _weighted_layers(model):
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def _kernel_and_bias(layer):
    kernel = layer.kernel.numpy()
    bias = layer.bias.numpy() if layer.bias is not None else None
    return kernel, bias


class TrainingRecorder(keras.callbacks.Callback):
    """At each epoch end: per-layer gradient norms on a fixed batch, and the change since the
    previous epoch: relative for kernels, RMS for biases."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self.x, self.y = tf.constant(x), tf.constant(y)
        self.loss = keras.losses.SparseCategoricalCrossentropy()
        self.gradient_norms: dict[str, list] = {}
        self.relative_change: dict[str, dict[str, list]] = {}
        self.weight_stats: dict[str, list] = {}

    def on_train_begin(self, logs=None):
        """Remember the starting weights and trace the gradient-norm pass once for the run.

        Args:
            logs: Keras's logs (unused).
        """
        self.previous = {layer.name: _kernel_and_bias(layer) for layer in _weighted_layers(self.model)}
        self.layers = [layer for layer in self.model.layers if layer.trainable_weights]
        # Traced once per run: run eagerly, the same pass cost more at every epoch end.
        self.squared_norms = tf.function(self._squared_norms)

    def _squared_norms(self):
        """Each trainable variable's squared gradient norm (0 where it gets no gradient)."""
        variables = [w for layer in self.layers for w in layer.trainable_weights]
        with tf.GradientTape() as tape:
            loss = self.loss(self.y, self.model(self.x, training=False))
        grads = tape.gradient(loss, variables)
        return [tf.reduce_sum(tf.square(g)) if g is not None else tf.constant(0.0) for g in grads]

    def on_epoch_end(self, epoch, logs=None):
        """Record this epoch's gradient norms, weight changes and weight statistics per layer.

        Args:
            epoch: The epoch's index (unused).
            logs: Keras's logs (unused).
        """
        squared = [float(v) for v in self.squared_norms()]
        start = 0
        for layer in self.layers:
            parts = squared[start:start + len(layer.trainable_weights)]
            start += len(layer.trainable_weights)
            self.gradient_norms.setdefault(layer.name, []).append(finite_or_none(math.sqrt(sum(parts))))
        for layer in _weighted_layers(self.model):
            kernel, bias = _kernel_and_bias(layer)
            old_kernel, old_bias = self.previous[layer.name]
            change = self.relative_change.setdefault(layer.name, {"kernel": [], "bias": []})
            change["kernel"].append(_relative(kernel, old_kernel))
            if bias is not None:  # biases start at 0: an absolute (RMS) change, not a relative one
                change["bias"].append(finite_or_none(np.sqrt(np.mean((bias - old_bias) ** 2))))
            self.weight_stats.setdefault(layer.name, []).append({
                "kernel_mean": finite_or_none(kernel.mean()), "kernel_std": finite_or_none(kernel.std()),
                "bias_mean": finite_or_none(bias.mean()) if bias is not None else None,
                "bias_std": finite_or_none(bias.std()) if bias is not None else None,
            })
            self.previous[layer.name] = (kernel, bias)


def _relative(new: np.ndarray, old: np.ndarray):
    return finite_or_none(np.linalg.norm(new - old) / (np.linalg.norm(old) + 1e-8))


def gradient_batch(splits, health_cfg, batch_size: int, seed: int):
    """The fixed, seeded training images whose gradients are recorded every epoch.

    Args:
        splits: The run's splits.
        health_cfg: The ``health`` config node (``gradient_batches``).
        batch_size: The training batch size.
        seed: The sample's seed.

    Returns:
        ``(x, y)``: at most ``gradient_batches * batch_size`` training examples, in order.
    """
    rng = np.random.default_rng(seed)
    size = min(len(splits.y_train), health_cfg.gradient_batches * batch_size)
    index = np.sort(rng.choice(len(splits.y_train), size=size, replace=False))
    return splits.x_train[index], splits.y_train[index]


def collect(model, splits, recorder: TrainingRecorder, health_cfg, num_classes: int, seed: int) -> dict:
    """Everything recorded after training (the model holds its final, or best, weights).

    Args:
        model: The trained model.
        splits: The run's splits (the validation set is predicted and sampled).
        recorder: The recorder that watched the fit.
        health_cfg: The ``health`` config node.
        num_classes: The number of classes.
        seed: The activation sample's seed.

    Returns:
        Gradient norms, relative changes, weight statistics and histograms, the validation
        confusion matrix, per-class precision/recall/support, and the activation summary.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = predict(model, splits.x_val).argmax(axis=1)
    labels = list(range(num_classes))
    precision, recall, _, support = precision_recall_fscore_support(
        splits.y_val, predicted, labels=labels, zero_division=0
    )
    rng = np.random.default_rng(seed)
    sample_index = np.sort(rng.choice(len(splits.y_val), size=min(health_cfg.sample_size, len(splits.y_val)), replace=False))
    activations = _activation_summary(model, splits.x_val[sample_index], health_cfg)
    return {
        "gradient_norms": recorder.gradient_norms,
        "relative_change": recorder.relative_change,
        "weight_stats": recorder.weight_stats,
        "weight_histograms": {layer.name: _histograms(layer) for layer in _weighted_layers(model)},
        "confusion_matrix": confusion_matrix(splits.y_val, predicted, labels=labels).tolist(),
        "per_class": {"precision": _rounded(precision), "recall": _rounded(recall), "support": support.tolist()},
        "activations": activations,
    }


# Every prediction here goes through predict_on_batch with batches of one shape: Keras traces
# its predict function once per trial (tracing costs more than predicting a validation set).
PREDICT_BATCH = 256


def predict(model, x: np.ndarray) -> np.ndarray:
    """The model's outputs for x, in batches of PREDICT_BATCH.

    The last batch is padded to that shape and the padding dropped, so Keras traces once.

    Args:
        model: The model.
        x: The inputs.

    Returns:
        The outputs, one row per input.
    """
    size = min(len(x), PREDICT_BATCH)
    outputs = []
    for start in range(0, len(x), size):
        batch = x[start:start + size]
        padded = np.concatenate([batch, np.zeros((size - len(batch), *x.shape[1:]), x.dtype)])
        outputs.append(np.asarray(model.predict_on_batch(padded))[: len(batch)])
    return np.concatenate(outputs)


def latency_ms(model, x: np.ndarray, repeats: int = 3) -> float:
    """Best of a few timed predictions on one batch, per image, after a warm-up.

    Args:
        model: The model.
        x: Inputs; at most PREDICT_BATCH of them are timed.
        repeats: How many timed predictions.

    Returns:
        Milliseconds per image.
    """
    batch = x[: min(len(x), PREDICT_BATCH)]
    model.predict_on_batch(batch)  # warm-up: tracing and allocation
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_on_batch(batch)
        best = min(best, time.perf_counter() - started)
    return round(best / len(batch) * 1000, 6)


def _activation_summary(model, sample: np.ndarray, health_cfg) -> dict:
    """Per activation layer: its units, the share alive, and how many are dead or saturated;
    activation maps of every conv layer, with its dead and saturated channels named."""
    # Activations after each nonlinearity, and the text model's recurrent state (every model
    # cvsweep builds has at least one of them).
    kinds = (keras.layers.Activation, keras.layers.LSTM, keras.layers.Bidirectional)
    layers = [layer for layer in model.layers if isinstance(layer, kinds)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = probe(tf.constant(sample), training=False)  # one call: no predict function to trace
    outputs = [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
    follows = _follows(model)
    per_layer, maps = [], []
    for layer, output in zip(layers, outputs):
        dead, saturated = stuck_units(output)
        per_layer.append({
            "name": layer.name, "follows": follows.get(layer.name, layer.name), "units": int(output.shape[-1]),
            "alive": float((output.reshape(-1, output.shape[-1]).std(axis=0) > ALIVE_STD).mean()),  # NaN: not alive
            "dead": len(dead), "saturated": len(saturated),
            "mean": finite_or_none(output.mean()), "mean_abs": finite_or_none(np.abs(output).mean()),
        })
        if output.ndim == 4:  # a conv layer's [images, height, width, channels]
            maps.append(_conv_maps(follows.get(layer.name, layer.name), output, dead, saturated, health_cfg))
    images = min(health_cfg.activation_images, len(sample)) if maps else 0
    inputs = [_quantised(_shrunk(sample[i][..., 0] if sample.shape[-1] == 1 else sample[i].mean(axis=-1), MAP_SIDE))
              for i in range(images)]
    return {"utilisation": neuron_utilisation(outputs), "layers": per_layer, "inputs": inputs, "maps": maps}


# Dead: constantly 0 over the sample (a ReLU that never fires); saturated: constant at another
# value (tanh or ELU at a bound, a unit stuck on its bias). Neither is alive (health.py).
def stuck_units(output: np.ndarray) -> tuple[list[int], list[int]]:
    """The dead and the saturated units of one layer's output over a sample.

    Args:
        output: The layer's output, [samples, ..., units].

    Returns:
        ``(dead, saturated)``: the indices of units constant at 0, and constant at another value.
    """
    per_unit = output.reshape(-1, output.shape[-1]).astype(np.float64)
    stuck = per_unit.std(axis=0) <= ALIVE_STD
    zero = np.abs(per_unit.mean(axis=0)) <= ALIVE_STD
    return np.flatnonzero(stuck & zero).tolist(), np.flatnonzero(stuck & ~zero).tolist()


def _follows(model) -> dict:
    """Each activation layer's name -> the conv, dense or recurrent layer whose output it is."""
    named, last = {}, None
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.LSTM, keras.layers.Bidirectional)):
            last = layer.name
        if isinstance(layer, keras.layers.Activation) and last is not None:
            named[layer.name] = last
    return named


# A conv layer's maps take at most this many values, whatever the image size and the
# health.activation_* settings: each map is subsampled to a side that fits (at most MAP_SIDE),
# so result.json stays small (it travels back from a remote worker).
MAP_SIDE = 32
MAP_VALUES_PER_LAYER = 16 * MAP_SIDE * MAP_SIDE


def _conv_maps(name: str, output: np.ndarray, dead: list[int], saturated: list[int], health_cfg) -> dict:
    images = min(health_cfg.activation_images, len(output))
    channels = list(range(min(health_cfg.activation_channels, output.shape[-1])))
    side = max(1, min(MAP_SIDE, int(math.sqrt(MAP_VALUES_PER_LAYER / max(1, images * len(channels))))))
    return {
        "layer": name, "units": int(output.shape[-1]), "dead": dead, "saturated": saturated, "channels": channels,
        "images": [[_quantised(_shrunk(output[i][..., c], side)) for c in channels] for i in range(images)],
    }


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    """Every step-th pixel, so that neither side exceeds ``side``."""
    step = max(1, math.ceil(max(image.shape) / side))
    return image[::step, ::step]


def _quantised(image: np.ndarray) -> list:
    """An image as 0-255 integers, scaled to its own range: small in JSON, enough to look at."""
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return np.round(scaled * 255).astype(np.uint8).tolist()


def _histograms(layer) -> dict:
    kernel, bias = _kernel_and_bias(layer)
    result = {}
    for name, values in (("kernel", kernel), ("bias", bias)):
        if values is None or not np.isfinite(values).all():
            continue
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        result[name] = {"counts": counts.tolist(), "edges": _rounded(edges)}
    return result


def _rounded(values) -> list:
    return [round(float(v), 6) for v in values]
