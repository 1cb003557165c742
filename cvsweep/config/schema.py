"""The config schema: the one definition of every setting cvsweep knows.

Hydra validates the YAML under ``conf/`` against these dataclasses when it composes a config
(types, unknown keys, enum choices). ``check_values`` adds what types cannot say: the ranges
declared in each field's metadata and a few rules between fields. The worker validates the
JSON it receives with the same code, and the fingerprint covers exactly ``RunConfig``.

A default lives here only: conf/ YAML files hold presets, the values that differ from these.
Each dataset kind (cvsweep/config/datasets.py) and each model architecture has its own schema, so a
run config holds the settings of its kind and nothing else.
"""

from __future__ import annotations

import functools
import math
from dataclasses import MISSING as MISSING_FACTORY
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, List, Mapping, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from cvsweep import compat
from cvsweep.config.datasets import REGISTRY, HeldOut, Kind, Loader, names_of

# Bump when a change to RunConfig changes what an existing config means.
SCHEMA_VERSION = 7


class ConfigError(ValueError):
    """Config values that are not allowed. Each problem names the key, the value and what is
    allowed; ``problems`` keeps them apart for callers that report them one by one."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__(
            problems[0] if len(problems) == 1 else "invalid config:\n  " + "\n  ".join(problems)
        )

    def __reduce__(self):  # travels from the training process with every problem
        return ConfigError, tuple(self.problems)


def omegaconf_problem(err: Exception) -> str:
    """One line from an OmegaConf error: the full key, then OmegaConf's own message."""
    message = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {message}" if key else message


def bounds(low=None, high=None, *, low_open=False, high_open=False) -> dict:
    """Field metadata: the allowed numeric range (open or closed at each end)."""
    return {"bounds": (low, high, low_open, high_open)}


def operator_only(why: str) -> dict:
    """Field metadata: a setting only whoever runs the process may choose, never a client of
    the sweep service (cvsweep/service/requests.py): where files go, or where credentials are sent."""
    return {"operator_only": why}


def within_data_roots() -> dict:
    """Field metadata: a path the sweep service accepts from a client only inside the folders its
    operator allows (``serve.data_roots``)."""
    return {"within_data_roots": True}


def at_most_default_for_clients() -> dict:
    """Field metadata: a safety limit a client of the sweep service may lower but not raise
    above its default (the memory of the machine the service runs on)."""
    return {"client_cap": True}


def marked_keys(mark: str) -> dict[str, object]:
    """Every setting whose field metadata has ``mark`` (operator_only, within_data_roots,
    client_cap), as its dotted key, in every schema a group can pick, with the mark's value
    (for client_cap: the field's default, the cap)."""
    found = {}

    def walk(schema: type, prefix: str) -> None:
        for f in fields(schema):
            if mark in f.metadata:
                found[prefix + f.name] = f.default if mark == "client_cap" else f.metadata[mark]
            elif f.default_factory is not MISSING_FACTORY and is_dataclass(f.default_factory):
                walk(f.default_factory, f"{prefix}{f.name}.")

    walk(Config, "")
    for group, schemas in (("executor", EXECUTOR_SCHEMAS), ("dataset", DATASET_SCHEMAS), ("model", MODEL_SCHEMAS)):
        for schema in schemas.values():
            walk(schema, f"{group}.")
    return found


# Enum members are named exactly as they are written in YAML and on the command line.
DatasetName = Enum("DatasetName", [(name, name) for name in REGISTRY], module=__name__)

# Token sequences, for model.architecture=lstm; every other dataset is images.
TEXT_DATASETS = {DatasetName[name] for name in names_of(Kind.text)}
# Class-per-folder image trees, decoded and resized by cvsweep/data/image_folder.py.
FOLDER_DATASETS = {DatasetName[name] for name in names_of(Kind.image_folder)}


class DataLocation(Enum):
    client = "client"  # dataset.path is on the machine that runs the sweep (and the same on a worker)
    worker = "worker"  # dataset.path exists only on the worker (a RunPod network volume)


# Largest image side an image folder is resized to: 8 images at 4096x4096 RGB are 403 MB.
MAX_IMAGE_SIDE = 1024


class ColorMode(Enum):
    rgb = "rgb"
    grayscale = "grayscale"


class Architecture(Enum):
    cnn = "cnn"
    lstm = "lstm"


class Flip(Enum):
    none = "none"
    horizontal = "horizontal"
    vertical = "vertical"
    horizontal_and_vertical = "horizontal_and_vertical"


