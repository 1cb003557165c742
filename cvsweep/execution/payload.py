"""The remote job's input: what a client sends and what a worker accepts.

``{"schema_version": int, "fingerprint": sha256 hex, "config": <run config>}``, and, when the
client wants the trained model back, ``"transport"``: how it comes home
(cvsweep/execution/model_transport.py), outside the config and its fingerprint. The worker
accepts nothing else: it checks the size, the keys, the schema version, validates the config
with the same schema the client used, and recomputes the fingerprint. Nothing in an input
can make the worker import or call anything: it is plain data checked against dataclasses.
Then ``accept_data`` loads a ``dataset.path`` as the worker may (cvsweep/data/access.py), so
that data it must not read, or cannot use, is refused before training, too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cvsweep.config.fingerprint import fingerprint
from cvsweep.config.schema import (
    FOLDER_DATASETS,
    SCHEMA_VERSION,
    ConfigError,
    dataset_config,
    run_config_of,
)
from cvsweep.data.access import TRAINING_CAPS, AccessRefused, Policy, limit
from cvsweep.data.sources import DataError, DataRefused, load_source
from cvsweep.errors import CvsweepError
from cvsweep.config.validate import load_run_config
from cvsweep.execution.model_transport import TransportError, store_refusal, transport_problems

INPUT_KEYS = ("schema_version", "fingerprint", "config")
OPTIONAL_KEYS = ("transport",)
# A run config is about 1 KB; anything near this limit is not one.
MAX_INPUT_BYTES = 64 * 1024
# A run config nests 3 levels deep; deeper input is refused before anything recurses into it.
MAX_INPUT_DEPTH = 16
_SHA256 = re.compile(r"[0-9a-f]{64}")
RESULT_CAP_VARIABLE = "CVSWEEP_MAX_RESULT_BYTES"
WORKER_MISCONFIGURED = "worker_misconfigured"  # the endpoint's environment, not the job, is wrong


class PayloadError(CvsweepError, ValueError):
    """An input the worker refuses; ``to_error()`` is what goes back to the client."""

    def __init__(self, code: str, *problems: str):
        self.code = code
        self.problems = list(problems)
        super().__init__(f"{code}: " + "; ".join(problems))

    def to_error(self) -> str:
        """The error that goes back to the client: RunPod reports it as text, so a JSON object.

        Returns:
            ``{"code", "problems"}`` as JSON text.
        """
        return json.dumps({"code": self.code, "problems": self.problems})


def make_input(run_config: dict, transport: dict | None = None) -> dict:
    """The job input for a run config.

    Args:
        run_config: The trial's run config.
        transport: How the model comes home (model_transport.transport_of); None: the worker
            returns no model.

    Returns:
        ``{"schema_version", "fingerprint", "config"}``, and ``transport`` when given.
    """
    job_input = {"schema_version": SCHEMA_VERSION, "fingerprint": fingerprint(run_config), "config": run_config}
    if transport is not None:
        job_input["transport"] = transport
    return job_input


def accept_input(data: Any) -> dict:
    """The validated run config of a job input.

    Args:
        data: The job input, as received.

    Returns:
        The run config, its fingerprint checked against the one the client sent.

    Raises:
        PayloadError: The input is too deep or too large, not plain JSON, has the wrong keys,
            an invalid transport, another schema version, an invalid config or a fingerprint
            that does not match.
    """
    if _deeper_than(data, MAX_INPUT_DEPTH):
        raise PayloadError("invalid_input", f"input nests deeper than {MAX_INPUT_DEPTH} levels")
    try:
        size = len(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise PayloadError("invalid_input", f"input is not plain JSON: {err}") from None
    if size > MAX_INPUT_BYTES:
        raise PayloadError("invalid_input", f"input is {size} bytes; the limit is {MAX_INPUT_BYTES}")
    if not isinstance(data, dict):
        raise PayloadError("invalid_input", f"input must be an object with keys {list(INPUT_KEYS)}")
    unknown = sorted(str(key) for key in data if key not in INPUT_KEYS + OPTIONAL_KEYS)
    missing = [key for key in INPUT_KEYS if key not in data]
    if unknown or missing:
        raise PayloadError(
            "invalid_input", f"input keys must be exactly {list(INPUT_KEYS)}, optionally with {list(OPTIONAL_KEYS)} "
                             f"(unknown: {unknown}, missing: {missing})"
        )
    if "transport" in data:
        problems = transport_problems(data["transport"])
        if problems:
            raise PayloadError("invalid_input", *problems)
        if data["transport"]["store"] is not None:
            try:
                refusal = store_refusal(data["transport"]["store"])
            except TransportError as err:
                raise PayloadError(WORKER_MISCONFIGURED, str(err)) from None
            if refusal:
                raise PayloadError("store_not_allowed", refusal)
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version != SCHEMA_VERSION:
        raise PayloadError(
            "schema_version_mismatch", f"schema_version={version!r}; this worker speaks {SCHEMA_VERSION}"
        )
    claimed = data["fingerprint"]
    if not isinstance(claimed, str) or not _SHA256.fullmatch(claimed):
        raise PayloadError("invalid_input", "fingerprint must be 64 lowercase hex digits (sha256)")
    try:
        run_config = run_config_of(load_run_config(data["config"]))
    except ConfigError as err:
        raise PayloadError("invalid_config", *err.problems) from None
    computed = fingerprint(run_config)
    if computed != claimed:
        raise PayloadError(
            "fingerprint_mismatch",
            f"the client sent {claimed} but this worker computes {computed} for the same config",
        )
    over = over_worker_caps(run_config)
    if over:
        raise PayloadError("over_worker_caps", *over)
    return run_config


def over_worker_caps(run_config: dict) -> list[str]:
    """The training settings of a job over the caps the endpoint's operator set in the worker's
    environment (``TRAINING_CAPS``; never the job's). A job's own lower limits still apply.

    Args:
        run_config: The validated run config.

    Returns:
        One message per setting over its cap, naming both; empty if none.

    Raises:
        PayloadError: ``worker_misconfigured``, when a cap or the result cap is set to anything
            but a whole number >= 1.
    """
    try:
        caps = {key: limit(variable) for key, variable in TRAINING_CAPS.items()}
        limit(RESULT_CAP_VARIABLE)  # read here too: a bad value fails the job before training, not after
    except AccessRefused as err:
        raise PayloadError(WORKER_MISCONFIGURED, str(err)) from None
    training = run_config["training"]
    return [f"training.{key}={training[key]}: over this endpoint's cap {TRAINING_CAPS[key]}={cap}; lower it "
            f"(the endpoint's operator sets {TRAINING_CAPS[key]} in the worker's environment)"
            for key, cap in caps.items() if training[key] > cap]


def accept_data(run_config: dict) -> None:
    """Refuse, with PayloadError, a ``dataset.path`` the worker may not read (``data_refused``:
    outside its data roots, not a regular file, over a cap, an image bomb) or cannot use
    (``invalid_data``: not a dataset, a pinned sha256 that differs). The roots apply whether or
    not this process was confined, to the path and everything read below it. (train(), in the
    training process, loads the data again: checking it here refuses it before any training.)

    Args:
        run_config: The validated run config.

    Raises:
        PayloadError: With the code ``data_refused`` or ``invalid_data``.
    """
    if run_config["dataset"].get("path") is None:
        return  # a download or digits: nothing on the worker's disk is named
    dataset = dataset_config(run_config["dataset"])
    policy = Policy.worker()
    try:
        policy.resolve(dataset.path, folder=dataset.name in FOLDER_DATASETS)
        load_source(dataset, policy)
    except (AccessRefused, DataRefused) as err:
        raise PayloadError("data_refused", str(err)) from None
    except DataError as err:
        raise PayloadError("invalid_data", str(err)) from None
    except Exception as err:  # a reader that trips on crafted content (the restricted unpickler)
        text = str(err).splitlines()[0][:300] if str(err) else ""
        raise PayloadError("invalid_data", f"dataset.path={dataset.path}: cannot be read as "
                                           f"{dataset.name.name} data ({type(err).__name__}: {text})") from None


def _deeper_than(data: Any, limit: int) -> bool:
    """Without recursion, so that no input can exhaust the stack."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((value, depth + 1) for value in node)
    return False
