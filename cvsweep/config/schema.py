"""The config schema: the one definition of every setting cvsweep knows.

Hydra validates the YAML under ``conf/`` against these dataclasses when it composes a config
(types, unknown keys, enum choices). What types cannot say (the ranges declared in each
field's metadata, the rules between fields) is checked in cvsweep/config/validate.py, which
also validates the JSON a worker receives. The fingerprint covers exactly ``RunConfig``.
Field metadata also marks what a client of the sweep service may not set (``marked_keys``).

A default lives here only: conf/ YAML files hold presets, the values that differ from these.
Each dataset kind (cvsweep/config/datasets.py) and each model architecture has its own schema, so a
run config holds the settings of its kind and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import MISSING as MISSING_FACTORY
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, List, Mapping, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from cvsweep import compat
from cvsweep.config.datasets import REGISTRY, Kind, names_of
from cvsweep.config.objective_table import OBJECTIVES, Objective, ObjectiveSpec  # noqa: F401 (importers read them here)
from cvsweep.errors import UserError

# Bump when a change to RunConfig changes what an existing config means.
SCHEMA_VERSION = 7


class ConfigError(UserError):
    """Config values that are not allowed. Each problem names the key, the value and what is
    allowed; ``problems`` keeps them apart for callers that report them one by one.

    Args:
        *problems: Each problem, written out (``"key=value: why; fix"``).
        **details: For a single problem given in a few words: its ``key``, ``value`` and
            ``fix``, worded as every UserError is (cvsweep/errors.py).
    """

    def __init__(self, *problems: str, **details):
        if details:
            super().__init__(problems[0], **details)
            self.problems = [str(self)]
            return
        self.problems = list(problems)
        super().__init__(problems[0] if len(problems) == 1 else "invalid config:\n  " + "\n  ".join(problems))

    def __reduce__(self):  # travels from the training process with every problem
        return ConfigError, tuple(self.problems)


def bounds(low=None, high=None, *, low_open=False, high_open=False) -> dict:
    """Field metadata: the allowed numeric range.

    Args:
        low: The lowest allowed value, or None for no lower bound.
        high: The highest allowed value, or None for no upper bound.
        low_open: Whether ``low`` itself is excluded.
        high_open: Whether ``high`` itself is excluded.

    Returns:
        The metadata for ``dataclasses.field``.
    """
    return {"bounds": (low, high, low_open, high_open)}


def operator_only(why: str) -> dict:
    """Field metadata: a setting only whoever runs the process may choose.

    A client of the sweep service (cvsweep/service/requests.py) never may: where files go, or
    where credentials are sent.

    Args:
        why: Why, as the service's refusal of a request that sets it says.

    Returns:
        The metadata for ``dataclasses.field``.
    """
    return {"operator_only": why}


def within_data_roots() -> dict:
    """Field metadata: a path a service client may give only inside the operator's folders.

    The folders are the service's ``serve.data_roots``.

    Returns:
        The metadata for ``dataclasses.field``.
    """
    return {"within_data_roots": True}


def at_most_default_for_clients() -> dict:
    """Field metadata: a limit a service client may lower but not raise above its default.

    The default fits the memory of the machine the service runs on.

    Returns:
        The metadata for ``dataclasses.field``.
    """
    return {"client_cap": True}


def default_from_env(variable: str) -> dict:
    """Field metadata: the environment variable that, when set, stands in for the field's default.

    The option's YAML writes ``${cvsweep.env:VARIABLE}`` at the key (the default itself stays
    here).

    Args:
        variable: The environment variable's name.

    Returns:
        The metadata for ``dataclasses.field``.
    """
    return {"from_env": variable}


def env_or_default(variable: str) -> Any:
    """The ``cvsweep.env`` resolver: the environment variable's value, else the default of the
    field marked ``default_from_env(variable)``.

    Args:
        variable: The environment variable's name.

    Returns:
        Its value when set, else the schema's default.

    Raises:
        KeyError: No field is marked with ``variable``.
    """
    if variable in os.environ:
        return os.environ[variable]
    defaults = {f.metadata["from_env"]: f.default for f in _marked_fields("from_env").values()}
    return defaults[variable]


def marked_keys(mark: str) -> dict[str, object]:
    """Every setting whose field metadata has ``mark``, in every schema a group can pick.

    Args:
        mark: ``operator_only``, ``within_data_roots`` or ``client_cap``.

    Returns:
        The mark's value by dotted key (for ``client_cap``: the field's default, the cap).
    """
    return {key: f.default if mark == "client_cap" else f.metadata[mark] for key, f in _marked_fields(mark).items()}


def _marked_fields(mark: str) -> dict[str, Any]:
    """Every field whose metadata has ``mark``, by its dotted key, in every schema a group can pick."""
    found = {}

    def walk(schema: type, prefix: str) -> None:
        for f in fields(schema):
            if mark in f.metadata:
                found[prefix + f.name] = f
            elif f.default_factory is not MISSING_FACTORY and is_dataclass(f.default_factory):
                walk(f.default_factory, f"{prefix}{f.name}.")

    walk(Config, "")
    for group, schemas in (("executor", EXECUTOR_SCHEMAS), ("dataset", DATASET_SCHEMAS), ("model", MODEL_SCHEMAS)):
        for schema in schemas.values():
            walk(schema, f"{group}.")
    return found


# Enum members are named exactly as they are written in YAML and on the command line.
DatasetName = Enum("DatasetName", [(name, name) for name in REGISTRY], module=__name__)

# Derived from the registry's kinds for cvsweep/execution/payload.py; elsewhere ask
# datasets.kind_of(name).
FOLDER_DATASETS = {DatasetName[name] for name in names_of(Kind.image_folder)}


class DataLocation(Enum):
    """Where ``dataset.path`` is: on the sweep's machine, or on the worker only."""

    client = "client"  # dataset.path is on the machine that runs the sweep (and the same on a worker)
    worker = "worker"  # dataset.path exists only on the worker (a RunPod network volume)