class Activation(Enum):
    relu = "relu"
    leaky_relu = "leaky_relu"
    elu = "elu"
    selu = "selu"
    gelu = "gelu"
    swish = "swish"
    tanh = "tanh"


class Initializer(Enum):
    glorot_uniform = "glorot_uniform"
    glorot_normal = "glorot_normal"
    he_uniform = "he_uniform"
    he_normal = "he_normal"
    lecun_uniform = "lecun_uniform"
    lecun_normal = "lecun_normal"


class Padding(Enum):
    same = "same"
    valid = "valid"


class Pooling(Enum):
    max = "max"
    avg = "avg"
    none = "none"


class Head(Enum):
    flatten = "flatten"
    global_avg = "global_avg"
    global_max = "global_max"


class SamplingStrategy(Enum):
    full = "full"
    proxy = "proxy"


class Optimizer(Enum):
    adam = "adam"
    nadam = "nadam"
    rmsprop = "rmsprop"
    sgd = "sgd"


class LearningRateSchedule(Enum):
    constant = "constant"
    cosine = "cosine"  # cosine decay from learning_rate to 0 over all planned steps


class Precision(Enum):
    """Keras mixed precision policies: compute in 16 bits, keep weights (and the softmax output)
    in float32. Which hardware can run each: cvsweep/training/precision.py."""

    float32 = "float32"
    mixed_float16 = "mixed_float16"  # GPUs of compute capability >= 7.0 (tensor cores); loss scaling
    mixed_bfloat16 = "mixed_bfloat16"  # GPUs >= 8.0, CPUs with AVX512-BF16 or AMX


class Fallback(Enum):
    none = "none"
    local = "local"


@dataclass(frozen=True)
class ObjectiveSpec:
    direction: str  # which way it improves: the sweeper's direction must agree
    description: str
    # The epoch report's metric a pruner watches for it (cvsweep/study/pruning.py); None: the
    # objective is known before training or only after it, so nothing can be pruned on it.
    per_epoch: Optional[str] = None
    # The part of result.json that records it under the objective's name (metrics, or health).
    recorded_in: str = "metrics"


# What a sweep can optimise (never the test set): the one table the Objective choices and
# their directions come from.
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


class Artifacts(Enum):
    all = "all"  # every completed trial's model.keras
    best = "best"  # when the sweep ends, only the study's best trial's
    none = "none"  # no model is saved


class Plots(Enum):
    # Never drawn inside a trial. all: per-sweep plots and report, and per-trial plots drawn when
    # the sweep ends for its top trials (a single run: at its end; any trial: python -m cvsweep.plot)
    all = "all"
    best = "best"  # per-sweep plots and report, and per-trial plots for the study's best trial only
    summary = "summary"  # per-sweep plots and report only
    none = "none"


@dataclass
class DatasetConfig:
    """What every dataset has; each kind (cvsweep/config/datasets.py) adds its own settings."""

    name: DatasetName = MISSING
    # A local copy of the data (an .npz in Keras layout, or a folder of class folders); None:
    # the built-in source.
    path: Optional[str] = field(default=None, metadata=within_data_roots())
    # Where path is read: here (client, pinned by content) or only on the remote worker.
    location: DataLocation = DataLocation.client
    num_classes: int = field(default=MISSING, metadata=bounds(2))
    # sha256 of the source arrays: filled in before a trial for data that can be read here
    # (a local file or folder, digits), so the fingerprint covers the content, not the name.
    # With location=worker, what the user pins (the worker checks it), or null.
    sha256: Optional[str] = None


@dataclass
class ImageDatasetConfig(DatasetConfig):
    """Image arrays: digits, the Keras image sets, a local .npz."""

    # Raw pixel values are divided by this (255 for 8-bit images, 16 for sklearn's digits).
    pixel_scale: float = field(default=255.0, metadata=bounds(0, low_open=True))
    # Held-out test share, only for sources without a test split of their own (digits, and
    # image folders without train/ and test/ sub-folders).
    test_fraction: Optional[float] = field(
        default=None, metadata=bounds(0, 1, low_open=True, high_open=True)
    )


@dataclass
class ImageFolderDatasetConfig(ImageDatasetConfig):
    """A folder of class folders (image_folder, gtsrb), decoded and resized."""

    # [height, width] every image is resized to.
    image_size: List[int] = field(default_factory=lambda: [32, 32])
    color_mode: ColorMode = ColorMode.rgb


