"""A remote trial's model comes home (cvsweep/execution/model_transport.py): inline in the job's
output, or through an S3-compatible store, verified by its sha256; or, when it cannot, the
trial stays completed and says why its model is missing.

The store is moto's S3 server (ThreadedMotoServer, pure Python, from PyPI) on 127.0.0.1; the
endpoint is the RunPod emulator with a real worker, whose environment holds the store's
credentials as a RunPod endpoint's would."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import zlib
from pathlib import Path

import pytest
from conftest import REPO, SENTINEL_API_KEY, TINY_OVERRIDES, TINY_RUN, EmulatorProcess, evaluate_here, read_json, run_cli
from omegaconf import OmegaConf

from cvsweep.config.schema import RunpodExecutorConfig, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution import model_transport
from cvsweep.execution.payload import PayloadError, accept_input, make_input
from cvsweep.execution.checks import missing_settings
from cvsweep.execution.runpod import RunpodExecutor
from cvsweep.training.artifact import MODEL_FILE

SENTINEL_KEY_ID = "AKIACVSWEEPSENTINEL7"
SENTINEL_SECRET = "cvsweep-bucket-secret-sentinel-9d41e0"
STORE_ENV = {"AWS_ACCESS_KEY_ID": SENTINEL_KEY_ID, "AWS_SECRET_ACCESS_KEY": SENTINEL_SECRET,
             "AWS_DEFAULT_REGION": "us-east-1"}
SECRETS = (SENTINEL_API_KEY, SENTINEL_KEY_ID, SENTINEL_SECRET)
BUCKET = "cvsweep-models"
STORE_URL = f"s3://{BUCKET}/sweeps"


def _run_config() -> dict:
    return run_config_of(load_run_config(copy.deepcopy(TINY_RUN)))


def _executor_cfg(**changes):
    cfg = OmegaConf.structured(RunpodExecutorConfig)
    cfg.merge_with({"endpoint_id": "local-endpoint", "poll_interval_s": 0.1, "retries": 3, "backoff_s": 0.1,
                    "backoff_max_s": 0.5, **changes})
    return cfg


# -- the job input -------------------------------------------------------------------------------
def test_the_transport_travels_outside_the_run_config_and_its_fingerprint(monkeypatch):
    monkeypatch.setenv("CVSWEEP_ALLOWED_STORES", STORE_URL)  # the worker's operator allows the store
    run_config = _run_config()
    plain = make_input(copy.deepcopy(run_config))
    transport = model_transport.transport_of(_executor_cfg(artifact_store={"url": STORE_URL}))
    asked = make_input(copy.deepcopy(run_config), transport)
    assert asked["config"] == plain["config"] and asked["fingerprint"] == plain["fingerprint"]
    assert asked["transport"] == {"max_inline_bytes": 5 * 2**20, "store": {"url": STORE_URL, "endpoint_url": None}}
    assert accept_input(asked) == accept_input(plain) == run_config
    # artifacts=none: no transport, and the worker returns no model
    assert "transport" not in plain


@pytest.mark.parametrize("transport,fragment", [
    (None, "transport must be an object"),
    ({"max_inline_bytes": 10}, "exactly the keys"),
    ({"max_inline_bytes": -1, "store": None}, "max_inline_bytes must be a whole number"),
    ({"max_inline_bytes": 10**12, "store": None}, "max_inline_bytes must be a whole number"),
    ({"max_inline_bytes": True, "store": None}, "max_inline_bytes must be a whole number"),
    ({"max_inline_bytes": 10, "store": {"url": STORE_URL}}, "transport.store must be null or an object"),
    ({"max_inline_bytes": 10, "store": {"url": None, "endpoint_url": None}}, "transport.store.url must be"),
    ({"max_inline_bytes": 10, "store": {"url": "https://evil/x", "endpoint_url": None}}, "transport.store.url="),
    ({"max_inline_bytes": 10, "store": {"url": "s3://Bad_Bucket", "endpoint_url": None}}, "transport.store.url="),
    ({"max_inline_bytes": 10, "store": {"url": STORE_URL, "endpoint_url": "file:///etc"}},
     "transport.store.endpoint_url="),
    ({"max_inline_bytes": 10, "store": {"url": STORE_URL, "endpoint_url": "http://user:pw@host"}},
     "transport.store.endpoint_url="),
])
def test_a_bad_transport_is_refused_before_training(transport, fragment):
    job_input = {**make_input(_run_config()), "transport": transport}
    with pytest.raises(PayloadError) as refused:
        accept_input(job_input)
    assert refused.value.code == "invalid_input"
    assert any(fragment in problem for problem in refused.value.problems), refused.value.problems


def test_store_settings_and_credentials_are_checked_before_a_sweep(monkeypatch):
    for name in model_transport.CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
    ok = _executor_cfg(base_url="http://127.0.0.1:1/v2")
    assert missing_settings(ok) == []  # no store: nothing more is needed
    bad = _executor_cfg(base_url="http://127.0.0.1:1/v2",
                        artifact_store={"url": "s3:/nobucket", "endpoint_url": "ftp://store"})
    problems = missing_settings(bad)
    assert any(p.startswith("executor.artifact_store.url='s3:/nobucket': allowed is s3://") for p in problems)
    assert any(p.startswith("executor.artifact_store.endpoint_url='ftp://store': allowed is") for p in problems)
    uncredentialed = _executor_cfg(base_url="http://127.0.0.1:1/v2", artifact_store={"url": STORE_URL})
    (problem,) = missing_settings(uncredentialed)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in problem and problem.startswith("executor.artifact_store.url")


# -- the client's side, on bytes a worker could send -------------------------------------------------
MODEL_BYTES = os.urandom(30_000)  # bring_home checks bytes, whatever they are


def _inline_record(data: bytes = MODEL_BYTES, **changes) -> dict:
    return {"path": MODEL_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "encoding": model_transport.ENCODING, "inline": base64.b64encode(zlib.compress(data)).decode(), **changes}


NO_STORE = {"max_inline_bytes": 5 * 2**20, "store": None}  # what the client asked for (transport_of)


@pytest.mark.parametrize("data", [MODEL_BYTES, os.urandom(3 * 2**20)], ids=["small", "decoded-in-blocks"])
def test_an_inline_model_is_written_with_the_workers_sha256(tmp_path, data):
    record, how = model_transport.bring_home(_inline_record(data), tmp_path, NO_STORE)
    assert (tmp_path / MODEL_FILE).read_bytes() == data
    assert record == {"path": MODEL_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert how["via"] == "inline" and how["encoded_bytes"] == len(_inline_record(data)["inline"])


BOMB = zlib.compress(b"\0" * 5_000_000)
BOMB_TEXT = base64.b64encode(BOMB).decode()


@pytest.mark.parametrize("record,fragment", [
    (_inline_record(inline=_inline_record()["inline"][:-40]), "cannot be decoded"),  # truncated
    (_inline_record(inline="!!not base64!!"), "cannot be decoded"),
    (_inline_record(inline=base64.b64encode(b"not zlib at all").decode()), "cannot be decoded"),
    (_inline_record(sha256="0" * 64), "not the one the worker saved: its sha256 is"),
    (_inline_record(inline=BOMB_TEXT), "another size than the 30000 bytes reported"),
    # a zlib bomb whose record claims no limit, or one larger than the client ever accepts inline
    (_inline_record(inline=BOMB_TEXT, bytes=-1), "allowed is 1 to 5242880 (the inline limit"),
    (_inline_record(inline=BOMB_TEXT, bytes=0), "allowed is 1 to 5242880 (the inline limit"),
    (_inline_record(inline=BOMB_TEXT, bytes=2**40), "allowed is 1 to 5242880 (the inline limit"),
    (_inline_record(inline="A" * (5 * 2**20 + 4)), "not text of at most 5242880 characters"),
    (_inline_record(inline=["not", "text"]), "not text of at most"),
    ({"path": MODEL_FILE, "bytes": -1, "sha256": "0" * 64, "store_url": f"{STORE_URL}/f/j/model.keras"},
     "allowed is 1 to"),
    ({"path": MODEL_FILE, "bytes": 3, "sha256": "0" * 64, "store_url": f"{STORE_URL}/" + "x" * 2000},
     "not a URL of at most 1024 characters"),
    (_inline_record(encoding="gzip"), "not zlib+base64"),
    (_inline_record(sha256="nope"), "no valid sha256 and size"),
    ({"path": MODEL_FILE, "bytes": 3, "sha256": "0" * 64}, "neither inline nor in a store"),
    ("a string", "no model record"),
    ({"missing": "could not be saved in /tmp/x: OSError: disk full"}, "disk full"),
])
def test_a_model_that_cannot_come_home_is_missing_with_the_reason(tmp_path, record, fragment):
    model, how = model_transport.bring_home(record, tmp_path, NO_STORE)
    assert how is None and fragment in model["missing"], model
    assert list(tmp_path.iterdir()) == []  # no model.keras, no half-written file


@pytest.mark.parametrize("store,fragment", [
    (None, "executor.artifact_store.url is not set here"),
    ({"url": "s3://other-bucket/x", "endpoint_url": None}, "outside executor.artifact_store.url=s3://other-bucket/x"),
])
def test_a_stored_model_comes_only_from_the_configured_store(tmp_path, store, fragment):
    cfg = _executor_cfg(artifact_store=store) if store else _executor_cfg()
    record = {"path": MODEL_FILE, "bytes": 3, "sha256": "0" * 64, "store_url": f"{STORE_URL}/f/j/model.keras"}
    model, how = model_transport.bring_home(record, tmp_path, model_transport.transport_of(cfg))
    assert how is None and fragment in model["missing"] and list(tmp_path.iterdir()) == []


def test_a_workers_seconds_that_are_not_a_number_are_not_recorded(tmp_path):
    _, how = model_transport.bring_home(_inline_record(seconds="soon"), tmp_path, NO_STORE)
    assert how["via"] == "inline" and how["worker_seconds"] is None


def test_a_message_is_scrubbed_before_it_is_cut(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SENTINEL_SECRET)
    # the secret straddles the 300th character: cut first, its first half would show
    text = model_transport._describe(RuntimeError("x" * 290 + SENTINEL_SECRET))
    assert SENTINEL_SECRET[:10] not in text and "***" in text


def test_configured_endpoints_never_redirect_the_store(monkeypatch, tmp_path):
    config_file = tmp_path / "aws-config"
    config_file.write_text("[default]\nendpoint_url = http://config-file-host.invalid\n"
                           "[services s3]\ns3 =\n  endpoint_url = http://config-file-s3.invalid\n")
    for name, value in {**STORE_ENV, "AWS_ENDPOINT_URL_S3": "http://env-s3.invalid",
                        "AWS_ENDPOINT_URL": "http://env-all.invalid", "AWS_CONFIG_FILE": str(config_file)}.items():
        monkeypatch.setenv(name, value)
    assert model_transport._s3(None).meta.endpoint_url == "https://s3.amazonaws.com"
    assert model_transport._s3("http://127.0.0.1:9000").meta.endpoint_url == "http://127.0.0.1:9000"


def test_a_large_model_is_not_read_for_inline_and_a_packing_error_is_a_missing_model(tmp_path):
    transport = {"max_inline_bytes": 100, "store": None}
    (tmp_path / MODEL_FILE).write_bytes(b"\0" * 1000)  # compresses to far under 100 bytes, still not inline
    record = {"path": MODEL_FILE, "bytes": 1000, "sha256": "0" * 64}
    packed = model_transport.pack(record, tmp_path, transport, "f" * 64, "job-1")
    assert "1000 bytes, over the inline limit of 100" in packed["missing"]
    small = {**record, "bytes": 50}
    (tmp_path / MODEL_FILE).unlink()  # the file vanished: any error while packing
    assert "the worker could not pack it: FileNotFoundError" in \
        model_transport.pack(small, tmp_path, transport, "f" * 64, "job-1")["missing"]


# -- a result that must fit RunPod's payload limit ------------------------------------------------
@pytest.fixture
def worker(monkeypatch):
    """remote/handler.py as a module (its import sets RUNPOD_LOG_LEVEL for its process only)."""
    monkeypatch.syspath_prepend(str(REPO / "remote"))
    monkeypatch.delenv("RUNPOD_LOG_LEVEL", raising=False)
    import handler

    return handler


def _trained(folder: Path, size: int = 40_000) -> tuple[dict, dict]:
    """A saved model of ``size`` incompressible bytes, train()'s record of it, and a result holding
    it inline."""
    data = os.urandom(size)
    (folder / MODEL_FILE).write_bytes(data)
    record = {"path": MODEL_FILE, "bytes": size, "sha256": hashlib.sha256(data).hexdigest()}
    transport = {"max_inline_bytes": 2 * size, "store": None}
    packed = model_transport.pack(record, folder, transport, "f" * 64, "job-1")
    assert "inline" in packed
    return record, {"status": "completed", "fingerprint": "f" * 64, "history": {"loss": [0.5, 0.4]}, "model": packed}


def test_a_result_over_the_cap_leaves_its_inline_model_out_with_the_reason(worker, tmp_path, monkeypatch):
    record, result = _trained(tmp_path)
    transport = {"max_inline_bytes": 2 * record["bytes"], "store": None}
    assert worker.fit_result(copy.deepcopy(result), record, str(tmp_path), transport, "job-1") == result
    monkeypatch.setenv("CVSWEEP_MAX_RESULT_BYTES", "20000")  # the model inline is over twice that
    fitted = worker.fit_result(copy.deepcopy(result), record, str(tmp_path), transport, "job-1")
    assert worker.result_bytes(fitted) <= 20_000 and fitted["history"] == result["history"]
    assert "over the worker's cap of 20000 (CVSWEEP_MAX_RESULT_BYTES" in fitted["model"]["missing"]
    assert "executor.artifact_store.url is not set" in fitted["model"]["missing"]
    monkeypatch.setenv("CVSWEEP_MAX_RESULT_BYTES", "50")  # not even the result without its model fits
    error = json.loads(worker.fit_result(copy.deepcopy(result), record, str(tmp_path), transport, "job-1")["error"])
    assert error["code"] == "result_too_large" and "over the worker's cap of 50" in error["problems"][0]
    monkeypatch.setenv("CVSWEEP_MAX_RESULT_BYTES", str(10**9))  # never over RunPod's limit
    assert worker.result_cap() == worker.PAYLOAD_LIMIT_BYTES == 10_000_000


def test_a_result_over_the_cap_sends_its_model_to_the_store(worker, s3_server, tmp_path, monkeypatch):
    import boto3

    for name, value in STORE_ENV.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    record, result = _trained(tmp_path)
    transport = {"max_inline_bytes": 2 * record["bytes"], "store": {"url": STORE_URL, "endpoint_url": s3_server}}
    monkeypatch.setenv("CVSWEEP_MAX_RESULT_BYTES", "20000")
    fitted = worker.fit_result(result, record, str(tmp_path), transport, "job-1")
    assert fitted["model"]["store_url"] == f"{STORE_URL}/{'f' * 64}/job-1/{MODEL_FILE}"
    assert "inline" not in fitted["model"] and worker.result_bytes(fitted) <= 20_000
    model, how = model_transport.bring_home(fitted["model"], tmp_path / "home", transport)
    assert how["via"] == "store" and model["sha256"] == record["sha256"]


# -- through the emulator and a real S3 server ----------------------------------------------------
@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def store_endpoint(s3_server, tmp_path_factory):
    """An emulated endpoint whose worker holds the store's credentials in its environment, and
    allows the stores the tests name (the last two: one down, one without the bucket)."""
    allowed = f"{STORE_URL}@{s3_server}, {STORE_URL}@http://127.0.0.1:9, s3://no-such-bucket/x@{s3_server}"
    emu = EmulatorProcess(1, tmp_path_factory.mktemp("store-endpoint-logs"),
                          env={**STORE_ENV, "CVSWEEP_ALLOWED_STORES": allowed})
    yield emu
    emu.close()


@pytest.fixture
def remote_env(store_endpoint, s3_server, monkeypatch, tmp_path_factory):
    import boto3

    store_endpoint.wait_for_workers()
    store_endpoint.reset_faults()
    for name, value in {**STORE_ENV, "RUNPOD_API_KEY": SENTINEL_API_KEY, "RUNPOD_ENDPOINT_ID": "local-endpoint",
                        "RUNPOD_ENDPOINT_BASE_URL": store_endpoint.base_url,
                        "CVSWEEP_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return store_endpoint, s3_server, s3


def test_a_stored_model_of_another_size_is_refused_before_download(s3_server, monkeypatch, tmp_path):
    import boto3

    for name, value in STORE_ENV.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    key = "sweeps/f/size-check/model.keras"
    s3.put_object(Bucket=BUCKET, Key=key, Body=MODEL_BYTES)
    transport = {"max_inline_bytes": 0, "store": {"url": STORE_URL, "endpoint_url": s3_server}}
    record = {"path": MODEL_FILE, "bytes": 1000, "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
              "store_url": f"s3://{BUCKET}/{key}"}
    model, how = model_transport.bring_home(record, tmp_path, transport)
    assert how is None and f"holds {len(MODEL_BYTES)} bytes, not the 1000 bytes the worker reported" in model["missing"]
    assert list(tmp_path.iterdir()) == []
    model, how = model_transport.bring_home({**record, "bytes": len(MODEL_BYTES)}, tmp_path, transport)
    assert how["via"] == "store" and (tmp_path / MODEL_FILE).read_bytes() == MODEL_BYTES


def _worker_output(endpoint, job_id: str) -> dict:
    return endpoint.admin("state")["jobs"][job_id]["output"]


def _assert_no_secret_in(folder: Path, *texts: str) -> None:
    for path in [p for p in folder.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert not any(secret.encode() in data for secret in SECRETS), path
    assert not any(secret in text for secret in SECRETS for text in texts)


@pytest.mark.slow
@pytest.mark.parametrize("via", ["inline", "store"])
def test_a_remote_sweep_brings_every_model_home(via, remote_env, tmp_path, capsys):
    endpoint, s3_url, s3 = remote_env
    store = ([f"executor.artifact_store.url={STORE_URL}", f"executor.artifact_store.endpoint_url={s3_url}",
              "executor.max_inline_model_mb=0"] if via == "store" else [])
    proc = run_cli("-m", "executor=runpod", "executor.max_in_flight=1", "executor.poll_interval_s=0.2",
                   "hydra.sweeper.n_trials=2", *TINY_OVERRIDES, *store, f"output_root={tmp_path}",
                   "plots=none")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    trials = read_json(sweep_dir / "summary.json")["trials"]
    results = {t["job"]: read_json(sweep_dir / t["job"] / "result.json") for t in trials}
    assert [r["status"] for r in results.values()] == ["completed", "completed"]
    for job, result in results.items():
        path = sweep_dir / job / MODEL_FILE
        sent = _worker_output(endpoint, result["remote"]["job_id"])["model"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == sent["sha256"] == result["model"]["sha256"]
        assert result["model"] == {"path": MODEL_FILE, "bytes": path.stat().st_size, "sha256": digest}
        assert result["remote"]["model_transport"]["via"] == via
        if via == "store":  # <prefix>/<fingerprint>/<job id>/model.keras
            key = f"sweeps/{result['fingerprint']}/{result['remote']['job_id']}/{MODEL_FILE}"
            assert sent["store_url"] == f"s3://{BUCKET}/{key}" and "inline" not in sent
            assert hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest() == digest
        # The model trained in the worker evaluates here to the figures the worker recorded,
        # exactly (cvsweep evaluate exits 1 on any difference).
        status, out, err = evaluate_here(sweep_dir / job, capsys)
        assert status == 0, out + err
    _assert_no_secret_in(tmp_path, proc.stdout, proc.stderr)
    _assert_no_secret_in(endpoint.log_dir)


@pytest.mark.slow
def test_artifacts_best_keeps_only_the_best_remote_model(remote_env, tmp_path, capsys):
    proc = run_cli("-m", "executor=runpod", "executor.max_in_flight=2", "executor.poll_interval_s=0.2",
                   "hydra.sweeper.n_trials=3", "artifacts=best", *TINY_OVERRIDES, f"output_root={tmp_path}",
                   "plots=none")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    (kept,) = sweep_dir.glob(f"*/{MODEL_FILE}")
    assert Path(summary["best_model"]["model"]).resolve() == kept.resolve()
    assert len(summary["models_deleted"]) == 2
    status, out, err = evaluate_here(sweep_dir, capsys)  # a sweep folder: its study's best, the kept one
    assert status == 0, out + err


def _run(endpoint, model_dir, **changes) -> dict:
    cfg = _executor_cfg(base_url=endpoint.base_url, **changes)
    return RunpodExecutor(cfg).run(_run_config(), model_dir=str(model_dir) if model_dir else None)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["corrupted", "too_big_no_store", "store_down", "no_such_bucket"])
def test_a_model_that_cannot_come_home_leaves_the_trial_completed(fault, remote_env, tmp_path, capfd):
    endpoint, s3_url, _ = remote_env
    changes, expected = {
        "corrupted": ({}, "is not the one the worker saved: its sha256 is"),
        "too_big_no_store": ({"max_inline_model_mb": 0}, "and executor.artifact_store.url is not set"),
        "store_down": ({"max_inline_model_mb": 0, "artifact_store": {"url": STORE_URL,
                                                                     "endpoint_url": "http://127.0.0.1:9"}},
                       "the worker could not upload it to s3://cvsweep-models/sweeps/"),
        "no_such_bucket": ({"max_inline_model_mb": 0, "artifact_store": {"url": "s3://no-such-bucket/x",
                                                                         "endpoint_url": s3_url}},
                           "NoSuchBucket"),
    }[fault]
    if fault == "corrupted":
        endpoint.admin("faults", {"corrupt_models": 1})
    model_dir = tmp_path / "trial"
    result = _run(endpoint, model_dir, **changes)
    assert result["status"] == "completed" and result["metrics"]["test_accuracy"] is not None
    assert expected in result["model"]["missing"], result["model"]
    assert "model_transport" not in result["remote"]
    assert not (model_dir / MODEL_FILE).exists() and list(model_dir.glob(".model-*")) == []
    (tmp_path / "result.json").write_text(json.dumps(result))
    captured = capfd.readouterr()
    _assert_no_secret_in(tmp_path, captured.out, captured.err)


@pytest.mark.slow
def test_without_a_model_dir_the_worker_returns_no_model(remote_env, tmp_path):
    endpoint, _, _ = remote_env
    result = _run(endpoint, None)
    assert result["status"] == "completed" and "model" not in result
    assert "model" not in _worker_output(endpoint, result["remote"]["job_id"])
    assert "model_transport" not in result["remote"]
