"""The sweep process's view of a dataset: the sha256 and shape of what it reads here, digits'
remembered per scikit-learn version and split, so that a sweep need not import scikit-learn;
a wrong entry is refused by the training process's own load, never trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose

from cvsweep.data.source_identity import FILE, identify
from cvsweep.data.sources import DataError, load_source


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_digits_identity_is_the_loaded_arrays_and_is_remembered_by_version_and_split(cache):
    dataset = compose().dataset
    source = load_source(dataset)
    identity = identify(dataset)
    assert (identity.sha256, identity.shape, identity.kind) == (source.sha256, (8, 8), source.kind)
    remembered = json.loads((cache / FILE).read_text())
    (key,) = remembered
    assert key.startswith("digits scikit-learn=") and "test_fraction=0.2" in key
    assert remembered[key] == {"sha256": source.sha256, "shape": [8, 8], "kind": "image"}
    other = identify(compose("dataset.test_fraction=0.3").dataset)  # another split: its own entry
    assert other.sha256 != source.sha256 and len(json.loads((cache / FILE).read_text())) == 2


def test_a_wrong_entry_is_used_but_the_training_load_refuses_it(cache):
    dataset = compose().dataset
    identify(dataset)
    remembered = json.loads((cache / FILE).read_text())
    (key,) = remembered
    remembered[key]["sha256"] = "0" * 64
    (cache / FILE).write_text(json.dumps(remembered))
    assert identify(dataset).sha256 == "0" * 64
    pinned = compose("dataset.sha256=" + "0" * 64).dataset
    with pytest.raises(DataError, match="dataset.sha256=0000"):
        load_source(pinned)  # what the trial's training process does with the pinned run config


def test_a_pinned_sha256_the_data_does_not_have_is_refused_from_memory_too(cache):
    identify(compose().dataset)
    with pytest.raises(DataError) as err:
        identify(compose("dataset.sha256=" + "1" * 64).dataset)
    assert str(err.value).startswith("dataset.sha256=" + "1" * 64 + ": the data loaded now hashes to ")


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"digits": 5}'])
def test_an_unreadable_memory_is_read_again_and_rewritten(cache, content):
    cache.mkdir()
    (cache / FILE).write_text(content)
    dataset = compose().dataset
    assert identify(dataset).sha256 == load_source(dataset).sha256
    assert any(isinstance(v, dict) and v.get("shape") == [8, 8] for v in json.loads((cache / FILE).read_text()).values())


def test_a_file_is_never_remembered_its_content_can_change(cache, tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((8, 6, 6)), y_train=np.arange(8) % 2, x_test=rng.random((4, 6, 6)),
             y_test=np.arange(4) % 2)
    identity = identify(compose("dataset=npz", f"dataset.path={path}", "dataset.num_classes=2").dataset)
    assert identity.shape == (6, 6) and not (cache / FILE).exists()


def test_a_cache_that_cannot_be_written_still_gives_the_identity(cache):
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the folder should be")
    dataset = compose().dataset
    assert identify(dataset).sha256 == load_source(dataset).sha256
