"""The RunPod serverless worker: one job is one trial, trained by cvsweep.train.train.

    python remote/handler.py                                  # serve (on RunPod, or the emulator)
    python remote/handler.py --test_input "$(cat remote/test_input.json)"   # one local job

The input is refused with a structured error, before any training, unless it is exactly
what cvsweep.payload accepts (schema, size, keys, fingerprint) and its dataset.path is data
the worker may read and use (under its data roots: CVSWEEP_DATA_ROOTS). The output is train()'s
result as plain JSON, plus the worker's id.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# The image and the emulator run this file from a checkout: make the package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import runpod  # noqa: E402

from cvsweep.data_access import confine_to_data_roots  # noqa: E402
from cvsweep.payload import PayloadError, accept_data, accept_input  # noqa: E402
from cvsweep.train import train  # noqa: E402


def handler(job: dict) -> dict:
    try:
        run_config = accept_input(job.get("input"))
        accept_data(run_config)
    except PayloadError as err:
        return {"error": err.to_error()}
    result = train(run_config, progress=lambda update: runpod.serverless.progress_update(job, update))
    result["executed_on"]["worker_id"] = os.environ.get("RUNPOD_POD_ID")
    # The SDK silently drops what json.dumps rejects: make sure there is nothing of the kind.
    return json.loads(json.dumps(result, allow_nan=False))


def _warm_up() -> None:
    """Import TensorFlow before taking jobs: a cold start belongs to the worker, not a trial."""
    import tensorflow  # noqa: F401


if __name__ == "__main__":
    confine_to_data_roots()  # this process and any it starts read data only under the data roots
    _warm_up()
    runpod.serverless.start({"handler": handler})
