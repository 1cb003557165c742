"""Validation of a config against the schema (cvsweep/config/schema.py): what the types cannot
say. Plain data (the JSON a worker receives, a client's request) becomes a typed run config
through ``load_run_config``; a composed config is checked with ``check_values``. Every problem
names the key, the value given and what is allowed, and all problems come in one ConfigError.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from cvsweep import compat
from cvsweep.config.datasets import REGISTRY, HeldOut, Kind, Loader, kind_of, names_of
from cvsweep.config.schema import (
    DATASET_SCHEMAS,
    MAX_IMAGE_SIDE,
    MODEL_SCHEMAS,
    PICKED_SCHEMAS,
    RUN_KEYS,
    Architecture,
    Config,
    ConfigError,
    DataLocation,
    RunConfig,
    RunpodExecutorConfig,
    SamplingStrategy,
    dataset_schema,
    model_schema,
    setting,
)


# RunPod's endpoint ids are letters and digits, public ones with '-' (the form adds '_'):
# nothing that could steer a URL (no '/', '.', '?', '%', '#').
ENDPOINT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# serverless/endpoints/send-requests.mdx: the TTL's timer starts at submission and covers the
# queue too, so it must outlast the execution timeout by at least this much queue time.
QUEUE_MARGIN_S = 60


def omegaconf_problem(err: Exception) -> str:
    """One line from an OmegaConf error: the full key, then OmegaConf's own message.

    Args:
        err: The exception OmegaConf raised.

    Returns:
        ``"<full key>: <message>"``, or the message alone when the error names no key.
    """
    message = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {message}" if key else message


def load_run_config(data: Mapping[str, Any]) -> DictConfig:
    """Validate plain data (e.g. JSON from a client) as a RunConfig: types, keys, values.

    The dataset's schema follows from dataset.name, the model's from model.architecture.

    Args:
        data: The run config as plain data.

    Returns:
        The typed run config.

    Raises:
        ConfigError: Listing every problem found, each naming the key, the value and what is
            allowed.
    """
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
    if cfg.dataset.get("num_classes", 0) is None:  # settled before a run config is made (data/sources.py)
        raise ConfigError("dataset.num_classes=None: a run config carries the number of classes, counted "
                          "before the trial is sent; set dataset.num_classes")
    return cfg


def _picked_schema(data: Mapping, section: str, key: str, allowed: list) -> type:
    """The schema the data's ``section.key`` picks, or ConfigError naming what is allowed."""
    if not isinstance(data[section], Mapping):
        raise ConfigError(f"{section}: must be a mapping of settings, not {type(data[section]).__name__}")
    schema = PICKED_SCHEMAS[section](data[section])
    if schema is None:
        raise ConfigError(f"{section}.{key}={setting(data[section], key)!r}: allowed are {allowed}")
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
    """Range checks from field metadata plus cross-field rules.

    They cover the run config and, in a full application config, the executor.

    Args:
        cfg: A run config or a full application config.

    Raises:
        ConfigError: Listing every problem found.
    """
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
    if not prefix and f.name in PICKED_SCHEMAS:
        typed = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        return typed if is_dataclass(typed) else PICKED_SCHEMAS[f.name](node)
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
    if "executor" in cfg and cfg.executor.name == "runpod":
        problems += _runpod_rule_problems(cfg.executor)
    problems += _download_count_problems(dataset, entry) if dataset.location != DataLocation.worker else []
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
    if dataset.get("num_classes", 0) is None:  # counted only where the data lies
        what = "the class folders" if kind_of(dataset.name) == Kind.image_folder else "the labels"
        return [f"dataset.num_classes=None: with dataset.location=worker {what} of {path} are not "
                "here to count; set dataset.num_classes to their number"]
    return []


def _download_count_problems(dataset: DictConfig, entry) -> list[str]:
    """A download is read by the trial, not here: its labels cannot be counted beforehand."""
    if dataset.get("num_classes", 0) is not None or dataset.path or not entry.downloads:
        return []
    return [f"dataset.num_classes=None: dataset={dataset.name.value} is downloaded by the trial, not read "
            "here to count its labels; set dataset.num_classes (or dataset.path to a local copy)"]


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
    text = kind_of(dataset.name) == Kind.text
    if text and model.architecture != Architecture.lstm:
        problems.append(f"model.architecture={model.architecture.value} cannot read dataset={dataset.name.value} "
                        "(token sequences): use model=lstm")
    if not text and model.architecture == Architecture.lstm:
        problems.append(f"model.architecture=lstm reads token sequences; dataset={dataset.name.value} is images: "
                        f"use model=cnn, or a text dataset ({', '.join(names_of(Kind.text))})")
    return problems


def runpod_problems(executor: Any) -> list[str]:
    """executor=runpod's values that RunPod would refuse or act on badly, before any request:
    the policy's bounds, a TTL too short for the execution timeout, an endpoint id that is
    not one.

    Args:
        executor: executor=runpod's settings.

    Returns:
        One message per problem, each naming the setting and what is allowed; empty when none.
    """
    return list(_range_problems(executor, RunpodExecutorConfig, "executor.")) + _runpod_rule_problems(executor)


def _runpod_rule_problems(executor: Any) -> list[str]:
    problems = []
    endpoint_id = executor.endpoint_id
    if endpoint_id and not ENDPOINT_ID.fullmatch(str(endpoint_id)):
        problems.append(f"executor.endpoint_id={endpoint_id!r}: not a RunPod endpoint id (letters, digits, '-' and "
                        "'_', at most 64); copy the id from the endpoint's page in the RunPod console")
    timeout, ttl = executor.execution_timeout_s, executor.ttl_s
    if _finite(timeout) and _finite(ttl) and ttl < timeout + QUEUE_MARGIN_S:
        problems.append(f"executor.ttl_s={ttl:g}: must be at least executor.execution_timeout_s={timeout:g} + "
                        f"{QUEUE_MARGIN_S} s, as RunPod deletes a job when its TTL runs out, even mid-run; "
                        f"raise executor.ttl_s to {timeout + QUEUE_MARGIN_S:g} or more")
    return problems


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
