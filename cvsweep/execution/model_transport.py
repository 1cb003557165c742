"""A remote trial's model.keras on its way home (executor=runpod).

The client says how in the job's input, beside the run config and outside its fingerprint:
``transport = {"max_inline_bytes", "store": {"url", "endpoint_url"} | null}`` (no ``transport``:
the worker returns no model, as with ``artifacts=none``). The worker (remote/handler.py) has
train() save the model in a temporary folder, then ``pack`` makes the result's ``model``
record: the file zlib-compressed and base64-encoded in the output when the file and that text
are both at most ``max_inline_bytes`` long; otherwise uploaded to ``<store url>/<fingerprint>/<job id>/model.keras``
with boto3; otherwise ``{"missing": why}``. The client's ``bring_home`` writes it into the
trial folder atomically, only if its sha256 is the one the worker reported (never decoding or
downloading more than the size it reported, itself at most the client's own limits), and records how it
came in the result's ``remote.model_transport`` (``via``; ``worker_seconds``: packing and any
upload on the worker; ``seconds``: decoding or downloading and writing here).

A model that cannot come home fails nothing already trained: it is recorded as missing, with
the reason. Store credentials come from the environment only (``CREDENTIALS``, on the client
and on the worker), are handed to boto3 explicitly (no config file or instance role is
consulted, and no endpoint but ``endpoint_url``: ``AWS_ENDPOINT_URL*`` and config-file endpoints
are ignored) and are scrubbed from every message.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import time
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlparse

from cvsweep import layout
from cvsweep.config.schema import ArtifactStoreConfig, RunpodExecutorConfig
from cvsweep.errors import CvsweepError
from cvsweep.execution.redact import STORE_CREDENTIALS as CREDENTIALS
from cvsweep.execution.redact import scrub
from cvsweep.training import artifact

ENCODING = "zlib+base64"
TRANSPORT_KEYS = ("max_inline_bytes", "store")
STORE_KEYS = tuple(f.name for f in fields(ArtifactStoreConfig))
MB = 2**20
# The schema's bound on executor.max_inline_model_mb (why: there, and in remote/README.md).
MAX_INLINE_BYTES = int(next(f for f in fields(RunpodExecutorConfig)
                            if f.name == "max_inline_model_mb").metadata["bounds"][1] * MB)
# The largest model a store may bring home: a billion parameters with Adam's two moments (12 GB),
# twenty times training.max_params's default. A model record over it is refused before any download.
MAX_MODEL_BYTES = 16 * 2**30
MAX_URL_CHARS = 1024
REGION = "AWS_DEFAULT_REGION"
ALLOWED_STORES = "CVSWEEP_ALLOWED_STORES"
_BUCKET_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._-]+)*/?")
_ENDPOINT_URL = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class TransportError(CvsweepError, RuntimeError):
    """The model could not come home; the message says why and holds no credential."""


# -- the client's settings -----------------------------------------------------------------------
def transport_of(executor_cfg) -> dict:
    """The job input's ``transport`` for executor=runpod's settings.

    Args:
        executor_cfg: The ``executor`` config (executor=runpod).

    Returns:
        ``{"max_inline_bytes", "store"}``; ``store`` is None when no artifact store is set.
    """
    store = executor_cfg.artifact_store
    return {"max_inline_bytes": int(executor_cfg.max_inline_model_mb * MB),
            "store": {key: store[key] for key in STORE_KEYS} if store.url else None}


def store_problems(store: Mapping, prefix: str) -> list[str]:
    """What is wrong with a store's settings.

    Args:
        store: The store's ``url`` and ``endpoint_url``.
        prefix: Where they are, put before each key in the messages.

    Returns:
        One message per problem, naming the key, the value and what is allowed; empty if none.
    """
    url, endpoint = store.get("url"), store.get("endpoint_url")
    problems = []
    if url is not None and not (isinstance(url, str) and _BUCKET_URL.fullmatch(url)):
        problems.append(f"{prefix}url={_short(url)}: allowed is s3://<bucket>[/<prefix>] (a bucket name of 3-63 "
                        "lowercase letters, digits, dots and hyphens; a prefix of letters, digits and ._-/)")
    if endpoint is not None and not (isinstance(endpoint, str) and _ENDPOINT_URL.fullmatch(endpoint)):
        problems.append(f"{prefix}endpoint_url={_short(endpoint)}: allowed is null (AWS S3) or an http:// or "
                        "https:// URL without credentials, query or fragment")
    return problems


def client_problems(executor_cfg) -> list[str]:
    """Check executor.artifact_store's settings and the credentials it needs here (before a sweep).

    Args:
        executor_cfg: The ``executor`` config (executor=runpod).

    Returns:
        One message per problem; empty if none.
    """
    store = executor_cfg.artifact_store
    problems = store_problems(store, "executor.artifact_store.")
    if store.url:
        unset = [name for name in CREDENTIALS[:2] if not os.environ.get(name)]
        if unset:
            problems.append(f"executor.artifact_store.url={store.url}: needs the environment variables "
                            f"{' and '.join(unset)} (the store's credentials), here and on the endpoint's workers")
    return problems


# -- the worker ------------------------------------------------------------------------------
def transport_problems(data: Any) -> list[str]:
    """What is wrong with a job input's ``transport`` (the worker checks it before training).

    Args:
        data: The input's ``transport``, as received.

    Returns:
        One message per problem; empty if none.
    """
    if not isinstance(data, dict) or sorted(data) != sorted(TRANSPORT_KEYS):
        return [f"transport must be an object with exactly the keys {list(TRANSPORT_KEYS)}"]
    problems = []
    limit = data["max_inline_bytes"]
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_INLINE_BYTES:
        problems.append(f"transport.max_inline_bytes must be a whole number in [0, {MAX_INLINE_BYTES}]")
    store = data["store"]
    if store is None:
        return problems
    if not isinstance(store, dict) or sorted(store) != sorted(STORE_KEYS):
        return problems + [f"transport.store must be null or an object with exactly the keys {list(STORE_KEYS)}"]
    if store["url"] is None:
        problems.append("transport.store.url must be s3://<bucket>[/<prefix>]")
    return problems + store_problems(store, "transport.store.")


def store_refusal(store: Mapping) -> Optional[str]:
    """Why a job's store is not one this worker may upload to: the endpoint's operator lists the
    stores in CVSWEEP_ALLOWED_STORES (``s3://bucket[/prefix][@endpoint_url]``, separated by
    commas or spaces; unset: none), as the worker signs uploads with its own credentials.

    Args:
        store: The job's ``transport.store`` (``url``, ``endpoint_url``), already checked.

    Returns:
        The refusal, naming the store and the variable; None when the store is allowed.

    Raises:
        TransportError: When the variable holds an entry that is not a store.
    """
    url, endpoint = store["url"].rstrip("/"), (store["endpoint_url"] or "").rstrip("/")
    for entry in os.environ.get(ALLOWED_STORES, "").replace(",", " ").split():
        allowed_url, _, allowed_endpoint = entry.partition("@")
        if store_problems({"url": allowed_url, "endpoint_url": allowed_endpoint or None}, ""):
            raise TransportError(f"{ALLOWED_STORES}: {_short(entry)} is not s3://<bucket>[/<prefix>][@<endpoint_url>]")
        allowed_url = allowed_url.rstrip("/")
        if endpoint == allowed_endpoint.rstrip("/") and (url == allowed_url or url.startswith(allowed_url + "/")):
            return None
    return (f"transport.store.url={_short(store['url'])} (endpoint_url={_short(store['endpoint_url'])}): not a store "
            f"this endpoint may upload to; its operator lists them in {ALLOWED_STORES} on the endpoint "
            "(s3://<bucket>[/<prefix>][@<endpoint_url>])")


def pack(record: dict, folder: str | os.PathLike, transport: dict, fingerprint: str, job_id: str) -> dict:
    """The result's ``model`` record for the client: the file inline, or where it was uploaded,
    or missing and why. Never raises: the trial stays completed whatever goes wrong.

    Args:
        record: train()'s model record of ``folder/model.keras``.
        folder: The folder train() saved the model in.
        transport: The job input's ``transport`` (see ``transport_of``).
        fingerprint: The run config's fingerprint, part of the upload's key.
        job_id: The RunPod job's id, part of the upload's key.

    Returns:
        The model record to return in the result.
    """
    if "missing" in record:
        return record
    try:  # whatever goes wrong here, the trial stays completed
        return _pack(record, Path(folder) / layout.MODEL, transport, fingerprint, job_id)
    except Exception as err:
        return artifact.missing(f"not brought home: the worker could not pack it: {_describe(err)}")


def _pack(record: dict, path: Path, transport: dict, fingerprint: str, job_id: str) -> dict:
    started, limit = time.monotonic(), transport["max_inline_bytes"]
    # The client accepts inline only a file of at most max_inline_bytes (its decompression cap), so
    # a larger one is not even read into memory here.
    too_big = f"{record['bytes']} bytes, over the inline limit of {limit} (executor.max_inline_model_mb)"
    if record["bytes"] <= limit:
        encoded = base64.b64encode(zlib.compress(path.read_bytes())).decode("ascii")
        if len(encoded) <= limit:
            return {**record, "encoding": ENCODING, "inline": encoded, "seconds": _since(started)}
        too_big = f"{len(encoded)} bytes compressed and base64-encoded, over the inline limit of {limit} " \
                  "(executor.max_inline_model_mb)"
    return _outside(record, path, transport, fingerprint, job_id, too_big, started)


def pack_outside(record: dict, folder: str | os.PathLike, transport: dict, fingerprint: str, job_id: str,
                 why: str) -> dict:
    """The result's ``model`` record when the model may not travel inline: uploaded to the
    store, else missing with ``why``. Never raises.

    Args:
        record: train()'s model record of ``folder/model.keras``.
        folder: The folder train() saved the model in.
        transport: The job input's ``transport``.
        fingerprint: The run config's fingerprint, part of the upload's key.
        job_id: The RunPod job's id, part of the upload's key.
        why: Why it is not inline, for the record of a missing model.

    Returns:
        The model record to return in the result.
    """
    if "missing" in record:
        return record
    try:
        return _outside(record, Path(folder) / layout.MODEL, transport, fingerprint, job_id, why, time.monotonic())
    except Exception as err:
        return artifact.missing(f"not brought home: the worker could not pack it: {_describe(err)}")


def _outside(record: dict, path: Path, transport: dict, fingerprint: str, job_id: str, too_big: str,
             started: float) -> dict:
    if transport["store"] is None:
        return artifact.missing(f"not brought home: {too_big}, and executor.artifact_store.url is not set")
    if not _JOB_ID.fullmatch(job_id):
        job_id = "job"
    url = f"{transport['store']['url'].rstrip('/')}/{fingerprint}/{job_id}/{layout.MODEL}"
    try:
        bucket, key = _bucket_and_key(url)
        _s3(transport["store"]["endpoint_url"]).upload_file(str(path), bucket, key)
    except Exception as err:  # a store that is down, refused credentials, no such bucket
        return artifact.missing(f"not brought home: {too_big}, and the worker could not upload it to {url}: "
                                f"{_describe(err)}")
    return {**record, "store_url": url, "seconds": _since(started)}


# -- the client ------------------------------------------------------------------------------
def bring_home(record: Any, folder: str | os.PathLike, transport: dict) -> tuple[dict, Optional[dict]]:
    """Write the model the worker sent as ``folder/model.keras``, checking the sha256 the
    worker reported. Never raises: the trial is completed whether or not its model came home.

    Args:
        record: The worker's result's ``model`` record.
        folder: The trial's folder.
        transport: What the client asked for (``transport_of``), whose limits apply.

    Returns:
        The result's model record (as a local trial's, or missing and why) and how it came
        (None when it did not).
    """
    started = time.monotonic()
    try:
        if not isinstance(record, dict):
            raise TransportError("the worker returned no model record")
        if "missing" in record:
            return artifact.missing(str(record["missing"])[:1000]), None
        sha256, size = record.get("sha256"), record.get("bytes")
        if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)) or not _whole(size):
            raise TransportError("the worker's model record has no valid sha256 and size")
        if "inline" in record:
            _check_size(size, transport["max_inline_bytes"], "the inline limit (executor.max_inline_model_mb)")
            how = {"via": "inline", "encoded_bytes": _inline_length(record["inline"], transport["max_inline_bytes"])}
            saved = artifact.place(folder, lambda partial: _write_inline(record, partial), sha256)
        elif "store_url" in record:
            _check_size(size, MAX_MODEL_BYTES, "the largest model a store may bring home")
            url = record["store_url"]
            if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
                raise TransportError(f"the worker's store_url is not a URL of at most {MAX_URL_CHARS} characters")
            how = {"via": "store", "url": url}
            saved = artifact.place(folder, lambda partial: _download(url, size, transport["store"], partial), sha256)
        else:
            raise TransportError("the worker's model record is neither inline nor in a store")
    except artifact.ChecksumMismatch as err:
        return artifact.missing(f"the model that came back is not the one the worker saved: {err}"), None
    except TransportError as err:
        return artifact.missing(str(err)), None
    except Exception as err:  # a full disk here: still a completed trial
        return artifact.missing(f"could not be written in {folder}: {_describe(err)}"), None
    seconds = record.get("seconds")
    worker_seconds = seconds if _number(seconds) else None
    return saved, {**how, "worker_seconds": worker_seconds, "seconds": _since(started)}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_size(size: int, cap: int, what: str) -> None:
    if not 0 < size <= cap:
        raise TransportError(f"the worker reports a model of {size} bytes: allowed is 1 to {cap} ({what})")


def _inline_length(text: Any, limit: int) -> int:
    if not isinstance(text, str) or len(text) > limit:
        raise TransportError(f"the inline model is not text of at most {limit} characters "
                             "(executor.max_inline_model_mb)")
    return len(text)


def _write_inline(record: dict, partial: str) -> None:
    """Decode into ``partial`` a block at a time, never more than the ``bytes`` reported (a zlib
    bomb stops there)."""
    if record.get("encoding") != ENCODING:
        raise TransportError(f"the worker's model has the encoding {_short(record.get('encoding'))}, not {ENCODING}")
    size, written = record["bytes"], 0
    try:
        packed = base64.b64decode(record["inline"], validate=True)
        inflate = zlib.decompressobj()
        with open(partial, "wb") as file:
            while written <= size:
                block = inflate.decompress(packed, min(MB, size + 1 - written))
                packed = inflate.unconsumed_tail
                if not block:  # the end of the stream, or of the text
                    break
                written += len(block)
                file.write(block)
    except (binascii.Error, ValueError, TypeError, zlib.error) as err:
        raise TransportError(f"the inline model cannot be decoded ({ENCODING}): {type(err).__name__}: {err}") from None
    if written > size or (inflate.eof and written != size):
        raise TransportError(f"the inline model decodes to another size than the {size} bytes reported")
    if not inflate.eof:
        raise TransportError(f"the inline model cannot be decoded ({ENCODING}): it ends early (truncated)")


def _download(url: str, size: int, store: Optional[dict], partial: str) -> None:
    home = store["url"].rstrip("/") if store is not None else ""
    if not home:
        raise TransportError(f"the worker uploaded it to {url}, but executor.artifact_store.url is not set here")
    if not url.startswith(home + "/"):
        raise TransportError(f"the worker uploaded it to {url}, outside executor.artifact_store.url={home}")
    try:
        bucket, key = _bucket_and_key(url)
        s3 = _s3(store["endpoint_url"])
        stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if stored != size:  # before downloading anything: the sha256 check comes after
            raise TransportError(f"{url} holds {stored} bytes, not the {size} bytes the worker reported")
        with open(partial, "wb") as file:
            s3.download_fileobj(bucket, key, file)
    except TransportError:
        raise
    except Exception as err:
        raise TransportError(f"could not download it from {url}: {_describe(err)}") from None


# -- the store -------------------------------------------------------------------------------
def _s3(endpoint_url: Optional[str]):
    """An S3 client with the credentials of the environment, and nothing else."""
    # boto3 loads only when a model travels through a store.
    import boto3
    from botocore.config import Config

    unset = [name for name in CREDENTIALS[:2] if not os.environ.get(name)]
    if unset:
        raise TransportError(f"the environment variables {' and '.join(unset)} (the store's credentials) are not set")
    session = boto3.session.Session(
        aws_access_key_id=os.environ[CREDENTIALS[0]], aws_secret_access_key=os.environ[CREDENTIALS[1]],
        aws_session_token=os.environ.get(CREDENTIALS[2]) or None, region_name=os.environ.get(REGION) or "us-east-1")
    # ignore_configured_endpoint_urls: AWS_ENDPOINT_URL(_S3) or a config file's endpoint_url never
    # sends the requests (and the credentials' signatures) to another host than endpoint_url's.
    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                    ignore_configured_endpoint_urls=True)
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _bucket_and_key(url: str) -> tuple[str, str]:
    parts = urlparse(url)
    return parts.netloc, parts.path.lstrip("/")


def _describe(err: Exception) -> str:
    text = scrub(str(err)).splitlines()[0][:300] if str(err) else ""  # scrubbed before it is cut
    return f"{type(err).__name__}: {text}".rstrip(": ")


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