# Largest image side an image folder is resized to: 8 images at 4096x4096 RGB are 403 MB.
MAX_IMAGE_SIDE = 1024


class ColorMode(Enum):
    """The colour channels an image folder's images are read with."""

    rgb = "rgb"
    grayscale = "grayscale"


class Architecture(Enum):
    """The model family: a CNN for images, an LSTM for text."""

    cnn = "cnn"
    lstm = "lstm"


class Flip(Enum):
    """The random flips of the augmentation."""

    none = "none"
    horizontal = "horizontal"
    vertical = "vertical"
    horizontal_and_vertical = "horizontal_and_vertical"


class Activation(Enum):
    """The activation function of the convolution and dense layers."""

    relu = "relu"
    leaky_relu = "leaky_relu"
    elu = "elu"
    selu = "selu"
    gelu = "gelu"
    swish = "swish"
    tanh = "tanh"


class Initializer(Enum):
    """The kernel initializer of the convolution and dense layers."""

    glorot_uniform = "glorot_uniform"
    glorot_normal = "glorot_normal"
    he_uniform = "he_uniform"
    he_normal = "he_normal"
    lecun_uniform = "lecun_uniform"
    lecun_normal = "lecun_normal"


class Padding(Enum):
    """The padding of the convolutions."""

    same = "same"
    valid = "valid"


class Pooling(Enum):
    """The pooling after each convolution block."""

    max = "max"
    avg = "avg"
    none = "none"


class Head(Enum):
    """How the convolution blocks' output becomes a vector for the dense layers."""

    flatten = "flatten"
    global_avg = "global_avg"
    global_max = "global_max"


class SamplingStrategy(Enum):
    """Whether a trial trains on the whole training split or a proxy fraction of it."""

    full = "full"
    proxy = "proxy"


class Optimizer(Enum):
    """The Keras optimizer a run trains with."""

    adam = "adam"
    nadam = "nadam"
    rmsprop = "rmsprop"
    sgd = "sgd"


class LearningRateSchedule(Enum):
    """How the learning rate changes over training."""

    constant = "constant"
    cosine = "cosine"  # cosine decay from learning_rate to 0 over all planned steps


