"""Property-based: the worker's handler fed arbitrary and hostile JSON. Every input gets a
structured error; no training starts, nothing is imported or called, no environment variable
leaks into the reply, and the real worker processes keep serving afterwards."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import sys
import time

import pytest
import requests
from conftest import REPO, TINY_RUN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvsweep.config.schema import SCHEMA_VERSION, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution.payload import MAX_INPUT_BYTES, PayloadError, accept_input, make_input

sys.path.insert(0, str(REPO / "remote"))
import handler as worker  # noqa: E402

CANARY_ENV = "CVSWEEP_CANARY_SECRET"
CANARY = "canary-7d41e9-do-not-echo"
CANARY_FILE = "/tmp/cvsweep-hostile-canary"
FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])  # the guard is the same for all


def canonical(data) -> str:
    """The test's own canonical JSON (sorted keys, no spaces, no NaN): a different spelling of
    a number or a bool (2 / 2.0 / True) gives a different text, unlike == on dicts."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_of(config: dict) -> str:
    """The fingerprint as the test computes it, without cvsweep's code."""
    return hashlib.sha256(canonical(config).encode("utf-8")).hexdigest()


# The one input that may train: TINY_RUN made complete, written out here, with the test's
# own hash. good_input() (cvsweep's make_input) must agree with it, or the fuzzing starts
# from a wrong base.
KNOWN_CONFIG = {
    "dataset": {"name": "digits", "path": None, "location": "client", "num_classes": 10, "sha256": None,
                "pixel_scale": 16.0, "test_fraction": 0.2},
    "model": {"architecture": "cnn", "dense_layers": 0, "dense_units": 64, "dense_units_decay": 1.0, "dropout": 0.1,
              "dropout_decay": 1.0, "activation": "relu", "kernel_initializer": "glorot_uniform", "conv_layers": 1,
              "filters": 8, "filter_growth": 2.0, "kernel_size": 3, "padding": "same", "batch_norm": False,
              "pooling": "max", "head": "flatten", "dense_activation": None,
              "augmentation": {"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0}},
    "sampling": {"strategy": "full", "fraction": 1.0},
    "training": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001,
                 "lr_schedule": "constant", "clipnorm": None, "clipvalue": None, "early_stopping_patience": 3,
                 "validation_split": 0.1,
                 "time_budget_s": None, "max_params": 50_000_000, "max_activation_mb": 8192.0, "seed": 3,
                 "deterministic": True, "precision": "float32"},
    "health": {"sample_size": 256, "gradient_batches": 2, "grad_vanishing_below": 1e-05,
               "grad_exploding_above": 100.0, "max_bias_change_per_epoch": 0.1, "max_weight_change_per_epoch": 0.5,
               "consistency_epochs": 3, "overfit_gap_tolerance": 0.2, "activation_images": 2,
               "activation_channels": 8,
               "weights": {"neuron_utilisation": 1.0, "gradient_health": 1.0, "training_stability": 1.0,
                           "convergence_quality": 1.0, "accuracy_consistency": 1.0, "overfitting": 1.0,
                           "parameter_efficiency": 0.5}},
}
KNOWN_INPUT = {"schema_version": SCHEMA_VERSION, "fingerprint": sha256_of(KNOWN_CONFIG), "config": KNOWN_CONFIG}


def good_input() -> dict:
    return copy.deepcopy(KNOWN_INPUT)


def test_the_client_sends_the_known_valid_input():
    assert canonical(make_input(run_config_of(load_run_config(copy.deepcopy(TINY_RUN))))) == canonical(KNOWN_INPUT)


# Strings an attacker would try, beside arbitrary text.
HOSTILE_TEXT = st.sampled_from([
    "${oc.env:" + CANARY_ENV + "}", "${oc.env:RUNPOD_API_KEY}", "${oc.decode:'1'}", "${..model}", "${now:%Y}",
    "os.system", "builtins.eval", "__import__('os').system('touch " + CANARY_FILE + "')", "../../etc/passwd",
    "\x00", "\u202e", "x" * 70_000,
])
HOSTILE_KEYS = st.sampled_from(["_target_", "_args_", "_partial_", "_recursive_", "__class__", "dataset", "model",
                                "training", "sampling", "health", "config", "fingerprint", "schema_version"])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40) | HOSTILE_TEXT)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12) | HOSTILE_KEYS, children, max_size=5),
    max_leaves=30,
)


