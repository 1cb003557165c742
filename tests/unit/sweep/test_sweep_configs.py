"""The sweep-config cache gives exactly the config Hydra composes, and composes whenever an
override is more than a value (a group choice, +key, ~key, hydra.*)."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from cvsweep.config.schema import register_configs
from cvsweep.sweep.job_configs import SweepConfigCache

JOBS = [
    ["model.filters=8", "model.dropout=0.1", "training.learning_rate=0.001", "plots=none"],
    ["model.filters=32", "model.dropout=0.4651987530482831", "training.learning_rate=0.0026745157952125713",
     "plots=none"],
    ["model.filters=16", "model.dropout=0.0", "training.learning_rate=1e-05", "plots=summary"],
    ["model.filters=16", "model.dropout=0.3", "training.learning_rate=0.01", "plots=none", "dataset.pixel_scale=8"],
    ["model=lstm", "dataset=imdb", "model.lstm_units=32"],
    ["+model.extra=1"],
    ["hydra.job.name=x", "model.filters=4"],
    ["model.activation=swish", "model.batch_norm=true", "training.batch_size=64", "output_root=/tmp/elsewhere"],
    ["model.activation=tanh", "model.batch_norm=false", "training.batch_size=16", "output_root=/tmp/other"],
    # Group choices the same in every job (the command line's, passed along by the sweeper).
    ["search=base", "dataset=mnist", "dataset.path=/data/a.npz", "model.filters=8", "training.epochs=1"],
    ["search=base", "dataset=mnist", "dataset.path=/data/b.npz", "model.filters=16", "training.epochs=3"],
    ["search=base", "dataset=fashion_mnist", "dataset.path=/data/a.npz", "model.filters=8", "training.epochs=1"],
]


@pytest.fixture(scope="module")
def hydra_loader():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=[], run_mode=RunMode.MULTIRUN)
        yield loader, master
    GlobalHydra.instance().clear()


def as_data(config):
    return OmegaConf.to_container(config, resolve=False)


@pytest.mark.slow
def test_cached_job_configs_equal_hydras_own(hydra_loader):
    loader, master = hydra_loader
    cache = SweepConfigCache(loader)
    for job in JOBS + JOBS:  # the second round comes from the cache where it can
        expected = loader.load_sweep_config(master, list(job))
        got = cache.load_sweep_config(master, list(job))
        assert as_data(got) == as_data(expected), job
        app = [key for key in expected if key != "hydra"]  # hydra.* resolves only inside a job
        assert OmegaConf.to_yaml(OmegaConf.masked_copy(got, app), resolve=True) == \
            OmegaConf.to_yaml(OmegaConf.masked_copy(expected, app), resolve=True), job


def test_only_value_overrides_are_cached(hydra_loader):
    loader, master = hydra_loader
    cache = SweepConfigCache(loader)
    for job in JOBS:
        cache.load_sweep_config(master, list(job))
    cached_keys = set(cache.templates)
    assert ("model.filters", "model.dropout", "training.learning_rate", "plots") in cached_keys
    assert ("search=base", "dataset=mnist", "dataset.path", "model.filters", "training.epochs") in cached_keys
    assert ("search=base", "dataset=fashion_mnist", "dataset.path", "model.filters", "training.epochs") in cached_keys
    assert all(not any(key.startswith(("+", "hydra")) for key in keys) for keys in cached_keys)


def test_a_cached_config_is_a_copy(hydra_loader):
    loader, master = hydra_loader
    cache = SweepConfigCache(loader)
    first = cache.load_sweep_config(master, JOBS[0])
    second = cache.load_sweep_config(master, JOBS[1])
    first.model.filters = 999  # what run_job or a launcher does to one job's config
    third = cache.load_sweep_config(master, JOBS[0])
    assert third.model.filters == 8 and second.model.filters == 32


def test_wrong_values_are_refused_like_hydra_refuses_them(hydra_loader):
    loader, master = hydra_loader
    cache = SweepConfigCache(loader)
    cache.load_sweep_config(master, ["model.filters=8"])
    with pytest.raises(ConfigCompositionException) as from_cache:
        cache.load_sweep_config(master, ["model.filters=many"])
    with pytest.raises(ConfigCompositionException) as from_hydra:
        loader.load_sweep_config(master, ["model.filters=many"])
    assert str(from_cache.value) == str(from_hydra.value) == "Error merging override model.filters=many"