@dataclass
class TextDatasetConfig(DatasetConfig):
    """Token sequences (imdb, reuters)."""

    # Words kept, by frequency; the rest become the out-of-vocabulary token.
    vocab_size: int = field(default=10_000, metadata=bounds(4, 1_000_000))
    # The last tokens of each text, zeros in front.
    sequence_length: int = field(default=200, metadata=bounds(1, 100_000))


DATASET_SCHEMAS = {Kind.image: ImageDatasetConfig, Kind.image_folder: ImageFolderDatasetConfig,
                   Kind.text: TextDatasetConfig}


@dataclass
class AugmentationConfig:
    """Keras preprocessing layers at the model's input, active in training only (images)."""

    flip: Flip = Flip.none
    # Fractions as Keras takes them: rotation of a full turn, zoom and shift of the image size.
    rotation: float = field(default=0.0, metadata=bounds(0, 1))
    zoom: float = field(default=0.0, metadata=bounds(0, 1, high_open=True))
    translation: float = field(default=0.0, metadata=bounds(0, 1, high_open=True))

    def enabled(self) -> bool:
        return self.flip != Flip.none or any((self.rotation, self.zoom, self.translation))


@dataclass
class ModelConfig:
    """What every model has: the architecture, and the dense layers with dropout on top
    (cvsweep/model.py, classifier_head)."""

    architecture: Architecture = Architecture.cnn
    dense_layers: int = field(default=1, metadata=bounds(0, 8))
    # Of the first dense layer; each next one has round(previous * dense_units_decay) units, at
    # least 1 (0.5 halves them layer by layer; 1.0: all as wide).
    dense_units: int = field(default=64, metadata=bounds(1, 8192))
    dense_units_decay: float = field(default=1.0, metadata=bounds(0, 1, low_open=True))
    # Before each dense layer and the output layer (after the CNN's head or the LSTM); each next
    # one's rate is the previous one's times dropout_decay.
    dropout: float = field(default=0.25, metadata=bounds(0, 1, high_open=True))
    dropout_decay: float = field(default=1.0, metadata=bounds(0, 1, low_open=True))
    # Of the dense layers, and of the CNN's conv layers.
    activation: Activation = Activation.relu
    kernel_initializer: Initializer = Initializer.glorot_uniform


@dataclass
class CnnModelConfig(ModelConfig):
    """A plain CNN for images (cvsweep/model.py): conv blocks, a head, the dense layers."""

    conv_layers: int = field(default=2, metadata=bounds(1, 8))
    filters: int = field(default=32, metadata=bounds(1, 1024))
    # Conv layer i has round(filters * filter_growth**i) filters.
    filter_growth: float = field(default=2.0, metadata=bounds(0.25, 4.0))
    kernel_size: int = field(default=3, metadata=bounds(1, 11))
    padding: Padding = Padding.same
    batch_norm: bool = False
    # Pooling (2x2) after each conv layer.
    pooling: Pooling = Pooling.max
    head: Head = Head.flatten
    # Of the dense layers, when it differs from the conv layers' (model.activation); None: the same.
    dense_activation: Optional[Activation] = None
    # Off unless set.
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)


@dataclass
class LstmModelConfig(ModelConfig):
    """The text model (cvsweep/lstm.py): embedding, LSTM (bidirectional switch), the dense layers."""

    architecture: Architecture = Architecture.lstm
    embedding_dim: int = field(default=64, metadata=bounds(1, 4096))
    lstm_units: int = field(default=64, metadata=bounds(1, 4096))
    # Dropout of the LSTM's recurrent state, apart from the dense head's model.dropout. Above 0,
    # TensorFlow cannot use the fused cuDNN kernel on a GPU: the LSTM runs several times slower.
    recurrent_dropout: float = field(default=0.0, metadata=bounds(0, 1, high_open=True))
    bidirectional: bool = False


MODEL_SCHEMAS = {Architecture.cnn: CnnModelConfig, Architecture.lstm: LstmModelConfig}


@dataclass
class SamplingConfig:
    strategy: SamplingStrategy = SamplingStrategy.full
    # Share of the training split kept (stratified, seeded); 1.0 unless strategy is proxy.
    fraction: float = field(default=1.0, metadata=bounds(0, 1, low_open=True))