def _paths(node, prefix=()):
    """Every place in a nested input a mutation can hit."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))


@st.composite
def mutated_inputs(draw) -> dict:
    """A valid input with one place replaced, one key added or one key removed."""
    data = good_input()
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "add", "remove"]))
    if action == "replace":
        parent[path[-1]] = draw(JSON)
    elif action == "add" and isinstance(parent[path[-1]], dict):
        parent[path[-1]][draw(st.text(max_size=12) | HOSTILE_KEYS)] = draw(JSON)
    else:
        del parent[path[-1]]
    return data


def deep(depth: int, leaf="${oc.env:" + CANARY_ENV + "}"):
    node = leaf
    for _ in range(depth):
        node = [node]
    return node


class TrainingStarted(BaseException):  # past the handler's own "except Exception"
    pass


@pytest.fixture
def guarded_handler(monkeypatch):
    """The real handler, with train() replaced by a tripwire and a canary in the environment.
    Returns a function that runs one job and checks every promise."""
    monkeypatch.setenv(CANARY_ENV, CANARY)
    calls = []

    async def tripwire(run_config, *args, **kwargs):
        calls.append(run_config)
        raise TrainingStarted

    monkeypatch.setattr(worker, "train_in_child", tripwire)
    asyncio.run(worker.handler({"id": "warm", "input": None}))  # anything imported lazily, imported now

    def run(job_input, allowed: dict = KNOWN_INPUT) -> dict:
        """The structured error, or {"trained": True} when ``allowed`` (and only it) trained."""
        modules = set(sys.modules)
        try:
            reply = asyncio.run(worker.handler({"id": "fuzz", "input": job_input}))
        except TrainingStarted:
            # Only the known-valid experiment may train, and only under the fingerprint the
            # test computed for it: another spelling of the same values (e.g. "2" for 2) is
            # the same experiment, another value or another fingerprint is not.
            (trained,) = calls
            calls.clear()
            assert canonical(trained) == canonical(allowed["config"]), job_input
            assert job_input["fingerprint"] == allowed["fingerprint"] == sha256_of(trained), job_input
            return {"trained": True}
        assert not calls
        assert set(reply) == {"error"}, reply
        error = json.loads(reply["error"])
        assert set(error) == {"code", "problems"} and error["problems"], error
        assert error["code"] in {"invalid_input", "invalid_config", "schema_version_mismatch", "fingerprint_mismatch",
                                 "over_worker_caps", "store_not_allowed", "worker_misconfigured"}
        assert CANARY not in reply["error"] and os.environ.get("RUNPOD_API_KEY", CANARY) not in reply["error"]
        assert set(sys.modules) == modules, set(sys.modules) - modules  # nothing imported
        assert not os.path.exists(CANARY_FILE)  # nothing called
        assert len(reply["error"]) < 4 * MAX_INPUT_BYTES  # the reply does not echo huge input back
        return error

    return run


@FUZZ
@given(job_input=JSON)
def test_arbitrary_json_gets_a_structured_error(guarded_handler, job_input):
    guarded_handler(job_input)


@pytest.mark.slow
@FUZZ
@given(job_input=mutated_inputs())
def test_a_valid_input_with_one_thing_changed_is_refused(guarded_handler, job_input):
    guarded_handler(job_input)


@pytest.mark.parametrize("job_input", [
    deep(20), deep(5_000), deep(200_000), {"config": deep(3_000)}, {"a": {"b": {"c": deep(17)}}},
    {"schema_version": SCHEMA_VERSION, "fingerprint": "0" * 64, "config": {"dataset": deep(30)}},
    [0] * 2_000_000, "x" * 5_000_000, {str(i): i for i in range(100_000)},
    float("nan"), float("inf"), {"schema_version": float("nan"), "fingerprint": "0" * 64, "config": {}},
    {"schema_version": 2**80, "fingerprint": "0" * 64, "config": {}},
    {"schema_version": True, "fingerprint": "0" * 64, "config": {}},
    {"schema_version": "1", "fingerprint": "0" * 64, "config": {}},
    {"schema_version": SCHEMA_VERSION, "fingerprint": "F" * 64, "config": {}},
    {"_target_": "os.system", "_args_": ["touch " + CANARY_FILE]},
], ids=lambda v: type(v).__name__)
def test_extreme_inputs(guarded_handler, job_input):
    started = time.monotonic()
    guarded_handler(job_input)
    assert time.monotonic() - started < 120  # catches a hang only; speed is not this test's business


@pytest.mark.parametrize("section,field,value", [
    ("model", "dropout", 0.2), ("model", "filters", 16), ("model", "activation", "tanh"),
    ("training", "epochs", 3), ("training", "seed", 4), ("training", "learning_rate", 0.01),
    ("dataset", "test_fraction", 0.25), ("sampling", "strategy", "proxy"),
])
def test_another_valid_config_under_the_old_fingerprint_is_refused(guarded_handler, section, field, value):
    """A valid config that is not the one fingerprinted: refused as a mismatch. With the
    fingerprint the test computes for it, the same input trains exactly that config."""
    changed = copy.deepcopy(KNOWN_INPUT)
    changed["config"][section][field] = value
    if (section, field) == ("sampling", "strategy"):
        changed["config"]["sampling"]["fraction"] = 0.5  # proxy sampling takes a part
    assert guarded_handler(changed)["code"] == "fingerprint_mismatch"
    changed["fingerprint"] = sha256_of(changed["config"])
    assert guarded_handler(changed, allowed=changed) == {"trained": True}


def _with(section: str, **values) -> dict:
    """KNOWN_INPUT with ``values`` set in ``section`` and the test's own fingerprint of the result."""
    changed = good_input()
    changed["config"][section].update(values)
    changed["fingerprint"] = sha256_of(changed["config"])
    return changed


