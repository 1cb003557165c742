"""Each adapter of cvsweep/compat.py against the installed library: an upgrade that changes what
an adapter reaches into fails here, naming the pinned version and what changed, instead of
somewhere in a sweep."""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from cvsweep import compat


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_optuna_sweepers_base_class_has_what_the_sweeper_uses():
    base = compat.optuna_sweeper_base()
    expected = ["self", "sampler", "direction", "storage", "study_name", "n_trials", "n_jobs", "max_failure_rate",
                "search_space", "custom_search_space", "params"]
    assert _parameters(base.__init__) == expected, (
        f"hydra-optuna-sweeper 1.3.0's OptunaSweeperImpl took {expected[1:]}; now {_parameters(base.__init__)[1:]}")
    for method in ("setup", "_process_searchspace_config", "_get_directions", "_to_grid_sampler_choices"):
        assert callable(getattr(base, method, None)), f"hydra-optuna-sweeper 1.3.0's OptunaSweeperImpl.{method} is gone"
    sweeper = base(sampler=None, direction=["maximize", "minimize"], storage=None, study_name=None, n_trials=1,
                   n_jobs=1, max_failure_rate=0.0, search_space=None, custom_search_space=None, params=None)
    sweeper._process_searchspace_config()
    assert sweeper._get_directions() == ["maximize", "minimize"]
    assert sweeper.search_space_distributions is None and sweeper.custom_search_space_extender is None
    assert sweeper._to_grid_sampler_choices(CategoricalDistribution([8, 16])) == (8, 16)


def test_sweep_parameters_are_parsed_into_current_optuna_distributions():
    distributions, fixed = compat.optuna_sweep_parameters(
        ["a=choice(8,16)", "b=interval(0.001,0.1)", "c=tag(log,interval(0.001,0.1))", "d=range(1,4)", "e=3"])
    assert distributions == {
        "a": CategoricalDistribution([8, 16]),
        "b": FloatDistribution(0.001, 0.1),
        "c": FloatDistribution(0.001, 0.1, log=True),
        "d": IntDistribution(1, 4),
    }, ("hydra-optuna-sweeper 1.3.0's create_params_from_overrides, converted to Optuna 5.0.0's classes, "
        f"gave other distributions: {distributions}")
    assert fixed == {"e": "3"}, f"hydra-optuna-sweeper 1.3.0 kept plain values as strings; now {fixed}"


def test_old_distributions_convert_to_current_ones():
    with pytest.warns(FutureWarning):  # Optuna 5 still warns about the classes it keeps until 6
        old = optuna.distributions.IntUniformDistribution(1, 3)
    assert compat.current_distribution(old) == IntDistribution(1, 3), (
        "optuna 5.0.0's _convert_old_distribution_to_new_distribution no longer maps "
        "IntUniformDistribution to IntDistribution")


def test_a_trial_is_asked_for_a_distribution_and_known_by_its_storage_id():
    study = optuna.create_study()
    trial = study.ask()
    value = compat.suggest(trial, "units", IntDistribution(8, 16))
    assert 8 <= value <= 16 and trial.params == {"units": value}, "optuna 5.0.0's Trial._suggest changed"
    trial_id = compat.trial_id(trial)
    assert isinstance(trial_id, int), f"optuna 5.0.0's Trial._trial_id is no longer an int: {trial_id!r}"
    assert optuna.Trial(study, trial_id).number == trial.number
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.trial_id(frozen) == trial_id, "optuna 5.0.0's FrozenTrial._trial_id is not the storage's id"


