"""How big a model is before it is built: parameters and the activation memory of one
training batch, in plain arithmetic (no TensorFlow), so that preflight and train() can refuse
a model over ``training.max_params`` / ``training.max_activation_mb`` before building it. A
schema-valid CNN can have billions of parameters (8 conv layers of 1024 filters growing x4);
building one would exhaust the memory of the machine, or the GPU, instead of failing cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvsweep.config.datasets import REGISTRY, Kind, kind_of, known_shape
from cvsweep.config.schema import Architecture, ConfigError, DataLocation, Head, Padding, Pooling
from cvsweep.data.source_identity import identify
from cvsweep.data.sources import DataError, settle_num_classes
from cvsweep.models.architectures import ModelError, conv_filters, conv_output_size, dense_widths

FLOAT_BYTES = 4  # float32
# Stored per activation element in training: the forward value and its gradient.
TRAINING_COPIES = 2


@dataclass(frozen=True)
class ModelSize:
    """A model's parameter count and one training batch's activation memory."""

    params: int
    activation_bytes: int  # one training batch's activations, forward and backward

    @property
    def activation_mb(self) -> float:
        """One training batch's activations, in MiB."""
        return self.activation_bytes / 2**20


def estimate(cfg, input_shape: tuple[int, ...]) -> ModelSize:
    """A model's size, counted from its config without building it.

    Counts the layers cvsweep/models/architectures.py builds.

    Args:
        cfg: A run config (DictConfig).
        input_shape: One example's shape ([h, w, c] for images, [sequence_length] for text).

    Returns:
        Its parameters and one training batch's activation bytes.

    Raises:
        ModelError: When the images are used up before the last conv layer.
    """
    model, classes = cfg.model, cfg.dataset.num_classes
    if model.architecture == Architecture.lstm:
        params, per_example, width = _lstm(model, cfg.dataset.vocab_size or 1, input_shape[0])
    else:
        params, per_example, width = _cnn(model, input_shape)
    for units in dense_widths(model):
        params += width * units + units
        per_example += 2 * units  # dense, activation
        width = units
    params += width * classes + classes
    per_example += classes
    return ModelSize(int(params), int(per_example * cfg.training.batch_size * FLOAT_BYTES * TRAINING_COPIES))


def _cnn(model, input_shape) -> tuple[int, int, int]:
    height, width, channels = input_shape[0], input_shape[1], input_shape[2] if len(input_shape) > 2 else 1
    conv_output_size(model, min(height, width))  # raises ModelError for an impossible model
    params, per_example = 0, height * width * channels
    for layer in range(model.conv_layers):
        filters = conv_filters(model, layer)
        params += model.kernel_size**2 * channels * filters + (0 if model.batch_norm else filters)
        if model.padding == Padding.valid:
            height, width = height - model.kernel_size + 1, width - model.kernel_size + 1
        maps = (3 if model.batch_norm else 2) * height * width * filters  # conv, (batch norm), activation
        if model.batch_norm:
            params += 4 * filters
        if model.pooling != Pooling.none:
            halve = (lambda n: n // 2) if model.padding == Padding.valid else (lambda n: -(-n // 2))
            height, width = halve(height), halve(width)
            maps += height * width * filters
        per_example += maps
        channels = filters
    flat = height * width * channels if model.head == Head.flatten else channels
    return params, per_example, flat


def _lstm(model, vocab_size: int, sequence_length: int) -> tuple[int, int, int]:
    directions = 2 if model.bidirectional else 1
    units, dim = model.lstm_units, model.embedding_dim
    params = vocab_size * dim + directions * 4 * (units * (dim + units) + units)
    # The embedding's output, and the four gates and the states of every step, kept for backprop.
    per_example = sequence_length * dim + directions * sequence_length * 6 * units
    return params, per_example, directions * units


def check(cfg, input_shape: tuple[int, ...]) -> ModelSize:
    """The estimate, refused when it is over the run config's limits.

    Args:
        cfg: A run config (DictConfig).
        input_shape: One example's shape.

    Returns:
        The model's size.

    Raises:
        ConfigError: Naming training.max_params or training.max_activation_mb and the fix.
        ModelError: When the images are used up before the last conv layer.
    """
    size = estimate(cfg, input_shape)
    training, problems = cfg.training, []
    if size.params > training.max_params:
        problems.append(
            f"training.max_params={training.max_params}: this model would have {size.params:,} parameters; "
            "use fewer or narrower layers (model.filters, filter_growth, conv_layers, dense_units, "
            "dense_units_decay), or raise the limit if the machine has the memory")
    if size.activation_mb > training.max_activation_mb:
        problems.append(
            f"training.max_activation_mb={training.max_activation_mb}: one training batch of this model needs "
            f"about {size.activation_mb:,.0f} MB of activations; use a smaller training.batch_size, fewer "
            "filters or a smaller image, or raise the limit if the machine has the memory")
    if problems:
        raise ConfigError(*problems)
    return size


def check_data_and_model(cfg) -> None:
    """Check the data and the model before any work (cvsweep/sweep/preflight.py).

    Checks the dataset file (keys, shapes, label range), whether the model fits its image size,
    and the size limits. It lives here, with the model's size, because a model is checked
    against its data.

    Args:
        cfg: The composed config.

    Raises:
        ConfigError: With the problem found.
    """
    if cfg.dataset.location == DataLocation.worker:  # not here to read: check what the config says
        if kind_of(cfg.dataset.name) == Kind.image_folder:
            try:
                conv_output_size(cfg.model, min(cfg.dataset.image_size))
            except ModelError as err:
                raise ConfigError(str(err)) from err
        return
    try:
        settle_num_classes(cfg.dataset)  # an image folder's, counted before anything is decoded
        # A download is checked when a trial loads it, not here.
        if cfg.dataset.path is None and REGISTRY[cfg.dataset.name.value].downloads:
            shape = known_shape(cfg.dataset)  # the size check needs no download
        else:
            identity = identify(cfg.dataset)  # remembered or cached: the trials reuse it
            shape = identity.shape
            if identity.kind == Kind.image:
                conv_output_size(cfg.model, min(shape[0], shape[1]))
        check(cfg, shape)  # a model over the limits would be refused in every trial
    except (DataError, ModelError) as err:
        raise ConfigError(str(err)) from err
