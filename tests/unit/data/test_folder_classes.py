"""An image folder's dataset.num_classes: counted from its class folders (train/ where train/
and test/ exist) when unset, checked against them when given, needed where the folders are on
the worker; the run config carries the number, so the fingerprint is what it would be typed."""

from __future__ import annotations

import pytest
from conftest import as_the_command_checks, class_folder_tree, compose

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import run_config_of
from cvsweep.data.image_folder import class_names
from cvsweep.data.sources import pin_dataset, settle_num_classes


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))


def test_the_classes_are_the_folders_of_one_tree_or_of_train(tmp_path):
    assert class_names(str(class_folder_tree(tmp_path / "one"))) == ["cat", "dog", "emu"]
    split = tmp_path / "split"
    class_folder_tree(split / "train", classes=("a", "b", "c", "d"))
    class_folder_tree(split / "test", classes=("a", "b", "c", "d"), per_class=1)
    assert class_names(str(split)) == ["a", "b", "c", "d"]


def test_unset_is_counted_into_the_config_and_fingerprinted_as_if_typed(tmp_path):
    root = class_folder_tree(tmp_path / "photos")
    cfg = compose("dataset=image_folder", f"dataset.path={root}")
    assert cfg.dataset.num_classes is None
    settle_num_classes(cfg.dataset)
    assert cfg.dataset.num_classes == 3
    typed = run_config_of(compose("dataset=image_folder", f"dataset.path={root}", "dataset.num_classes=3"))
    assert run_config_of(cfg) == typed
    unset = run_config_of(compose("dataset=image_folder", f"dataset.path={root}"))
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


def test_on_the_worker_the_number_is_needed(capsys):
    args = ["executor=runpod", "executor.fallback=none", "dataset=image_folder", "dataset.location=worker",
            "dataset.path=/runpod-volume/photos"]
    status, said = as_the_command_checks(args, capsys, multirun=False)
    assert status == 2 and said.strip() == (
        "cvsweep: dataset.num_classes=None: with dataset.location=worker the class folders of /runpod-volume/photos "
        "are not here to count; set dataset.num_classes to their number")
