"""``cvsweep dataset=image_folder dataset.path=DIR training.epochs=1``: a class-per-folder tree
trains with no dataset.num_classes typed, in this process, and records the number it counted."""

from __future__ import annotations

import logging
import sys

import pytest
from conftest import class_folder_tree, read_json


@pytest.fixture
def in_process_command(monkeypatch):
    """Run the ``cvsweep`` command's Hydra app here, then leave Hydra and logging as the tests
    found them."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def command(*args: str) -> None:
        from cvsweep.cli.hydra_app import run

        monkeypatch.setattr(sys, "argv", ["cvsweep", *args])
        run()

    yield command
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # type: ignore[assignment]
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:], root.level = handlers, level


def test_an_image_folder_trains_without_num_classes(tmp_path, monkeypatch, in_process_command):
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    root = class_folder_tree(tmp_path / "photos", per_class=10)
    in_process_command("dataset=image_folder", f"dataset.path={root}", "training.epochs=1", "plots=none",
                       f"output_root={tmp_path / 'out'}")
    result = read_json(next((tmp_path / "out").glob("runs/*/result.json")))
    assert result["status"] == "completed", result.get("reason")
    assert result["config"]["dataset"]["num_classes"] == 3 and result["data"]["image_shape"] == [32, 32, 3]
