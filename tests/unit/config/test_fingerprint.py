"""The fingerprint: stable under key order and spelling, different for any setting that can
change a run, blind to what cannot (output paths, executor)."""

from __future__ import annotations

import json
import random
from dataclasses import fields, is_dataclass
from enum import Enum

import pytest
import yaml
from conftest import TINY_RUN, compose
from omegaconf import OmegaConf

from cvsweep.config.fingerprint import canonical_json, fingerprint
from cvsweep.config.schema import RunConfig, dataset_schema, model_schema, run_config_of
from cvsweep.config.validate import load_run_config


def fp(data) -> str:
    return fingerprint(run_config_of(load_run_config(data)))


def _shuffled(value, rng):
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    return value


def test_stable_under_key_order_and_formatting():
    reference = fp(TINY_RUN)
    rng = random.Random(0)
    for _ in range(5):
        assert fp(_shuffled(TINY_RUN, rng)) == reference
    # The same settings written as YAML with other spellings: 1e-3 for 0.001, 2.0e0 for 2 epochs' peers.
    spelled = yaml.safe_load(
        """
        training: {seed: 3, batch_size: 64, epochs: 2, learning_rate: 1.0e-3}
        sampling: {fraction: 1, strategy: full}
        model: {dropout: 1.0e-1, dense_layers: 0, filters: 8, conv_layers: 1}
        dataset: {test_fraction: 2.0e-1, pixel_scale: 16, num_classes: 10, path: null, name: digits}
        health: {}
        """
    )
    assert fp(spelled) == reference
    assert fp(json.loads(json.dumps(TINY_RUN, indent=4))) == reference


def test_canonical_json_is_compact_sorted_and_strict():
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'


def _leaves(schema, data, prefix=""):
    """Every setting of a run config's schema: each dataset kind and architecture its own."""
    for f in fields(schema):
        picked = {"dataset.": dataset_schema, "model.": model_schema}.get(f"{prefix}{f.name}.")
        sub = picked(data[f.name]) if picked else f.default_factory if callable(f.default_factory) else None
        if is_dataclass(sub):
            yield from _leaves(sub, data.get(f.name, {}), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def _other_value(key, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, Enum):
        return next(member for member in type(value) if member != value)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.1
    if isinstance(value, str):
        return value + "-other"
    if key == "dataset.image_size":
        return [v + 1 for v in value]
    if value is None:
        return {"dataset.path": "/data/other.npz", "training.time_budget_s": 60.0, "dataset.sha256": "0" * 64,
                "training.clipnorm": 1.0, "training.clipvalue": 0.5, "model.dense_activation": "tanh"}[key]
    raise AssertionError(f"no perturbation for {key}={value!r}")


# One run config per dataset kind (images with the CNN, an image folder, text with the LSTM).
KINDS = {
    "images": TINY_RUN,
    "image_folder": {**TINY_RUN, "dataset": {"name": "gtsrb", "path": "/data/gtsrb", "num_classes": 43,
                                             "test_fraction": 0.2}},
    "text": {**TINY_RUN, "dataset": {"name": "imdb", "num_classes": 2}, "model": {"architecture": "lstm"}},
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_setting_in_the_schema_changes_the_fingerprint(kind):
    base = load_run_config(KINDS[kind])
    reference = fingerprint(run_config_of(base))
    keys = list(_leaves(RunConfig, KINDS[kind]))  # derived from the schema, not a hand-kept list

    def flat(data, prefix=""):
        for key, value in data.items():
            yield from flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]

    assert sorted(keys) == sorted(flat(run_config_of(base)))  # the kind's settings, no other kind's
    for key in keys:
        if key in ("dataset.name", "model.architecture"):
            continue  # they pick the schema: another value is another kind of run (refused alone)
        changed = base.copy()
        value = OmegaConf.select(changed, key)
        OmegaConf.update(changed, key, _other_value(key, value))
        assert fingerprint(run_config_of(changed)) != reference, key


def test_output_paths_and_executor_do_not_change_it(tmp_path):
    def fp_of(*overrides):
        return fingerprint(run_config_of(compose(*overrides)))

    reference = fp_of(f"output_root={tmp_path}")
    assert fp_of(f"output_root={tmp_path / 'elsewhere'}", "hydra.sweeper.n_trials=3", "objective=val_loss") == reference
    assert fp_of("training.seed=1") != reference