class Precision(Enum):
    """Keras mixed precision policies: compute in 16 bits, keep weights (and the softmax output)
    in float32. Which hardware can run each: cvsweep/training/precision.py."""

    float32 = "float32"
    mixed_float16 = "mixed_float16"  # GPUs of compute capability >= 7.0 (tensor cores); loss scaling
    mixed_bfloat16 = "mixed_bfloat16"  # GPUs >= 8.0, CPUs with AVX512-BF16 or AMX


class Fallback(Enum):
    """What a trial does when its remote job fails: fail (none) or train here (local)."""

    none = "none"
    local = "local"



class Artifacts(Enum):
    """Which trained models a sweep keeps."""

    all = "all"  # every completed trial's model.keras
    best = "best"  # when the sweep ends, only the study's best trial's
    none = "none"  # no model is saved


class Plots(Enum):
    # Never drawn inside a trial. all: per-sweep plots and report, and per-trial plots drawn when
    # the sweep ends for its top trials (a single run: at its end; any trial: cvsweep plot)
    """Which plots a sweep draws, all when the sweep ends."""

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

    # null: counted where the data is read here (a local .npz or folder, digits) before the run
    # config is made, so the fingerprint covers the number; a number given is checked against
    # the labels (or class folders). Needed for a download and with location=worker.
    num_classes: Optional[int] = field(default=None, metadata=bounds(2))
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
        """Whether any augmentation is on.

        Returns:
            True when a flip, a rotation, a zoom or a translation is set.
        """
        return self.flip != Flip.none or any((self.rotation, self.zoom, self.translation))


@dataclass
class ModelConfig:
    """What every model has: the architecture, and the dense layers with dropout on top
    (cvsweep/models/architectures.py, classifier_head)."""

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
    """A plain CNN for images (cvsweep/models/architectures.py): conv blocks, a head, the dense layers."""

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
    """The text model (cvsweep/models/architectures.py): embedding, LSTM (bidirectional switch), the dense layers."""

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
    """Which share of the training split a trial trains on."""

    strategy: SamplingStrategy = SamplingStrategy.full
    # Share of the training split kept (stratified, seeded); 1.0 unless strategy is proxy.
    fraction: float = field(default=1.0, metadata=bounds(0, 1, low_open=True))