@dataclass
class TrainingConfig:
    epochs: int = field(default=20, metadata=bounds(1, 10_000))
    batch_size: int = field(default=32, metadata=bounds(1, 65_536))
    optimizer: Optimizer = Optimizer.adam
    learning_rate: float = field(default=1e-3, metadata=bounds(0, 10, low_open=True))
    # How the learning rate moves during training: constant, or cosine (decays to 0 by the last
    # planned epoch; reaches a given accuracy in fewer epochs).
    lr_schedule: LearningRateSchedule = LearningRateSchedule.constant
    # Keras's gradient clipping: each weight's gradient rescaled to at most this L2 norm
    # (clipnorm), or each element clipped to [-clipvalue, clipvalue]; None: off. Keras takes
    # one of the two, not both.
    clipnorm: Optional[float] = field(default=None, metadata=bounds(0, low_open=True))
    clipvalue: Optional[float] = field(default=None, metadata=bounds(0, low_open=True))
    # Stop after this many epochs without val_loss improvement and keep the best weights; 0: off.
    early_stopping_patience: int = field(default=3, metadata=bounds(0))
    # Share of the training set held out (stratified, seeded) as the validation set.
    validation_split: float = field(
        default=0.1, metadata=bounds(0, 1, low_open=True, high_open=True)
    )
    # Wall-clock limit for fitting; a trial over it fails. None: no limit.
    time_budget_s: Optional[float] = field(default=None, metadata=bounds(0, low_open=True))
    # Models over these are refused before they are built (cvsweep/models/size.py): a model too
    # big for the machine would exhaust its memory instead of failing cleanly. Parameters, and
    # the estimated activation memory of one training batch (forward and backward, float32).
    max_params: int = field(default=50_000_000, metadata={**bounds(1, 10**11), **at_most_default_for_clients()})
    max_activation_mb: float = field(default=8192.0,
                                     metadata={**bounds(0, 10**7, low_open=True), **at_most_default_for_clients()})
    seed: int = field(default=0, metadata=bounds(0, 2**31 - 1))
    # TensorFlow op determinism: bit-identical reruns, somewhat slower on GPUs (where it also
    # turns TF32 off: cvsweep/training/train.py).
    deterministic: bool = True
    # Keras's mixed precision policy: float32, or 16-bit compute for speed on hardware that has it;
    # refused before training on hardware that cannot run it fast (cvsweep/training/precision.py).
    precision: Precision = Precision.float32


@dataclass
class HealthWeights:
    neuron_utilisation: float = field(default=1.0, metadata=bounds(0))
    gradient_health: float = field(default=1.0, metadata=bounds(0))
    training_stability: float = field(default=1.0, metadata=bounds(0))
    convergence_quality: float = field(default=1.0, metadata=bounds(0))
    accuracy_consistency: float = field(default=1.0, metadata=bounds(0))
    overfitting: float = field(default=1.0, metadata=bounds(0))
    parameter_efficiency: float = field(default=0.5, metadata=bounds(0))


@dataclass
class HealthConfig:
    """How diagnostics are sampled and health is scored (formulas: cvsweep/training/health.py)."""

    # Validation images (fixed, seeded) whose activations measure neuron utilisation.
    sample_size: int = field(default=256, metadata=bounds(1, 100_000))
    # Training batches (fixed, seeded) whose per-layer gradient norms are taken at each epoch end.
    gradient_batches: int = field(default=2, metadata=bounds(1, 100))
    grad_vanishing_below: float = field(default=1e-5, metadata=bounds(0))
    grad_exploding_above: float = field(default=1e2, metadata=bounds(0, low_open=True))
    # Largest healthy change per epoch: RMS of a layer's bias change; relative kernel change.
    max_bias_change_per_epoch: float = field(default=0.1, metadata=bounds(0, low_open=True))
    max_weight_change_per_epoch: float = field(default=0.5, metadata=bounds(0, low_open=True))
    consistency_epochs: int = field(default=3, metadata=bounds(1, 1000))
    overfit_gap_tolerance: float = field(default=0.2, metadata=bounds(0, low_open=True))
    # Activation maps kept for plotting: this many validation images, this many channels.
    activation_images: int = field(default=2, metadata=bounds(0, 16))
    activation_channels: int = field(default=8, metadata=bounds(1, 64))
    weights: HealthWeights = field(default_factory=HealthWeights)


