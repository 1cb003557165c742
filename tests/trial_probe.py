"""A Hydra callback for the tests (``+hydra.callbacks.probe._target_=tests.trial_probe.TrialFolderAtJobEnd``):
when each job ends (a trial, in the sweep process, before the next one starts) it records the
files its trial folder holds at that moment, one JSON line per trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


class TrialFolderAtJobEnd(Callback):
    def __init__(self, record: str) -> None:
        self.record = Path(record)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        folder = Path(HydraConfig.get().runtime.output_dir)
        with self.record.open("a") as out:
            out.write(json.dumps({"job": folder.name, "files": sorted(p.name for p in folder.iterdir())}) + "\n")