@dataclass
class TrainingConfig:
    """How a run trains: epochs, batch, optimizer and learning rate, clipping, early stopping, limits, seed, precision."""

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
    """The weight of each health score in the overall health."""

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
    # does; validate.load_run_config picks it from dataset.name and model.architecture.
    dataset: Any = MISSING
    model: Any = MISSING
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass
class LocalExecutorConfig:
    """Trials train on this machine."""

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
    # RunPod's id of the endpoint: letters, digits, '-' and '_' only (it becomes part of every
    # request's URL, sent with the API key).
    endpoint_id: Optional[str] = None
    base_url: str = field(default="https://api.runpod.ai/v2", metadata={
        **operator_only("the RunPod API key is sent there"), **default_from_env("RUNPOD_ENDPOINT_BASE_URL")})
    # The job's policy.executionTimeout: how long a worker may run it once it took it; past it the
    # job ends TIMED_OUT. RunPod allows 5 s to 7 days (serverless/endpoints/send-requests.mdx).
    execution_timeout_s: float = field(default=3600.0, metadata=bounds(5, 604_800))
    # The job's policy.ttl: its whole life at RunPod from submission (queue, run and result);
    # when it runs out the job is deleted, even mid-run, and its result with it. RunPod allows
    # 10 s to 7 days; it must cover execution_timeout_s plus a minute in the queue.
    ttl_s: float = field(default=86400.0, metadata=bounds(10, 604_800))
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
    # base64-encoded, are at most this large. At most 8: RunPod's payload limit of 10 MB for /run
    # holds for the result too (a larger one is refused at job-done and dropped), and the
    # result's history and diagnostics come on top.
    max_inline_model_mb: float = field(default=5.0, metadata=bounds(0, 8))
    # Where larger models go (executor.artifact_store.url=s3://bucket/prefix).
    artifact_store: ArtifactStoreConfig = field(default_factory=ArtifactStoreConfig)
    # USD per hour for one worker of the endpoint's GPU type: the "Cost per second" of RunPod's
    # serverless pricing table (Endpoint settings, GPU configuration; runpod.io/pricing) times
    # 3600. Each remote result then records cost_usd, an estimate; null: no cost recorded.
    price_per_hour: Optional[float] = field(default=None, metadata={
        **bounds(0, low_open=True), **operator_only("it prices the endpoint's GPU time, which a budget counts")})
    # The worker image the sweep expects (e.g. what cvsweep deploy pushed): a result from a
    # worker on another image fails its trial, so a rolling release never mixes two. null: any.
    image: Optional[str] = None


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
    config, and per group option the schema it picks (schema/<group>/<kind>); and the
    ``cvsweep.env`` resolver the options use for defaults an environment variable may replace."""
    from hydra.core.config_store import ConfigStore

    OmegaConf.register_new_resolver("cvsweep.env", env_or_default, replace=True)
    store = ConfigStore.instance()
    store.store(name="cvsweep_schema", node=Config)
    for group, schemas in (("executor", EXECUTOR_SCHEMAS), ("dataset", DATASET_SCHEMAS), ("model", MODEL_SCHEMAS)):
        for key, schema in schemas.items():
            store.store(group=f"schema/{group}", name=getattr(key, "value", key), node=schema)


def dataset_schema(dataset: Any) -> Optional[type]:
    """The schema of a dataset's settings, from its name.

    Args:
        dataset: The dataset's settings, a config node or plain data.

    Returns:
        The schema's dataclass, or None for an unknown name.
    """
    name = _plain(setting(dataset, "name"))
    entry = REGISTRY.get(name) if isinstance(name, str) else None
    return DATASET_SCHEMAS[entry.kind] if entry else None


def dataset_config(data: Mapping) -> DictConfig:
    """A dataset's settings (plain data from a validated run config) typed by its schema.

    Args:
        data: The dataset's settings as plain data.

    Returns:
        A DictConfig typed by the dataset's schema.
    """
    return OmegaConf.merge(OmegaConf.structured(dataset_schema(data)), data)


def model_schema(model: Any) -> Optional[type]:
    """The schema of a model's settings, from its architecture (the base's default if unset).

    Args:
        model: The model's settings, a config node or plain data.

    Returns:
        The schema's dataclass, or None for an unknown architecture.
    """
    architecture = _plain(setting(model, "architecture", ModelConfig.architecture))
    return next((schema for arch, schema in MODEL_SCHEMAS.items() if arch.value == architecture), None)


def executor_schema(executor: Any) -> Optional[type]:
    """The schema of an executor's settings, from its name.

    Args:
        executor: The executor's settings, a config node or plain data.

    Returns:
        The schema's dataclass, or None for an unknown name.
    """
    return EXECUTOR_SCHEMAS.get(_plain(setting(executor, "name")))


# Sections whose schema depends on their content.
PICKED_SCHEMAS = {"dataset": dataset_schema, "model": model_schema, "executor": executor_schema}


def setting(node: Any, key: str, default: Any = None) -> Any:
    """``node[key]`` of a config node or plain data.

    Args:
        node: A DictConfig, a mapping, or anything else (which has no settings).
        key: The setting's key.
        default: What a missing or unset (``???``) setting reads as.

    Returns:
        The setting's value, or ``default``.
    """
    if isinstance(node, DictConfig):
        child = compat.config_node(node, key)
        return default if child is None or child._is_missing() else node[key]
    return node.get(key, default) if isinstance(node, Mapping) else default


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value

def run_config_of(cfg: DictConfig) -> dict:
    """The RunConfig part of a composed config, resolved, as plain JSON-able data.

    Args:
        cfg: The composed config.

    Returns:
        Each run key's section as plain data, enums as their strings.
    """
    return {key: OmegaConf.to_container(cfg[key], resolve=True, enum_to_str=True) for key in RUN_KEYS}