@pytest.mark.parametrize("variable,cap,field,value", [
    ("CVSWEEP_MAX_EPOCHS", "1", "epochs", None), ("CVSWEEP_MAX_PARAMS", "1000", "max_params", None),
    ("CVSWEEP_MAX_ACTIVATION_MB", "64", "max_activation_mb", None),
    (None, None, "max_params", 10**11), (None, None, "epochs", 5000),  # the defaults, 50,000,000 and 1000
])
def test_a_job_over_the_operators_caps_is_refused_before_training(guarded_handler, monkeypatch, variable, cap,
                                                                  field, value):
    """The caps are the endpoint's environment's, never the job's: a job may ask less, not more."""
    if variable:
        monkeypatch.setenv(variable, cap)
    job = _with("training", **{field: value}) if value is not None else good_input()
    error = guarded_handler(job)
    assert error["code"] == "over_worker_caps", error
    assert f"training.{field}=" in error["problems"][0] and "over this endpoint's cap CVSWEEP_MAX_" in error["problems"][0]
    lower = _with("training", max_params=500, epochs=1, max_activation_mb=32.0)  # the job's own lower limits: accepted
    monkeypatch.setenv("CVSWEEP_MAX_PARAMS", "1000")
    assert guarded_handler(lower, allowed=lower) == {"trained": True}


@pytest.mark.parametrize("variable", ["CVSWEEP_MAX_EPOCHS", "CVSWEEP_MAX_RESULT_BYTES", "CVSWEEP_ALLOWED_STORES"])
def test_a_misconfigured_endpoint_fails_jobs_structured_before_training(guarded_handler, monkeypatch, variable):
    monkeypatch.setenv(variable, "lots")
    job = good_input()
    if variable == "CVSWEEP_ALLOWED_STORES":  # read only for a job that names a store
        job["transport"] = {"max_inline_bytes": 0, "store": {"url": "s3://models/x", "endpoint_url": None}}
    error = guarded_handler(job)
    assert error["code"] == "worker_misconfigured" and variable in error["problems"][0], error


STORE = {"url": "s3://models/sweeps/a", "endpoint_url": "https://s3.example.com"}


@pytest.mark.parametrize("allowed,verdict", [
    (None, "store_not_allowed"), ("s3://models/sweeps@https://s3.example.com", "trained"),
    ("s3://other, s3://models@https://s3.example.com/", "trained"),
    ("s3://models/sweeps", "store_not_allowed"),  # AWS S3, not the job's endpoint
    ("s3://models/sweeps@https://evil.example.com", "store_not_allowed"),
    ("s3://models/sweepsX@https://s3.example.com", "store_not_allowed"),
])
def test_the_worker_uploads_only_to_stores_its_operator_allows(guarded_handler, monkeypatch, allowed, verdict):
    if allowed is None:
        monkeypatch.delenv("CVSWEEP_ALLOWED_STORES", raising=False)
    else:
        monkeypatch.setenv("CVSWEEP_ALLOWED_STORES", allowed)
    job = good_input()
    job["transport"] = {"max_inline_bytes": 1000, "store": STORE}  # outside the fingerprint
    reply = guarded_handler(job)
    if verdict == "trained":
        assert reply == {"trained": True}
    else:
        assert reply["code"] == verdict and "CVSWEEP_ALLOWED_STORES" in reply["problems"][0], reply


