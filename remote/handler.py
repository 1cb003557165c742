"""The RunPod serverless worker: one job is one trial, trained by cvsweep.training.train.train in a
child process (cvsweep/training/process.py).

    python remote/handler.py                                  # serve (on RunPod, or the emulator)
    python remote/handler.py --test_input "$(cat remote/test_input.json)"   # one local job (the SDK's test mode)
    python remote/handler.py --smoke-test remote/test_input.json   # one job; a JSON verdict, exit 0 if it trained

The input is refused with a structured error, before any training, unless it is exactly
what cvsweep.execution.payload accepts (schema, size, keys, fingerprint, the caps and stores the
endpoint's environment allows) and its dataset.path is data the worker may read and use (under its
data roots: CVSWEEP_DATA_ROOTS). The output is train()'s result as plain JSON, plus the worker's
id and image (``executed_on``), at most CVSWEEP_MAX_RESULT_BYTES serialized; a run that failed says why in its ``failure``
(``{"code", "problems"}``). When the input asks for the model (``transport``), train() saves it
in a temporary folder and the result's ``model`` carries it home: inline, through an S3 store,
or missing and why (cvsweep/execution/model_transport.py). Anything else that goes wrong is a FAILED job whose error is
``{"code": "internal_error", "problems": [...]}``, never a traceback.

The handler is async, so the SDK's event loop keeps running while a job trains: when RunPod
stops a job (a cancel, a pruned trial, its executionTimeout), the SDK cancels the job's task,
and the handler asks the training process to end the run at its next batch end: the worker
takes its next job within a second or so, with TensorFlow still warm. A run that does not end
within 10 s (a read that never returns) has its training process killed, and a replacement
starts at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# The image and the emulator run this file from a checkout: make the package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cvsweep.training.tf_runtime import configure_entry_point  # noqa: E402

configure_entry_point()  # before anything imports TensorFlow
# The SDK's default, DEBUG, writes each job's whole output to the log twice: with an inline
# model, up to max_inline_model_mb of base64 per line, which slows every job. RUNPOD_LOG_LEVEL=DEBUG
# on the endpoint brings it back.
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

import runpod  # noqa: E402

from cvsweep.data.access import confine_to_data_roots, limit  # noqa: E402
from cvsweep.execution import model_transport  # noqa: E402
from cvsweep.execution.payload import RESULT_CAP_VARIABLE, PayloadError, accept_data, accept_input  # noqa: E402
from cvsweep.training.failures import INTERNAL_ERROR, Failure  # noqa: E402
from cvsweep.training.process import TrainingProcess  # noqa: E402

TRAINING = TrainingProcess()
# serverless/workers/handler-functions.mdx "Payload limits": /run 10 MB (read as 10**6 bytes, the
# smaller reading); the worker's own cap (CVSWEEP_MAX_RESULT_BYTES) keeps a margin under it.
PAYLOAD_LIMIT_BYTES = 10_000_000
RESULT_TOO_LARGE = "result_too_large"
IMAGE_VARIABLE, COMMIT_VARIABLE = "CVSWEEP_IMAGE", "CVSWEEP_IMAGE_COMMIT"  # set by remote/Dockerfile


async def handler(job: dict, progress=None) -> dict:
    """Run one RunPod job: check its input and data, train, and pack the model if asked.

    Args:
        job: The SDK's job: its ``id`` and ``input`` (see cvsweep/execution/payload.py).
        progress: Called with each epoch's report; None (the SDK calls with the job alone):
            each epoch goes out as the job's progress.

    Returns:
        The run's result as plain JSON, or ``{"error": ...}`` for an input refused or a fault.

    Raises:
        asyncio.CancelledError: RunPod stopped the job; the training is stopped first.
    """
    try:
        run_config = accept_input(job.get("input"))
        accept_data(run_config)
    except PayloadError as err:
        return {"error": err.to_error()}
    except Exception as err:  # whatever the checks trip over: still an answer the client can read
        return {"error": _internal_error(err)}
    transport = job["input"].get("transport")  # None: the client wants no model back
    model_dir = tempfile.mkdtemp(prefix="cvsweep-model-") if transport is not None else None
    try:
        result = await train_in_child(run_config, progress or progress_reporter(job), model_dir=model_dir)
        result["executed_on"].update(worker_id=os.environ.get("RUNPOD_POD_ID"), **image_identity())
        trained_model = result.get("model")
        if "model" in result:  # an upload waits in a thread: a cancel is still heard
            result["model"] = await asyncio.to_thread(model_transport.pack, result["model"], model_dir, transport,
                                                      result["fingerprint"], str(job.get("id")))
        # The SDK silently drops what json.dumps rejects: make sure there is nothing of the kind.
        result = json.loads(json.dumps(result, allow_nan=False))
        return await asyncio.to_thread(fit_result, result, trained_model, model_dir, transport, str(job.get("id")))
    except asyncio.CancelledError:  # RunPod stopped the job (a cancel, a pruned trial): stop billing now
        TRAINING.stop()  # at the next batch end, keeping TensorFlow warm; killed if it does not end
        raise
    except Exception as err:
        return {"error": _internal_error(err)}
    finally:
        if model_dir is not None:
            shutil.rmtree(model_dir, ignore_errors=True)


def image_identity() -> dict:
    """Which image this worker runs, as its build set it (remote/Dockerfile's build arguments,
    passed by cvsweep deploy): during a rolling release, old and new workers serve one endpoint.

    Returns:
        ``{"image": <registry/name:tag>, "image_commit": <git commit>}``; None for what the
        image does not say (a worker started from a checkout, or an image built without them).
    """
    return {"image": os.environ.get(IMAGE_VARIABLE) or None, "image_commit": os.environ.get(COMMIT_VARIABLE) or None}


def result_bytes(result: dict) -> int:
    """The size of the body the SDK posts to job-done for this result.

    Args:
        result: The handler's result.

    Returns:
        Its UTF-8 bytes as ``{"output": result}`` (the SDK's json.dumps with ensure_ascii=False).
    """
    return len(json.dumps({"output": result}, ensure_ascii=False, allow_nan=False).encode("utf-8"))


def result_cap() -> int:
    """The most bytes a result may take: CVSWEEP_MAX_RESULT_BYTES, never over RunPod's limit.

    Returns:
        The cap in bytes.
    """
    return min(limit(RESULT_CAP_VARIABLE), PAYLOAD_LIMIT_BYTES)


def fit_result(result: dict, trained_model: dict | None, model_dir: str | None, transport: dict | None,
               job_id: str) -> dict:
    """The result, kept under the cap on what a worker returns: RunPod drops a larger one at
    job-done and the client would see COMPLETED without output. An inline model that does not
    fit goes to the store, or is left out with the reason; a result still too large is a
    structured error, never a body RunPod refuses.

    Args:
        result: The result as plain JSON, its model packed.
        trained_model: train()'s model record before packing; None when no model was saved.
        model_dir: The folder the model was saved in.
        transport: The job input's ``transport``.
        job_id: The RunPod job's id.

    Returns:
        The result, or ``{"error": ...}`` with the code ``result_too_large``.
    """
    cap, size = result_cap(), result_bytes(result)
    if size <= cap:
        return result
    if isinstance(result.get("model"), dict) and "inline" in result["model"] and trained_model is not None:
        why = (f"the result with the model inline is {size} bytes, over the worker's cap of {cap} "
               f"({RESULT_CAP_VARIABLE}; RunPod refuses a /run result over {PAYLOAD_LIMIT_BYTES} bytes)")
        result["model"] = model_transport.pack_outside(trained_model, model_dir, transport, result["fingerprint"],
                                                       job_id, why)
        size = result_bytes(result)
        if size <= cap:
            return result
    problem = (f"the run {result.get('status')} but its result is {size} bytes, over the worker's cap of {cap} "
               f"({RESULT_CAP_VARIABLE}; RunPod refuses a /run result over {PAYLOAD_LIMIT_BYTES} bytes)")
    return {"error": json.dumps({"code": RESULT_TOO_LARGE, "problems": [problem]})}


def progress_reporter(job: dict):
    """Each epoch's report goes out as the job's progress (its ``output`` while IN_PROGRESS),
    with the history so far: a client that prunes the job, or polls less often than epochs
    end, still has every epoch it trained (cvsweep/execution/runpod.py).

    Args:
        job: The SDK's job.

    Returns:
        The progress hook, called with each epoch's report.
    """
    history: dict[str, list] = {}

    def report(update: dict) -> None:
        for key, value in update.items():
            if key not in ("epoch", "epochs"):
                history.setdefault(key, []).append(value)
        runpod.serverless.progress_update(job, {**update, "history": history})

    return report


async def train_in_child(run_config: dict, progress, model_dir: str | None = None) -> dict:
    """The run in the training process, waited for in a thread: the event loop stays free to
    hear that the job was stopped.

    Args:
        run_config: The validated run config.
        progress: Called with each epoch's report.
        model_dir: Where train() saves the model; None: not saved.

    Returns:
        train()'s result.
    """
    return await asyncio.to_thread(TRAINING.run, run_config, progress, model_dir=model_dir)


def _internal_error(err: Exception) -> str:
    text = str(err).splitlines()[0][:500] if str(err) else ""
    return json.dumps(Failure(INTERNAL_ERROR, f"{type(err).__name__}: {text}".rstrip(": "), infeasible=False).to_json())


def smoke_test(path: str) -> int:
    """One job of the file at ``path`` through handler(), as the worker runs it (cvsweep deploy's
    check of a new image). Its verdict is one JSON line on stdout (the SDK's test mode logs a
    Python repr cut at 4 kB instead).

    Args:
        path: A JSON file holding the job's ``input``.

    Returns:
        The exit status: 0 only when the run completed with the input's fingerprint, else 1.
    """
    job = {"id": "smoke-test", **json.loads(Path(path).read_text())}
    output = asyncio.run(handler(job, progress=lambda update: None))  # no job server to tell
    trained = output.get("status") == "completed" and output.get("fingerprint") == job["input"].get("fingerprint")
    verdict = {key: output.get(key) for key in ("status", "fingerprint", "reason", "error")}
    verdict.update(ok=trained, device=(output.get("executed_on") or {}).get("device"), **image_identity())
    print(json.dumps(verdict), flush=True)
    return 0 if trained else 1


if __name__ == "__main__":
    confine_to_data_roots()  # this process and the training process read data only under the data roots
    # Start the training process and let it import TensorFlow before taking jobs: a cold start
    # belongs to the worker, not a trial.
    TRAINING.start(wait=True)
    if sys.argv[1:2] == ["--smoke-test"]:
        code = smoke_test(sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).with_name("test_input.json")))
        TRAINING.close()
        sys.exit(code)
    runpod.serverless.start({"handler": handler})
