"""A remote trial's model.keras on its way home (executor=runpod).

The client says how in the job's input, beside the run config and outside its fingerprint:
``transport = {"max_inline_bytes", "store": {"url", "endpoint_url"} | null}`` (no ``transport``:
the worker returns no model, as with ``artifacts=none``). The worker (remote/handler.py) has
train() save the model in a temporary folder, then ``pack`` makes the result's ``model``
record: the file zlib-compressed and base64-encoded in the output when that text is at most
``max_inline_bytes`` long; otherwise uploaded to ``<store url>/<fingerprint>/<job id>/model.keras``
with boto3; otherwise ``{"missing": why}``. The client's ``bring_home`` writes it into the
trial folder atomically, only if its sha256 is the one the worker reported, and records how it
came in the result's ``remote.model_transport`` (``via``; ``worker_seconds``: packing and any
upload on the worker; ``seconds``: decoding or downloading and writing here).

A model that cannot come home fails nothing already trained: it is recorded as missing, with
the reason. Store credentials come from the environment only (``CREDENTIALS``, on the client
and on the worker), are handed to boto3 explicitly (no config file or instance role is
consulted) and are scrubbed from every message.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlparse

from cvsweep.config.schema import ArtifactStoreConfig
from cvsweep.training import artifact

ENCODING = "zlib+base64"
TRANSPORT_KEYS = ("max_inline_bytes", "store")
STORE_KEYS = tuple(f.name for f in fields(ArtifactStoreConfig))
MB = 2**20
# RunPod's largest job payload (/runsync, 20 MB): nothing larger can come inline.
MAX_INLINE_BYTES = 20 * MB
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
REGION = "AWS_DEFAULT_REGION"
_BUCKET_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._-]+)*/?")
_ENDPOINT_URL = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class TransportError(RuntimeError):
    """The model could not come home; the message says why and holds no credential."""


# -- the client's settings -----------------------------------------------------------------------
def transport_of(executor_cfg) -> dict:
    """The job input's ``transport`` for executor=runpod's settings."""
    store = executor_cfg.artifact_store
    return {"max_inline_bytes": int(executor_cfg.max_inline_model_mb * MB),
            "store": {key: store[key] for key in STORE_KEYS} if store.url else None}


def store_problems(store: Mapping, prefix: str) -> list[str]:
    """What is wrong with a store's settings (``prefix``: where they are, for the messages)."""
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
    """executor.artifact_store's settings and the credentials it needs here (before a sweep)."""
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
    """What is wrong with a job input's ``transport`` (the worker checks it before training)."""
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


def pack(record: dict, folder: str | os.PathLike, transport: dict, fingerprint: str, job_id: str) -> dict:
    """The result's ``model`` record for the client, from train()'s ``record`` of
    ``folder/model.keras``: the file inline, or where it was uploaded, or missing and why."""
    if "missing" in record:
        return record
    started = time.monotonic()
    path = Path(folder) / artifact.MODEL_FILE
    encoded = base64.b64encode(zlib.compress(path.read_bytes())).decode("ascii")
    if len(encoded) <= transport["max_inline_bytes"]:
        return {**record, "encoding": ENCODING, "inline": encoded, "seconds": _since(started)}
    too_big = (f"{len(encoded)} bytes compressed and base64-encoded, over the inline limit of "
               f"{transport['max_inline_bytes']} (executor.max_inline_model_mb)")
    if transport["store"] is None:
        return artifact.missing(f"not brought home: {too_big}, and executor.artifact_store.url is not set")
    if not _JOB_ID.fullmatch(job_id):
        job_id = "job"
    url = f"{transport['store']['url'].rstrip('/')}/{fingerprint}/{job_id}/{artifact.MODEL_FILE}"
    try:
        bucket, key = _bucket_and_key(url)
        _s3(transport["store"]["endpoint_url"]).upload_file(str(path), bucket, key)
    except Exception as err:  # a store that is down, refused credentials, no such bucket
        return artifact.missing(f"not brought home: {too_big}, and the worker could not upload it to {url}: "
                                f"{_describe(err)}")
    return {**record, "store_url": url, "seconds": _since(started)}


