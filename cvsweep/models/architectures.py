"""The models a run config names: ``build(cfg, input_shape)`` makes the Keras model for
``model.architecture``.

- cnn: conv blocks (optional seeded augmentation in front), a head (flatten or global
  pooling), then the classifier head;
- lstm, the text model: token embedding (0 pads, masked), an LSTM
  (optionally bidirectional), then the classifier head.

The classifier head (dense layers with dropout before each, dropout, a softmax output in
float32 under any training.precision) ends both. ``conv_output_size``, ``conv_filters`` and
``dense_widths`` are plain arithmetic, so a config can be checked against an image size and
its size limits before TensorFlow is imported (preflight, cvsweep/models/size.py).
"""

from __future__ import annotations

import math

from cvsweep.config.schema import Architecture, Flip, Head, Padding, Pooling
from cvsweep.errors import CvsweepError


class ModelError(CvsweepError, ValueError):
    """A model config that cannot be built for the data's image size."""


def build(cfg, input_shape: tuple[int, ...]):
    """The Keras model for run config ``cfg`` and one example's shape.

    The schema has already refused a model that does not fit the data's kind.

    Args:
        cfg: The run config (model, dataset.num_classes, training.seed; for the LSTM
            dataset.vocab_size).
        input_shape: One example's shape: [h, w, c] for images, [sequence_length] for text.

    Returns:
        The model, not yet compiled.
    """
    num_classes, seed = cfg.dataset.num_classes, cfg.training.seed
    if cfg.model.architecture == Architecture.lstm:
        return _lstm(cfg.model, input_shape, cfg.dataset.vocab_size, num_classes, seed)
    return _cnn(cfg.model, input_shape, num_classes, seed)


def conv_filters(model, layer: int) -> int:
    """The filters of conv layer ``layer``: ``round(filters * filter_growth**layer)``, at least 1.

    Args:
        model: The CNN's model config.
        layer: The conv layer's index, from 0.

    Returns:
        The number of filters.
    """
    return max(1, round(model.filters * model.filter_growth**layer))


def dense_widths(model) -> list[int]:
    """Units of each dense layer: dense_units, then each next round(previous * dense_units_decay), at least 1.

    Args:
        model: The model config.

    Returns:
        One width per dense layer.
    """
    widths = []
    for _ in range(model.dense_layers):
        widths.append(max(1, round(widths[-1] * model.dense_units_decay)) if widths else model.dense_units)
    return widths


def dropout_rates(model) -> list[float]:
    """The dropout rate before each dense layer and, last, before the output layer.

    The first is dropout, each next the previous times dropout_decay.

    Args:
        model: The model config.

    Returns:
        ``dense_layers + 1`` rates.
    """
    return [model.dropout * model.dropout_decay**layer for layer in range(model.dense_layers + 1)]


def conv_output_size(model, image_size: int) -> int:
    """Side length of the last feature map.

    Args:
        model: The CNN's model config.
        image_size: The input image's side.

    Returns:
        The side after every conv layer and pooling.

    Raises:
        ModelError: When a layer would shrink it to 0.
    """
    size = image_size
    for layer in range(model.conv_layers):
        if model.padding == Padding.valid:
            size -= model.kernel_size - 1
        if size >= 1 and model.pooling != Pooling.none:
            size = size // 2 if model.padding == Padding.valid else math.ceil(size / 2)
        if size < 1:
            raise ModelError(
                f"model.conv_layers={model.conv_layers}: a {image_size}x{image_size} image is used "
                f"up after {layer + 1} conv layer(s) (kernel_size={model.kernel_size}, "
                f"padding={model.padding.name}, pooling={model.pooling.name}); use fewer conv "
                "layers, padding=same or a smaller kernel"
            )
    return size


def _cnn(model, input_shape: tuple[int, ...], num_classes: int, seed: int):
    import keras
    from keras import layers

    conv_output_size(model, min(input_shape[0], input_shape[1]))
    init = model.kernel_initializer.name
    pool = {Pooling.max: layers.MaxPooling2D, Pooling.avg: layers.AveragePooling2D}.get(model.pooling)
    pool_padding = "valid" if model.padding == Padding.valid else "same"

    net = [keras.Input(shape=input_shape), *_augmentation(model.augmentation, seed)]
    for layer in range(model.conv_layers):
        net.append(
            layers.Conv2D(
                conv_filters(model, layer), model.kernel_size, padding=model.padding.name,
                kernel_initializer=init, use_bias=not model.batch_norm,
            )
        )
        if model.batch_norm:
            net.append(layers.BatchNormalization())
        net.append(layers.Activation(model.activation.name))
        if pool is not None:
            net.append(pool(pool_size=2, padding=pool_padding))
    net.append(
        {
            Head.flatten: layers.Flatten,
            Head.global_avg: layers.GlobalAveragePooling2D,
            Head.global_max: layers.GlobalMaxPooling2D,
        }[model.head]()
    )
    dense_activation = model.dense_activation or model.activation
    return keras.Sequential(net + _classifier_head(model, num_classes, dense_activation), name="cvsweep_cnn")


def _lstm(model, input_shape: tuple[int, ...], vocab_size: int, num_classes: int, seed: int):
    """Inputs are padded token matrices: [N, sequence_length] token ids, 0 pads."""
    import keras
    from keras import layers

    recurrent = layers.LSTM(model.lstm_units, recurrent_dropout=model.recurrent_dropout, seed=seed)
    net = [
        keras.Input(shape=tuple(input_shape), dtype="int32"),
        layers.Embedding(vocab_size, model.embedding_dim, mask_zero=True),
        layers.Bidirectional(recurrent) if model.bidirectional else recurrent,
    ]
    return keras.Sequential(net + _classifier_head(model, num_classes, model.activation), name="cvsweep_lstm")


def _classifier_head(model, num_classes: int, activation) -> list:
    """Dense layers with dropout before each, dropout, then the softmax output."""
    from keras import layers

    init = model.kernel_initializer.name
    net = []
    rates = dropout_rates(model)
    for units, rate in zip(dense_widths(model), rates):
        if rate > 0:
            net.append(layers.Dropout(rate))
        net.append(layers.Dense(units, kernel_initializer=init))
        net.append(layers.Activation(activation.name))
    if rates[-1] > 0:
        net.append(layers.Dropout(rates[-1]))
    # float32 whatever the precision policy: a softmax in 16 bits is not numerically stable
    # (Keras's mixed precision guide).
    net.append(layers.Dense(num_classes, activation="softmax", kernel_initializer=init, dtype="float32"))
    return net


def _augmentation(augmentation, seed: int) -> list:
    """Keras's random preprocessing layers, seeded: active in fit() only, the same on CPU and GPU."""
    from keras import layers

    steps = []
    if augmentation.flip != Flip.none:
        steps.append(layers.RandomFlip(augmentation.flip.name, seed=seed))
    if augmentation.rotation:
        steps.append(layers.RandomRotation(augmentation.rotation, seed=seed))
    if augmentation.zoom:
        steps.append(layers.RandomZoom(augmentation.zoom, seed=seed))
    if augmentation.translation:
        steps.append(layers.RandomTranslation(augmentation.translation, augmentation.translation, seed=seed))
    return steps