def test_every_field_with_target_or_interpolation_is_refused(guarded_handler):
    """Each leaf of a valid config, in turn, as an instantiation target or an env interpolation."""
    base = good_input()
    tried = 0
    for section, fields in base["config"].items():
        for field in fields:
            for hostile in ({"_target_": "os.system", "_args_": ["touch " + CANARY_FILE]},
                            "${oc.env:" + CANARY_ENV + "}"):
                data = copy.deepcopy(base)
                data["config"][section][field] = hostile
                assert guarded_handler(data)["code"] == "invalid_config"
                tried += 1
    assert tried >= 40


@pytest.mark.slow
def test_the_real_workers_keep_serving_after_hostile_jobs(runpod_env):
    """Hostile jobs through real HTTP to the emulator's real worker processes, then a valid one."""
    base = runpod_env.base_url + "/local-endpoint"
    pids = {w: s["pid"] for w, s in runpod_env.admin("state")["workers"].items()}
    hostile = [json.dumps(h) for h in (
        None, [], deep(500), {"_target_": "os.system"}, "x" * 100_000, {"config": deep(300)},
        {"schema_version": SCHEMA_VERSION, "fingerprint": "0" * 64, "config": {"dataset": "${oc.env:RUNPOD_API_KEY}"}})]
    headers = {"Authorization": f"Bearer {os.environ['RUNPOD_API_KEY']}", "Content-Type": "application/json"}
    # Nested past any JSON parser's limit: the API refuses it, and stays up.
    too_deep = requests.post(f"{base}/run", data='{"input": ' + "[" * 100_000 + "]" * 100_000 + "}",
                             headers=headers, timeout=30)
    assert too_deep.status_code == 400
    submitted = [requests.post(f"{base}/run", data='{"input": ' + h + "}", headers=headers, timeout=30).json()
                 for h in hostile]
    assert all("id" in s for s in submitted), submitted
    job_ids = [s["id"] for s in submitted]
    job_ids.append(requests.post(f"{base}/run", json={"input": good_input()}, headers=headers, timeout=30).json()["id"])
    statuses = {}
    deadline = time.monotonic() + 180
    while len(statuses) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            status = requests.get(f"{base}/status/{job_id}", headers=headers, timeout=30).json()
            if status["status"] in ("COMPLETED", "FAILED"):
                statuses[job_id] = status
        time.sleep(0.2)
    *refused, valid = (statuses[j] for j in job_ids)
    for status in refused:
        assert status["status"] == "FAILED", status
        assert json.loads(status["error"])["code"] in {"invalid_input", "invalid_config"}
        assert os.environ["RUNPOD_API_KEY"] not in json.dumps(status)
    assert valid["status"] == "COMPLETED" and valid["output"]["status"] == "completed"
    workers = runpod_env.admin("state")["workers"]
    assert all(w["alive"] for w in workers.values())
    assert {w: s["pid"] for w, s in workers.items()} == pids  # none died and was replaced


def test_accept_input_names_the_depth_limit():
    with pytest.raises(PayloadError, match="deeper than 16 levels"):
        accept_input(deep(100))


# ---- Hostile data paths (issue 14, data access) --------------------------------------------------
# Inputs that pass every payload check (schema, fingerprint) but whose dataset.path names what the
# worker must not read. Kept in this one test and its helpers, apart from the strategies above.

HOSTILE_DATA_PATHS = st.sampled_from([
    "/dev/zero", "/dev/urandom", "/dev/stdin", "/proc/self/environ", "/proc/self/mem", "/proc/1/cmdline",
    "/etc/passwd", "/etc/shadow", "/etc/passwd\x00.npz", "/", "/etc", "/runpod-volume/../etc/passwd",
    "~/.ssh/id_rsa", "{root}", "{root}/out.npz", "{root}/loop.npz", "{root}/fifo.npz", "{root}/dir-out/secret.npz",
    "{root}/../outside/secret.npz", "{root}/dir-out", "{root}/missing.npz", "{root}/" + "a/" * 3000 + "x.npz",
])
DATA_SUFFIXES = st.sampled_from(["", "/", "/.", "//", "/./x/.."])


@st.composite
def inputs_naming_hostile_data(draw, root: str) -> dict:
    path = draw(HOSTILE_DATA_PATHS).replace("{root}", root) + draw(DATA_SUFFIXES)
    name = draw(st.sampled_from(["npz", "mnist", "imdb", "image_folder", "gtsrb"]))
    dataset = {"name": name, "path": path, "location": draw(st.sampled_from(["client", "worker"])),
               "num_classes": 2}
    config = copy.deepcopy(TINY_RUN)
    if name in ("image_folder", "gtsrb"):
        dataset.update(test_fraction=0.2, image_size=[8, 8], color_mode="grayscale")
    if name == "imdb":
        dataset.update(vocab_size=100, sequence_length=8)
        config["model"] = {"architecture": "lstm"}
    config["dataset"] = dataset
    return {"schema_version": SCHEMA_VERSION, "fingerprint": "0" * 64, "config": config}


