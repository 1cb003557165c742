"""The dataset registry (cvsweep/config/datasets.py) is the one table of datasets: every entry has
its conf/dataset preset and back, and what derives from it agrees with it."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR, TINY_RUN, compose
from omegaconf import OmegaConf

from cvsweep.config.datasets import REGISTRY, HeldOut, Kind, kind_of, names_of
from cvsweep.config.schema import DATASET_SCHEMAS, FOLDER_DATASETS, ConfigError, DatasetName
from cvsweep.config.validate import load_run_config


def test_every_entry_has_a_preset_and_every_preset_an_entry():
    presets = sorted(path.stem for path in (CONF_DIR / "dataset").glob("*.yaml"))
    assert presets == sorted(REGISTRY)


def test_the_schema_choices_and_kind_sets_derive_from_the_registry():
    assert [member.value for member in DatasetName] == list(REGISTRY)
    assert {member.value for member in FOLDER_DATASETS} == set(names_of(Kind.image_folder))
    assert all(kind_of(member) == kind_of(member.value) == REGISTRY[member.value].kind for member in DatasetName)
    assert set(DATASET_SCHEMAS) == set(Kind)


@pytest.mark.parametrize("name", REGISTRY)
def test_a_preset_picks_its_schema_model_and_search(name):
    entry, cfg = REGISTRY[name], compose(f"dataset={name}")
    assert cfg.dataset.name.value == name
    assert OmegaConf.get_type(cfg.dataset) is DATASET_SCHEMAS[entry.kind]
    choices = cfg.hydra.runtime.choices
    assert (choices.model, choices.search) == (entry.model, entry.search)


@pytest.mark.parametrize("name", REGISTRY)
def test_the_test_split_rule_follows_the_registry(name):
    """A test share is required exactly where the source has no test split of its own."""
    entry = REGISTRY[name]
    dataset = {"name": name, "num_classes": 10, "path": "/data/x" if entry.needs_path else None}
    model = {"architecture": "lstm"} if entry.kind == Kind.text else TINY_RUN["model"]
    run = {**TINY_RUN, "dataset": dataset, "model": model}
    if entry.kind == Kind.text:  # no test_fraction at all: its sets always come with a test split
        load_run_config(run)
        return
    for test_fraction in (None, 0.2):
        run["dataset"] = {**dataset, "test_fraction": test_fraction}
        wants_share = entry.test_set in (HeldOut.drawn, HeldOut.folder)
        if (test_fraction is not None) == wants_share:
            load_run_config(run)
        else:
            with pytest.raises(ConfigError, match="dataset.test_fraction"):
                load_run_config(run)


def test_a_setting_of_another_kind_names_the_datasets_that_have_it():
    with pytest.raises(ConfigError) as err:
        load_run_config({**TINY_RUN, "dataset": {**TINY_RUN["dataset"], "vocab_size": 100}})
    assert f"only for text datasets ({', '.join(names_of(Kind.text))})" in str(err.value)
    with pytest.raises(ConfigError, match=r"dataset.name='nope': allowed are \['digits'"):
        load_run_config({**TINY_RUN, "dataset": {"name": "nope"}})
