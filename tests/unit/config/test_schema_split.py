"""The schema's declarations, its validation (cvsweep/config/validate.py) and the objectives
table: ConfigError words a problem as every UserError does, a default an environment variable
may replace stays written in the schema only, and the dataset kind has one definition."""

from __future__ import annotations

import pickle

import pytest
from conftest import compose

from cvsweep.config.datasets import REGISTRY, Kind, kind_of
from cvsweep.config.schema import ConfigError, DatasetName, RunpodExecutorConfig, env_or_default
from cvsweep.errors import CvsweepError, UserError


def test_a_config_error_is_a_user_error_and_still_a_value_error():
    err = ConfigError("training.epochs=0: allowed is [1, 10000]")
    assert isinstance(err, UserError) and isinstance(err, CvsweepError) and isinstance(err, ValueError)
    assert str(err) == "training.epochs=0: allowed is [1, 10000]" and err.problems == [str(err)]


def test_several_problems_are_listed_and_travel_whole():
    err = pickle.loads(pickle.dumps(ConfigError("a=1: no", "b=2: no")))
    assert str(err) == "invalid config:\n  a=1: no\n  b=2: no"
    assert err.problems == ["a=1: no", "b=2: no"]


def test_a_problem_in_a_few_words_gets_the_key_the_value_and_the_fix():
    err = ConfigError("must be positive", key="training.epochs", value=0, fix="use 1 or more")
    assert str(err) == "training.epochs=0: must be positive; use 1 or more"
    assert (err.key, err.value, err.fix, err.problems) == ("training.epochs", 0, "use 1 or more", [str(err)])
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_the_runpod_url_is_the_schemas_default_unless_the_environment_names_another(monkeypatch):
    default = RunpodExecutorConfig().base_url
    monkeypatch.delenv("RUNPOD_ENDPOINT_BASE_URL", raising=False)
    assert compose("executor=runpod").executor.base_url == default == env_or_default("RUNPOD_ENDPOINT_BASE_URL")
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", "http://127.0.0.1:9/v2")
    assert compose("executor=runpod").executor.base_url == "http://127.0.0.1:9/v2"
    assert compose("executor=runpod", "executor.base_url=http://other/v2").executor.base_url == "http://other/v2"


def test_an_environment_variable_no_field_names_is_refused(monkeypatch):
    monkeypatch.delenv("NO_SUCH_CVSWEEP_VARIABLE", raising=False)
    with pytest.raises(KeyError):
        env_or_default("NO_SUCH_CVSWEEP_VARIABLE")


@pytest.mark.parametrize("name", REGISTRY)
def test_the_dataset_kind_is_the_registrys_for_a_name_and_for_its_schema_member(name):
    assert kind_of(name) == kind_of(DatasetName[name]) == REGISTRY[name].kind
    assert isinstance(kind_of(name), Kind)