@pytest.mark.slow
def test_paths_that_pass_the_payload_checks_are_refused_unread(tmp_path, monkeypatch):
    """Through the real handler (train() a tripwire): every hostile dataset.path gets one
    structured data_refused error, the same words whether or not the file exists, nothing of
    a file outside the roots in the reply, and no FIFO or device is opened (it would hang)."""
    from hypothesis import assume

    root, outside = tmp_path / "volume", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret.npz").write_text(CANARY)
    (root / "out.npz").symlink_to(outside / "secret.npz")
    (root / "loop.npz").symlink_to(root / "loop.npz")
    (root / "dir-out").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo.npz")
    monkeypatch.setenv("CVSWEEP_DATA_ROOTS", str(root))

    async def no_training(*args, **kwargs):
        pytest.fail("training started")

    monkeypatch.setattr(worker, "train_in_child", no_training)
    expected = (f"not a readable data file or folder under the worker's data roots ({root}; set CVSWEEP_DATA_ROOTS "
                "on the endpoint to change them)")

    @settings(FUZZ, max_examples=300)
    @given(job_input=inputs_naming_hostile_data(str(root)))
    def check(job_input):
        job_input["fingerprint"] = make_input(job_input["config"])["fingerprint"]
        try:
            job_input = make_input(run_config_of(load_run_config(job_input["config"])))
        except Exception:
            assume(False)  # not a valid config: the other tests cover those
        accept_input(job_input)  # passes every payload check
        reply = asyncio.run(worker.handler({"id": "fuzz", "input": job_input}))
        error = json.loads(reply["error"])
        assert set(reply) == {"error"} and set(error) == {"code", "problems"} and error["code"] == "data_refused"
        [problem] = error["problems"]  # names the path, or the entry of a folder that leads out
        assert problem.startswith("dataset.path=") and problem.endswith(f": {expected}"), problem
        assert CANARY not in reply["error"]

    check()


# Inputs that pass every payload check (valid schema, sizes, strings) but point at what a
# worker cannot train: paths that are no data, oversized models. They run against the real
# handler with its real training process: each reply is a result or a structured failure.
ACCEPTED_PATHS = st.sampled_from(["/dev/null", "/", "/nonexistent/data.npz", "/proc/self/status", "relative.npz",
                                  "x" * 4000, "../../etc/passwd", "\u202edata.npz", "data.npz\n"])
ACCEPTED_MODELS = st.fixed_dictionaries({
    "filters": st.sampled_from([1, 8, 1024]), "filter_growth": st.sampled_from([0.25, 1.0, 4.0]),
    "conv_layers": st.integers(1, 8), "dense_units": st.sampled_from([1, 8192]),
})


@st.composite
def accepted_inputs(draw) -> dict:
    run = copy.deepcopy(TINY_RUN)
    if draw(st.booleans()):
        run["dataset"].update(name="npz", path=draw(ACCEPTED_PATHS), pixel_scale=255.0, test_fraction=None)
    else:
        run["model"].update(draw(ACCEPTED_MODELS), dense_layers=1)
    run["training"]["epochs"] = 1
    # What is asserted is the reply's shape, not what it learned: a tenth of the training split,
    # and the fewest diagnostic samples.
    run["sampling"] = {"strategy": "proxy", "fraction": 0.1}
    run["health"] = {"sample_size": 16, "gradient_batches": 1, "activation_images": 0}
    return make_input(run_config_of(load_run_config(run)))


# 15 derandomized draws (each trains, with the diagnostics of up to 8 conv layers): both
# branches, paths and models, within the CI's time.
@pytest.mark.slow
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(job_input=accepted_inputs())
def test_accepted_inputs_train_or_fail_structured_in_the_training_process(job_input):
    reply = asyncio.run(worker.handler({"id": "fuzz-accepted", "input": job_input}))
    if "error" in reply:
        failure = json.loads(reply["error"])
    else:
        assert reply["fingerprint"] == job_input["fingerprint"]
        if reply["status"] == "completed":
            return
        failure = reply["failure"]
    assert set(failure) == {"code", "problems"} and failure["problems"], failure
    # data_refused / invalid_data: the worker's data check (its data roots) before any training
    assert failure["code"] in {"invalid_config", "data_error", "out_of_memory", "data_refused", "invalid_data"}, failure
    assert "Traceback" not in json.dumps(reply)
    assert worker.TRAINING._process.is_alive()  # the training process serves the next one