@dataclass
class RunConfig:
    """Everything that shapes a training run, and nothing else: what ``train`` receives,
    what travels to a remote worker and what the fingerprint covers."""

    # Each dataset kind and each architecture brings its own schema (DATASET_SCHEMAS,
    # MODEL_SCHEMAS): conf/dataset/*.yaml and conf/model/*.yaml pick it, as conf/executor/
    # does; load_run_config picks it from dataset.name and model.architecture.
    dataset: Any = MISSING
    model: Any = MISSING
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass
class LocalExecutorConfig:
    name: str = "local"


@dataclass
class ArtifactStoreConfig:
    """An S3-compatible bucket (AWS S3, RunPod's S3 API for network volumes, Cloudflare R2,
    MinIO) through which a remote trial's model comes home when it is too large for the job's
    output. Its credentials are read from the environment only (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN and AWS_DEFAULT_REGION), on the client
    and on the endpoint's workers: they are never part of a config."""

    # s3://bucket/prefix; None: a model too large to come inline is recorded as missing.
    url: Optional[str] = field(default=None, metadata=operator_only("models are written there"))
    # The store's S3 API address when it is not AWS (e.g. https://<account>.r2.cloudflarestorage.com).
    endpoint_url: Optional[str] = field(default=None, metadata=operator_only("the S3 credentials are sent there"))


@dataclass
class RunpodExecutorConfig:
    """A RunPod serverless endpoint running remote/handler.py. The API key is read from
    RUNPOD_API_KEY at run time only: it is never part of a config."""

    name: str = "runpod"
    endpoint_id: Optional[str] = None
    base_url: str = field(default="https://api.runpod.ai/v2",
                          metadata=operator_only("the RunPod API key is sent there"))
    # Sent as the job's RunPod policy: executionTimeout and ttl (time allowed in the queue).
    execution_timeout_s: float = field(default=3600.0, metadata=bounds(0, low_open=True))
    ttl_s: float = field(default=86400.0, metadata=bounds(0, low_open=True))
    poll_interval_s: float = field(default=2.0, metadata=bounds(0, low_open=True))
    request_timeout_s: float = field(default=30.0, metadata=bounds(0, low_open=True))
    # Transient faults (HTTP 408, 429, 5xx, dropped connections) are retried this many times,
    # waiting backoff_s, then twice as long each time, at most backoff_max_s.
    retries: int = field(default=5, metadata=bounds(0, 100))
    backoff_s: float = field(default=1.0, metadata=bounds(0))
    backoff_max_s: float = field(default=30.0, metadata=bounds(0))
    # Remote jobs in flight at once (the sweeper's batch size, see conf/search/base.yaml).
    max_in_flight: int = field(default=4, metadata=bounds(1, 1000))
    # What a trial does when its remote job fails: fail (none) or train here (local).
    fallback: Fallback = Fallback.none
    # A trained model comes home in the job's output when its file, and its text compressed and
    # base64-encoded, are at most this large. At most 8: RunPod refuses a job's input over 10 MB
    # (/run) and results near 20 MB, and the result's history and diagnostics come on top.
    max_inline_model_mb: float = field(default=5.0, metadata=bounds(0, 8))
    # Where larger models go (executor.artifact_store.url=s3://bucket/prefix).
    artifact_store: ArtifactStoreConfig = field(default_factory=ArtifactStoreConfig)


EXECUTOR_SCHEMAS = {"local": LocalExecutorConfig, "runpod": RunpodExecutorConfig}


@dataclass
class Config(RunConfig):
    """The whole application config: the run, plus where and how trials execute."""

    # Each executor option brings its own schema (see conf/executor/*.yaml).
    executor: Any = MISSING
    objective: Objective = Objective.val_accuracy
    # More objectives make the sweep multi-objective (hydra.sweeper.direction becomes a list).
    secondary_objectives: List[Objective] = field(default_factory=list)
    # The share of overall_health in objective=health.
    health_weight: float = field(default=0.3, metadata=bounds(0, 1))
    plots: Plots = Plots.all
    # Which trained models a sweep keeps as model.keras (not in the fingerprint: it changes
    # what is saved, never what is trained).
    artifacts: Artifacts = Artifacts.all
    # Keras TensorBoard logs in each trial folder (executor=local only).
    tensorboard: bool = False
    # Runs, sweeps and the default study storage live below this folder.
    output_root: str = field(default="outputs", metadata=operator_only("every file of a run is written below it"))


RUN_KEYS = tuple(f.name for f in fields(RunConfig))


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore (conf/ YAML files extend them): the whole
    config, and per group option the schema it picks (schema/<group>/<kind>)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="cvsweep_schema", node=Config)
    for group, schemas in (("executor", EXECUTOR_SCHEMAS), ("dataset", DATASET_SCHEMAS), ("model", MODEL_SCHEMAS)):
        for key, schema in schemas.items():
            store.store(group=f"schema/{group}", name=getattr(key, "value", key), node=schema)


