"""An image dataset's dataset.num_classes: an image folder's counted from its class folders
(train/ where train/ and test/ exist), a local .npz's from its labels, when unset; checked
against them when given; needed where the data is not here to count (on the worker, a
download). The run config carries the number, so the fingerprint is what it would be typed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import as_the_command_checks, class_folder_tree, compose

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import ConfigError, load_run_config
from cvsweep.data.image_folder import class_names
from cvsweep.data.source_identity import pin_dataset
from cvsweep.data.sources import DataError, settle_num_classes


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))


def test_the_classes_are_the_folders_of_one_tree_or_of_train(tmp_path):
    assert class_names(str(class_folder_tree(tmp_path / "one"))) == ["cat", "dog", "emu"]
    split = tmp_path / "split"
    class_folder_tree(split / "train", classes=("a", "b", "c", "d"))
    class_folder_tree(split / "test", classes=("a", "b", "c", "d"), per_class=1)
    assert class_names(str(split)) == ["a", "b", "c", "d"]


# An image folder's classes are its folders; an .npz's its labels: here 12, the last one only in
# the test set (the preset 10 of old refused it).
COUNTED = {
    "image_folder": (lambda tmp_path: class_folder_tree(tmp_path / "photos"), 3),
    "npz": (lambda tmp_path: labelled_npz(tmp_path / "twelve.npz", np.arange(44) % 11, np.arange(12)), 12),
}


@pytest.mark.parametrize("name", COUNTED)
def test_unset_is_counted_into_the_config_and_fingerprinted_as_if_typed(tmp_path, name):
    make, count = COUNTED[name]
    given = [f"dataset={name}", f"dataset.path={make(tmp_path)}"]
    cfg = compose(*given)
    assert cfg.dataset.num_classes is None
    settle_num_classes(cfg.dataset)
    assert cfg.dataset.num_classes == count
    typed = run_config_of(compose(*given, f"dataset.num_classes={count}"))
    assert run_config_of(cfg) == typed
    unset = run_config_of(compose(*given))
    assert fingerprint(pin_dataset(unset)) == fingerprint(pin_dataset(typed))  # the study's identity too


def test_a_given_number_the_folders_do_not_have_is_refused_in_one_line(tmp_path, capsys):
    root = class_folder_tree(tmp_path / "photos")
    status, said = as_the_command_checks(["dataset=image_folder", f"dataset.path={root}", "dataset.num_classes=5"],
                                         capsys, multirun=False)
    assert status == 2 and said.strip() == (
        f"cvsweep: dataset.num_classes=5: dataset.path={root} has 3 class folders; set dataset.num_classes=3, "
        "or dataset.num_classes=null to count them")
    # gtsrb's preset (43) is a number given: checked the same way, and null counts.
    status, said = as_the_command_checks(["dataset=gtsrb", f"dataset.path={root}"], capsys, multirun=False)
    assert status == 2 and "dataset.num_classes=43: " in said and "has 3 class folders" in said
    status, said = as_the_command_checks(["dataset=gtsrb", f"dataset.path={root}", "dataset.num_classes=null"],
                                         capsys, multirun=False)
    assert status == 0, said


def labelled_npz(path, train_labels, test_labels):
    """A Keras-layout .npz of 6x6 noise images with the given labels."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (len(train_labels), 6, 6), dtype=np.uint8),
             y_train=np.asarray(train_labels, dtype=np.uint8),
             x_test=rng.integers(0, 255, (len(test_labels), 6, 6), dtype=np.uint8),
             y_test=np.asarray(test_labels, dtype=np.uint8))
    return path


def test_an_npz_of_more_classes_than_given_is_refused_and_unset_passes_the_command_checks(tmp_path, capsys):
    data = labelled_npz(tmp_path / "twelve.npz", np.arange(48) % 12, np.arange(12))
    status, said = as_the_command_checks(["dataset=npz", f"dataset.path={data}", "dataset.num_classes=10",
                                          "model.conv_layers=1"], capsys, multirun=False)
    assert status == 2 and said.strip().startswith(f"cvsweep: dataset.path={data}: y_train labels must be integers "
                                                   "in [0, 9] (dataset.num_classes=10)"), said
    status, said = as_the_command_checks(["dataset=npz", f"dataset.path={data}", "model.conv_layers=1"], capsys,
                                         multirun=False)
    assert status == 0, said


def test_labels_of_one_class_or_below_zero_are_refused_naming_the_file(tmp_path):
    for name, train, expected in (("zeros", [0] * 8, "every label is 0; a classifier needs labels of at least 2"),
                                  ("negative", [-1, 0, 1, 2], "y_train labels must be integers from 0")):
        path = tmp_path / f"{name}.npz"
        rng = np.random.default_rng(0)
        np.savez(path, x_train=rng.random((len(train), 6, 6)), y_train=np.asarray(train),
                 x_test=rng.random((2, 6, 6)), y_test=np.asarray([0, 0]))
        cfg = compose("dataset=npz", f"dataset.path={path}")
        with pytest.raises(DataError) as err:
            settle_num_classes(cfg.dataset)
        assert str(err.value).startswith(f"dataset.path={path}: {expected}"), err.value


ON_THE_WORKER = ["executor=runpod", "executor.fallback=none", "dataset.location=worker"]
NOT_HERE = {
    "folder-on-the-worker": ([*ON_THE_WORKER, "dataset=image_folder", "dataset.path=/runpod-volume/photos"],
                             "with dataset.location=worker the class folders of /runpod-volume/photos are not here "
                             "to count; set dataset.num_classes to their number"),
    "npz-on-the-worker": ([*ON_THE_WORKER, "dataset=npz", "dataset.path=/runpod-volume/data.npz"],
                          "with dataset.location=worker the labels of /runpod-volume/data.npz are not here to "
                          "count; set dataset.num_classes to their number"),
    "download": (["dataset=mnist", "dataset.num_classes=null"],
                 "dataset=mnist is downloaded by the trial, not read here to count its labels; set "
                 "dataset.num_classes (or dataset.path to a local copy)"),
}


@pytest.mark.parametrize("case", NOT_HERE)
def test_where_the_data_is_not_here_the_number_is_needed(capsys, case):
    args, why = NOT_HERE[case]
    status, said = as_the_command_checks(args, capsys, multirun=False)
    assert status == 2 and said.strip() == f"cvsweep: dataset.num_classes=None: {why}"


def test_a_run_config_without_the_number_is_refused_where_it_arrives():
    plain = run_config_of(compose("dataset=npz", "dataset.path=/data/x.npz", "dataset.num_classes=10"))
    assert load_run_config(plain).dataset.num_classes == 10
    with pytest.raises(ConfigError) as err:
        load_run_config({**plain, "dataset": {**plain["dataset"], "num_classes": None}})
    assert str(err.value) == ("dataset.num_classes=None: a run config carries the number of classes, counted "
                              "before the trial is sent; set dataset.num_classes")