def test_overrides_are_applied_to_a_composed_config_as_hydra_does():
    config = OmegaConf.create({"a": 1, "model": {"units": 8, "kind": "cnn"}})
    parsed = OverridesParser.create().parse_overrides(["a=5", "model.units=16"])
    compat.apply_overrides(parsed, config)
    assert config == {"a": 5, "model": {"units": 16, "kind": "cnn"}}, (
        "hydra-core 1.3.8's ConfigLoaderImpl._apply_overrides_to_config applied them otherwise")
    assert compat.overrides_dirname(parsed, kv_sep="=", item_sep=",", exclude_keys=["a"]) == "model.units=16", (
        "hydra-core 1.3.8's get_overrides_dirname gives another name")


def test_a_jobs_outcome_is_read_without_raising():
    failed = JobReturn(overrides=["a=1"], status=JobStatus.FAILED)
    failed.return_value = ValueError("diverged")
    assert isinstance(compat.job_outcome(failed), ValueError), "hydra-core 1.3.8's JobReturn._return_value changed"
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 0.9
    assert compat.job_outcome(done) == 0.9 == done.return_value


def test_a_config_node_is_read_unresolved():
    config = OmegaConf.create({"missing": "???", "section": {"x": 1}, "link": "${section.x}"})
    assert OmegaConf.is_dict(compat.config_node(config, "section")), "OmegaConf 2.3's DictConfig._get_node changed"
    assert not OmegaConf.is_dict(compat.config_node(config, "missing"))  # no MissingMandatoryValue
    assert OmegaConf.is_interpolation(config, "link") and not isinstance(compat.config_node(config, "link"), DictConfig)


def test_the_joblib_launchers_job_runner_takes_what_the_worker_pool_passes():
    from hydra_plugins.hydra_joblib_launcher import _core

    expected = ["idx", "overrides", "hydra_context", "config", "task_function", "singleton_state"]
    assert _parameters(_core.execute_job) == expected, (
        f"hydra-joblib-launcher 1.2.0's _core.execute_job took {expected}; now {_parameters(_core.execute_job)} "
        "(the remote sweeps of tests/integration/execution/test_remote.py run it for real)")


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._send({"path": self.path, "auth": self.headers.get("Authorization")})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send({"path": self.path, "body": body})

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_the_runpod_endpoints_client_and_session(monkeypatch):
    import requests
    import runpod

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(runpod, "endpoint_url_base", f"http://127.0.0.1:{server.server_address[1]}/v2")
        client = compat.runpod_client(runpod.Endpoint("ep", api_key="key"))
        assert isinstance(compat.http_session(client), requests.Session), (
            "runpod 1.12.0's RunPodClient.rp_session is no longer a requests.Session")
        assert client.get("ep/health", timeout=5) == {"path": "/v2/ep/health", "auth": "Bearer key"}, (
            "runpod 1.12.0's RunPodClient.get(path, timeout) asks otherwise")
        assert client.post("ep/run", {"input": 1}, timeout=5) == {"path": "/v2/ep/run", "body": {"input": 1}}, (
            "runpod 1.12.0's RunPodClient.post(path, data, timeout) sends otherwise")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # imports TensorFlow
def test_tensorflows_gradient_registry_holds_the_custom_gradients():
    import tensorflow as tf

    registry = compat.gradient_registry()
    assert registry is not None, "tensorflow 2.21.0's ops._gradient_registry._registry is no longer a dict"

    @tf.custom_gradient
    def doubled(x):
        return 2 * x, lambda upstream: 2 * upstream

    before = {name for name in registry if name.startswith("CustomGradient-")}
    tf.function(doubled).get_concrete_function(tf.TensorSpec([], tf.float32))
    added = {name for name in registry if name.startswith("CustomGradient-")} - before
    assert added, "tensorflow 2.21.0 registered each traced custom gradient as CustomGradient-<n>; now none appeared"


def _pid() -> int:
    return os.getpid()


def test_a_process_pools_workers_are_listed():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        pids = {pool.submit(_pid).result() for _ in range(4)}
        listed = {process.pid for process in compat.pool_processes(pool)}
    assert pids <= listed and len(listed) == 2, "Python 3.11's ProcessPoolExecutor._processes changed"