# -- the client ------------------------------------------------------------------------------
def bring_home(record: Any, folder: str | os.PathLike, store) -> tuple[dict, Optional[dict]]:
    """Write the model the worker sent (``record``, its result's ``model``) as
    ``folder/model.keras``, checking the sha256 the worker reported. Returns the result's model
    record (as a local trial's, or missing and why) and how it came (None when it did not).
    Never raises: the trial is completed whether or not its model came home."""
    started = time.monotonic()
    try:
        if not isinstance(record, dict):
            raise TransportError("the worker returned no model record")
        if "missing" in record:
            return artifact.missing(str(record["missing"])[:1000]), None
        sha256, size = record.get("sha256"), record.get("bytes")
        if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)) or not isinstance(size, int):
            raise TransportError("the worker's model record has no valid sha256 and size")
        if "inline" in record:
            how = {"via": "inline", "encoded_bytes": len(str(record["inline"]))}
            saved = artifact.place(folder, lambda partial: _write_inline(record, partial), sha256)
        elif "store_url" in record:
            url = str(record["store_url"])
            how = {"via": "store", "url": url}
            saved = artifact.place(folder, lambda partial: _download(url, store, partial), sha256)
        else:
            raise TransportError("the worker's model record is neither inline nor in a store")
    except artifact.ChecksumMismatch as err:
        return artifact.missing(f"the model that came back is not the one the worker saved: {err}"), None
    except TransportError as err:
        return artifact.missing(str(err)), None
    except Exception as err:  # a full disk here: still a completed trial
        return artifact.missing(f"could not be written in {folder}: {_describe(err)}"), None
    return saved, {**how, "worker_seconds": record.get("seconds"), "seconds": _since(started)}


def _write_inline(record: dict, partial: str) -> None:
    if record.get("encoding") != ENCODING:
        raise TransportError(f"the worker's model has the encoding {_short(record.get('encoding'))}, not {ENCODING}")
    try:
        packed = base64.b64decode(record["inline"], validate=True)
        inflate = zlib.decompressobj()
        data = inflate.decompress(packed, record["bytes"] + 1)  # never more than the worker reported
    except (binascii.Error, ValueError, TypeError, zlib.error) as err:
        raise TransportError(f"the inline model cannot be decoded ({ENCODING}): {type(err).__name__}: {err}") from None
    if len(data) > record["bytes"] or (inflate.eof and len(data) != record["bytes"]):
        raise TransportError(f"the inline model decodes to another size than the {record['bytes']} bytes reported")
    if not inflate.eof:
        raise TransportError(f"the inline model cannot be decoded ({ENCODING}): it ends early (truncated)")
    Path(partial).write_bytes(data)


def _download(url: str, store, partial: str) -> None:
    home = (store.url or "").rstrip("/") if store is not None else ""
    if not home:
        raise TransportError(f"the worker uploaded it to {url}, but executor.artifact_store.url is not set here")
    if not url.startswith(home + "/"):
        raise TransportError(f"the worker uploaded it to {url}, outside executor.artifact_store.url={home}")
    try:
        bucket, key = _bucket_and_key(url)
        with open(partial, "wb") as file:
            _s3(store.endpoint_url).download_fileobj(bucket, key, file)
    except TransportError:
        raise
    except Exception as err:
        raise TransportError(f"could not download it from {url}: {_describe(err)}") from None


# -- the store -------------------------------------------------------------------------------
def _s3(endpoint_url: Optional[str]):
    """An S3 client with the credentials of the environment, and nothing else."""
    import boto3
    from botocore.config import Config

    unset = [name for name in CREDENTIALS[:2] if not os.environ.get(name)]
    if unset:
        raise TransportError(f"the environment variables {' and '.join(unset)} (the store's credentials) are not set")
    session = boto3.session.Session(
        aws_access_key_id=os.environ[CREDENTIALS[0]], aws_secret_access_key=os.environ[CREDENTIALS[1]],
        aws_session_token=os.environ.get(CREDENTIALS[2]) or None, region_name=os.environ.get(REGION) or "us-east-1")
    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _bucket_and_key(url: str) -> tuple[str, str]:
    parts = urlparse(url)
    return parts.netloc, parts.path.lstrip("/")


def _describe(err: Exception) -> str:
    text = str(err).splitlines()[0][:300] if str(err) else ""
    return scrub(f"{type(err).__name__}: {text}".rstrip(": "))


def scrub(text: str) -> str:
    """The store's credentials never leave this process in a message."""
    for name in CREDENTIALS:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