def dataset_schema(dataset: Any) -> Optional[type]:
    """The schema of a dataset's settings, from its name (None for an unknown name)."""
    name = _plain(_get(dataset, "name"))
    entry = REGISTRY.get(name) if isinstance(name, str) else None
    return DATASET_SCHEMAS[entry.kind] if entry else None


def dataset_config(data: Mapping) -> DictConfig:
    """A dataset's settings (plain data from a validated run config) typed by its schema."""
    return OmegaConf.merge(OmegaConf.structured(dataset_schema(data)), data)


def model_schema(model: Any) -> Optional[type]:
    """The schema of a model's settings, from its architecture (the base's default if unset)."""
    architecture = _plain(_get(model, "architecture", ModelConfig.architecture))
    return next((schema for arch, schema in MODEL_SCHEMAS.items() if arch.value == architecture), None)


def _executor_schema(executor: Any) -> Optional[type]:
    return EXECUTOR_SCHEMAS.get(_plain(_get(executor, "name")))


# Sections whose schema depends on their content.
_PICKED_SCHEMAS = {"dataset": dataset_schema, "model": model_schema, "executor": _executor_schema}


def _get(node: Any, key: str, default: Any = None) -> Any:
    if isinstance(node, DictConfig):
        child = compat.config_node(node, key)
        return default if child is None or child._is_missing() else node[key]
    return node.get(key, default) if isinstance(node, Mapping) else default


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def run_config_of(cfg: DictConfig) -> dict:
    """The RunConfig part of a composed config, resolved, as plain JSON-able data."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True, enum_to_str=True) for key in RUN_KEYS}


def load_run_config(data: Mapping[str, Any]) -> DictConfig:
    """Validate plain data (e.g. JSON from a client) as a RunConfig: types, keys, values. The
    dataset's schema follows from dataset.name, the model's from model.architecture."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config must be a mapping with keys {list(RUN_KEYS)}, not {type(data).__name__}")
    problems = list(_hostile_content(data, prefix=""))
    if problems:
        raise ConfigError(*problems)
    missing = [key for key in RUN_KEYS if key not in data]
    if missing:
        raise ConfigError(f"config is missing {missing}; a run config has exactly {list(RUN_KEYS)}")
    schemas = [_picked_schema(data, "dataset", "name", list(REGISTRY)),
               _picked_schema(data, "model", "architecture", [a.value for a in MODEL_SCHEMAS])]
    problems = list(_unknown_keys(data, RunConfig, prefix=""))
    if problems:
        raise ConfigError(*problems)
    try:
        cfg = OmegaConf.merge(_run_config_template(*schemas), OmegaConf.create(dict(data)))
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as err:  # OmegaConf's messages name the key and the allowed values
        raise ConfigError(omegaconf_problem(err)) from err
    check_values(cfg)
    return cfg


def _picked_schema(data: Mapping, section: str, key: str, allowed: list) -> type:
    """The schema the data's ``section.key`` picks, or ConfigError naming what is allowed."""
    if not isinstance(data[section], Mapping):
        raise ConfigError(f"{section}: must be a mapping of settings, not {type(data[section]).__name__}")
    schema = _PICKED_SCHEMAS[section](data[section])
    if schema is None:
        raise ConfigError(f"{section}.{key}={_get(data[section], key)!r}: allowed are {allowed}")
    return schema


@functools.cache
def _run_config_template(dataset: type, model: type) -> DictConfig:
    """The schema as an OmegaConf node, made once per kind: building it from the dataclasses
    costs more than the merge (merge copies it, so the template never changes)."""
    template = OmegaConf.structured(RunConfig)
    template.dataset, template.model = OmegaConf.structured(dataset), OmegaConf.structured(model)
    return template


def _hostile_content(data: Any, prefix: str):
    """Plain data must stay data: no instantiation targets, no OmegaConf interpolations
    (``${oc.env:...}`` would read the worker's environment)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if not isinstance(key, str):
                yield f"{prefix}{key!r}: keys must be strings"
            elif key.startswith("_"):
                yield f"{prefix}{key}: keys starting with '_' (like _target_) are not allowed"
            else:
                yield from _hostile_content(value, f"{prefix}{key}.")
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            yield from _hostile_content(value, f"{prefix}{index}.")
    elif isinstance(data, str):
        if "${" in data:
            yield f"{prefix.rstrip('.')}: interpolations ('${{...}}') are not allowed in a run config"
        if "\x00" in data:  # no file name can hold one; the OS refuses it mid-run
            yield f"{prefix.rstrip('.')}: NUL characters are not allowed"
        elif not _is_utf8(data):  # a lone surrogate: the fingerprint's UTF-8 cannot encode it
            yield f"{prefix.rstrip('.')}: not valid Unicode text (a lone surrogate)"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_values(cfg: DictConfig) -> None:
    """Range checks from field metadata plus cross-field rules, for the run config and (in a
    full application config) the executor; raises one ConfigError listing every problem."""
    schema = Config if "executor" in cfg else RunConfig  # a full application config, maybe a masked copy
    problems = list(_unknown_keys(cfg, schema, prefix=""))
    if problems:  # the range checks below would trip over them
        raise ConfigError(*problems)
    problems = list(_range_problems(cfg, schema, prefix=""))
    problems += _rule_problems(cfg)
    if problems:
        raise ConfigError(*problems)


def _sub_schema(f, node: Any, prefix: str) -> Optional[type]:
    """The schema of a nested section: declared, or (dataset, model, executor) the node's own
    (a composed config's group option picked it) or else picked by content (plain data)."""
    if f.default_factory is not MISSING and is_dataclass(f.default_factory):
        return f.default_factory
    if not prefix and f.name in _PICKED_SCHEMAS:
        typed = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        return typed if is_dataclass(typed) else _PICKED_SCHEMAS[f.name](node)
    return None


def _unknown_keys(node: Any, schema: type, prefix: str):
    """Keys no schema defines (in a DictConfig or plain data). Hydra's ``+key=value`` adds them
    even to a structured config, where they would pass silently and change nothing."""
    known = {f.name: f for f in fields(schema)}
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue
        if key not in known:
            yield f"{prefix}{key}: not a setting of {_what(prefix, schema)}{_where_it_belongs(prefix, key)}; " \
                  f"allowed here: {sorted(known)}"
            continue
        child = compat.config_node(node, key) if isinstance(node, DictConfig) else node[key]
        if OmegaConf.is_dict(child) or isinstance(child, Mapping):
            value = node[key]
            sub = _sub_schema(known[key], value, prefix)
            if sub is not None:
                yield from _unknown_keys(value, sub, f"{prefix}{key}.")


def _what(prefix: str, schema: type) -> str:
    if prefix == "dataset.":
        return f"{schema.__name__} ({', '.join(n for k, s in DATASET_SCHEMAS.items() if s is schema for n in names_of(k))})"
    if prefix == "model.":
        return f"{schema.__name__} (model.architecture={schema.architecture.value})"
    return "cvsweep" if not prefix else schema.__name__


def _where_it_belongs(prefix: str, key: str) -> str:
    """For a setting of another dataset kind or architecture: which ones have it."""
    if prefix == "dataset.":
        kinds = [kind for kind, schema in DATASET_SCHEMAS.items() if key in {f.name for f in fields(schema)}]
        return ("; only for " + " and ".join(f"{kind.value.replace('_', ' ')} datasets ({', '.join(names_of(kind))})"
                                             for kind in kinds)) if kinds else ""
    if prefix == "model.":
        archs = [arch.value for arch, schema in MODEL_SCHEMAS.items() if key in {f.name for f in fields(schema)}]
        return f"; only for model.architecture={' or '.join(archs)} (model={archs[0]})" if archs else ""
    return ""


def _range_problems(node: Any, schema: type, prefix: str):
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        value = node[f.name]
        sub_schema = _sub_schema(f, value, prefix)
        if sub_schema is not None:
            yield from _range_problems(value, sub_schema, prefix=f"{key}.")
            continue
        if "bounds" not in f.metadata or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            yield f"{key}={value}: must be a finite number"
            continue
        low, high, low_open, high_open = f.metadata["bounds"]
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            yield f"{key}={value}: allowed is {_describe_bounds(low, high, low_open, high_open)}"


def _describe_bounds(low, high, low_open, high_open) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _rule_problems(cfg: DictConfig) -> list[str]:
    problems = []
    dataset, sampling = cfg.dataset, cfg.sampling
    if sampling.strategy == SamplingStrategy.full and sampling.fraction != 1.0:
        problems.append(
            f"sampling.fraction={sampling.fraction}: strategy 'full' uses the whole training set "
            "(1.0); choose sampling=proxy to train on a fraction"
        )
    if sampling.strategy == SamplingStrategy.proxy and sampling.fraction == 1.0:
        problems.append("sampling.fraction=1.0: strategy 'proxy' needs a fraction in (0, 1)")
    training = cfg.training
    if training.clipnorm is not None and training.clipvalue is not None:  # Keras's optimizers refuse both
        problems.append(f"training.clipvalue={training.clipvalue}: Keras clips by one rule, and "
                        f"training.clipnorm={training.clipnorm} is set; set the other to null")
    entry = REGISTRY[dataset.name.value]
    if entry.needs_path and not dataset.path:
        what = "a local .npz file" if entry.loader == Loader.npz else "a folder of class folders"
        problems.append(f"dataset.path=None: dataset '{dataset.name.value}' needs the path of {what}")
    problems += _kind_problems(cfg)
    problems += _test_split_problems(dataset, entry.test_set)
    size = dataset.get("image_size")
    if size is not None and (len(size) != 2 or not all(isinstance(v, int) and 4 <= v <= MAX_IMAGE_SIDE for v in size)):
        problems.append(f"dataset.image_size={list(size)}: allowed is [height, width], each in [4, {MAX_IMAGE_SIDE}]")
    problems += _location_problems(dataset)
    if dataset.sha256 is not None and not (isinstance(dataset.sha256, str) and len(dataset.sha256) == 64):
        problems.append(f"dataset.sha256={dataset.sha256}: a sha256 hex digest (64 characters) or null")
    return problems


def _test_split_problems(dataset: DictConfig, test_set: HeldOut) -> list[str]:
    """A test share exactly where the source has no test split of its own (registry: test_set)."""
    test_fraction = dataset.get("test_fraction")
    if test_set == HeldOut.folder:
        return [] if test_fraction is not None else [
            "dataset.test_fraction=None: an image folder without train/ and test/ needs a test share in (0, 1)"]
    if test_set == HeldOut.drawn and dataset.path is None:  # a given path is an .npz with its own split
        return [] if test_fraction is not None else [
            f"dataset.test_fraction=None: {dataset.name.value} has no test split; set a value in (0, 1)"]
    if test_fraction is not None:
        return [f"dataset.test_fraction={test_fraction}: this source has its own test split; "
                "set dataset.test_fraction=null"]
    return []


def _location_problems(dataset: DictConfig) -> list[str]:
    """Data on the worker is named by a path the worker can resolve without the client's
    help: absolute, with no '~' (whose home would it be?)."""
    if dataset.location != DataLocation.worker:
        return []
    path = dataset.path
    if not path:
        return ["dataset.location=worker: needs dataset.path, the data's absolute path on the worker "
                "(e.g. /runpod-volume/data/mnist.npz)"]
    if not path.startswith("/"):
        return [f"dataset.path={path}: with dataset.location=worker, an absolute path on the worker "
                "(e.g. /runpod-volume/data/mnist.npz)"]
    return []


def _kind_problems(cfg: DictConfig) -> list[str]:
    """Each section's settings are those of its own kind; images go with the CNN, token
    sequences with the LSTM."""
    dataset, model = cfg.dataset, cfg.model
    problems = []
    picked, typed = dataset_schema(dataset), OmegaConf.get_type(dataset)
    if is_dataclass(typed) and typed is not picked:
        problems.append(f"dataset.name={dataset.name.value}: its settings are {picked.__name__}'s, not "
                        f"{typed.__name__}'s; choose it with dataset={dataset.name.value}")
    picked, typed = model_schema(model), OmegaConf.get_type(model)
    if is_dataclass(typed) and typed is not picked:
        problems.append(f"model.architecture={model.architecture.value}: its settings are {picked.__name__}'s, "
                        f"not {typed.__name__}'s; choose it with model={model.architecture.value}")
    text = REGISTRY[dataset.name.value].kind == Kind.text
    if text and model.architecture != Architecture.lstm:
        problems.append(f"model.architecture={model.architecture.value} cannot read dataset={dataset.name.value} "
                        "(token sequences): use model=lstm")
    if not text and model.architecture == Architecture.lstm:
        problems.append(f"model.architecture=lstm reads token sequences; dataset={dataset.name.value} is images: "
                        f"use model=cnn, or a text dataset ({', '.join(names_of(Kind.text))})")
    return problems
