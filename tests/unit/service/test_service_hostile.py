"""Hostile requests to the sweep service, to the app ``cvsweep serve`` builds, in this
process (conftest.ServiceApp: its guard, routes and request checks through Starlette's TestClient):
each is refused with a clear status and message, nothing is started or written, and the service
still serves. Also the token, the Host and Origin checks, data paths held to the operator's data
roots, and the settings a server refuses to start with. A data path inside the roots, accepted and
swept by a real server process: tests/integration/service/test_service_accepts_data.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SENTINEL_API_KEY, ServiceApp
from test_data_access import write_npz

from cvsweep.service.settings import MAX_BODY_BYTES, MAX_OVERRIDE_CHARS, MAX_OVERRIDES

TOKEN = "t0k3n-for-the-tests-only-0123456789"


def make_data_root(tmp_path_factory) -> Path:
    """A data root holding digits.npz and escape.npz, a link to a file outside it."""
    import numpy as np
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("data-root")
    digits = load_digits()  # in Keras layout, as a user's own .npz would be
    images, labels = (digits.images * 15).astype(np.uint8), digits.target.astype(np.uint8)
    np.savez(root / "digits.npz", x_train=images[:1400], y_train=labels[:1400], x_test=images[1400:],
             y_test=labels[1400:])
    outside = write_npz(tmp_path_factory.mktemp("elsewhere") / "secret.npz")
    (root / "escape.npz").symlink_to(outside)  # inside by name, outside in fact
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data_root(tmp_path_factory)


@pytest.fixture(scope="module")
def service(tmp_path_factory, data_root):
    with pytest.MonkeyPatch.context() as patch:  # secrets in the service's environment, never in an answer
        patch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SENTINEL_API_KEY)
        server = ServiceApp(tmp_path_factory.mktemp("service") / "outputs", "--data-root", str(data_root))
        yield server
        server.kill_sweeps()
        server.close()


def nothing_started(server: ServiceApp) -> None:
    health = server.get("/health").json()  # ... and it still answers
    assert health["running"] == health["queued"] == 0
    sweeps = server.output_root / "sweeps"
    assert not sweeps.exists() or not any(sweeps.iterdir())


# (overrides, the key the answer names (None: the override as written), words the message has)
HOSTILE_OVERRIDES = [
    (["+training.foo=1"], "training.foo", "+, ++ and ~ overrides are not allowed"),
    (["++training.epochs=1"], "training.epochs", "+, ++ and ~"),
    (["~training.epochs"], "training.epochs", "+, ++ and ~"),
    (["+experiment=mnist_fast"], "experiment", "+, ++ and ~"),
    (["training.learning_rate=${oc.env:RUNPOD_API_KEY}"], None, "interpolation"),
    (["training.epochs=${training.batch_size}"], None, "interpolation"),
    # Hydra turns \{ into {: the value OmegaConf would resolve (and quote in its error) is ${...}.
    (["training.learning_rate=$\\{oc.env:RUNPOD_API_KEY\\}"], "training.learning_rate", "also written with escapes"),
    (["training.epochs=choice(1,$\\{oc.env:AWS_SECRET_ACCESS_KEY\\})"], "training.epochs", "also written with escapes"),
    (["health={weights:{overfitting:$\\{oc.env:RUNPOD_API_KEY\\}}}"], "health", "also written with escapes"),
    (["model._target_=os.system"], None, "_target_"),
    (["hydra.launcher._target_=os.system"], None, "_target_"),
    (["hydra.sweep.dir=/tmp/elsewhere"], "hydra.sweep.dir", "a request may set only"),
    (["hydra.run.dir=/tmp"], "hydra.run.dir", "a request may set only"),
    (["hydra/launcher=joblib"], "hydra/launcher", "a request may set only"),
    (["hydra.sweeper.storage=sqlite:////tmp/x.db"], "hydra.sweeper.storage", "a request may set only"),
    (["hydra.callbacks.x=1"], "hydra.callbacks.x", "a request may set only"),
    (["hydra.sweeper.n_trials=choice(1,2)"], "hydra.sweeper.n_trials", "one value, not a sweep"),
    (["output_root=/tmp"], "output_root", "set by whoever runs the service"),
    (["executor=runpod", "executor.base_url=http://attacker.example/v2"], "executor.base_url", "API key"),
    (["executor=runpod", "executor.price_per_hour=0.0001"], "executor.price_per_hour", "which a budget counts"),
    (["executor=runpod", "executor.endpoint_id='../../steal/anything?'"], "executor.endpoint_id",
     "not a RunPod endpoint id"),
    (["executor.artifact_store.endpoint_url=http://attacker.example"], "executor.artifact_store.endpoint_url",
     "credentials"),
    (["executor=runpod", "executor.artifact_store={endpoint_url:'http://attacker.example',url:'s3://bucket/x'}"],
     "executor.artifact_store", "only whoever runs the service sets"),
    (["dataset=../../../etc/passwd"], "dataset", "no such option"),
    (["dataset=choice(digits,../x)"], "dataset", "no such option"),
    (["model=/etc/passwd"], "model", "no such option"),
    (["dataset=npz", "dataset.path=/etc/passwd"], "dataset.path", "outside the data roots"),
    (["dataset=npz", "dataset.path=DATA/../elsewhere.npz"], "dataset.path", "outside the data roots"),
    (["dataset=npz", "dataset.path=DATA/escape.npz"], "dataset.path", "outside the data roots"),
    (["dataset=npz", "dataset.path='~/x.npz'"], "dataset.path", "outside the data roots"),
    (["--config-dir=/tmp"], None, "a command-line flag"),
    (["-cd", "/tmp"], None, "a command-line flag"),
    (["--cfg"], None, "a command-line flag"),
    (["training.epochs"], None, "not an override"),
    (["training.epochs=0"], "training.epochs", "allowed is [1, 10000]"),
    (["training.epochs=abc"], "training.epochs", "could not be converted"),
    (["model.no_such_setting=3"], "model.no_such_setting", "no such setting; model has: architecture"),
    (["objective=speed"], "objective", "objective"),
    (["hydra/sweeper/pruner=genetic"], "hydra/sweeper/pruner", "no such option"),
    (["secondary_objectives=[params]", "hydra/sweeper/pruner=median"], None, "hydra/sweeper/pruner=none"),
    (["training.max_params=100000000000"], "training.max_params", "may lower this limit, not raise it"),
    (["training.max_activation_mb=choice(100, 100000)"], "training.max_activation_mb", "up to 8192"),
    (["training={max_params: 100000000000}"], "training", "a section holding training.max_"),
    # Allowed keys, refused values: the request reaches the command's own checks.
    (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials", "allowed is a whole number >= 1"),
    (["hydra.sweeper.timeout_s=-1"], "hydra.sweeper.timeout_s", "allowed is a number of seconds > 0"),
    (["hydra.sweeper.constraints.min_val_accuracy=2"], "hydra.sweeper.constraints.min_val_accuracy", "[0, 1]"),
]


@pytest.mark.parametrize("overrides, key, words", HOSTILE_OVERRIDES, ids=[" ".join(o) for o, _, _ in HOSTILE_OVERRIDES])
def test_a_hostile_override_is_refused_naming_it_and_nothing_starts(service, data_root, overrides, key, words):
    overrides = [o.replace("DATA", str(data_root)) for o in overrides]
    response = service.post("/sweeps", json={"overrides": overrides})
    assert response.status_code == 422, response.text
    assert SENTINEL_API_KEY not in response.text  # the environment's secrets stay in it
    problems = response.json()["detail"]
    assert any(words.lower() in p["msg"].lower() for p in problems), problems
    if key is not None:
        assert key in [p["key"] for p in problems], problems
    nothing_started(service)


# (body, status): the shape and size of the request itself.
HOSTILE_BODIES = [
    ({"overrides": "training.epochs=1"}, 422),
    ({"overrides": [1, 2]}, 422),
    ({"overrides": [["training.epochs=1"]]}, 422),
    ({"overrides": ["training.epochs=1"] * (MAX_OVERRIDES + 1)}, 422),
    ({"overrides": ["model.filters=" + "8" * MAX_OVERRIDE_CHARS]}, 422),
    ({"overrides": ["training.epochs=1\nhydra.sweep.dir=/tmp"]}, 422),
    ({"overrides": ["training.epochs=1\x00"]}, 422),
    ({"overrides": ["x" * 100] * 1000}, 413),  # over the body limit
]


@pytest.mark.parametrize("body, status", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_a_malformed_or_oversized_request_is_refused(service, body, status):
    response = service.post("/sweeps", json=body)
    assert response.status_code == status, response.text[:500]
    nothing_started(service)


def test_a_body_that_is_not_json_or_far_too_big_is_refused(service):
    assert service.post("/sweeps", data="overrides=training.epochs=1",
                        headers={"content-type": "text/plain"}).status_code == 422
    assert service.post("/sweeps", data="{not json", headers={"content-type": "application/json"}).status_code == 422
    huge = b'{"overrides": ["' + b"a" * (20 * MAX_BODY_BYTES) + b'"]}'
    assert service.post("/sweeps", data=huge, headers={"content-type": "application/json"}).status_code == 413
    nothing_started(service)


@pytest.mark.parametrize("path", [
    "/sweeps/..%2F..%2Fetc%2Fpasswd", "/sweeps/../../etc/passwd", "/sweeps/20261129-000000-abcdef",
    "/sweeps/20261129-000000-ABCDEF/log", "/sweeps/%2e%2e/report", "/sweeps/x/trials/0",
])
def test_ids_that_name_no_service_sweep_are_404(service, path):
    assert service.get(path).status_code == 404
    assert service.post(path.rstrip("/") + "/cancel").status_code in (404, 405)


def test_trial_routes_reach_only_the_trials_files(service):
    """A real sweep folder (written as the service writes one), then paths that try to leave it."""
    from cvsweep.service.store import REQUEST_FILE

    folder = service.output_root / "sweeps" / "20261129-000001-abcdef"
    (folder / "0").mkdir(parents=True)
    (folder / REQUEST_FILE).write_text('{"not": "used by these routes"}')
    (folder / "0" / "result.json").write_text("{}")
    (service.output_root / "optuna.db.secret").write_text("x")
    try:
        base = "/sweeps/20261129-000001-abcdef/trials"
        assert service.get(f"{base}/0").status_code == 200
        for job in ("..%2F..%2F..%2Foptuna.db.secret", "-1", "0x0", "%2e%2e", "1e3", "99999999999999", " 0", "%C2%B2"):
            assert service.get(f"{base}/{job}").status_code == 404, job
            assert service.get(f"{base}/{job}/model").status_code == 404, job
        assert service.get(f"{base}/0/model").status_code == 404  # no model there
    finally:
        import shutil

        shutil.rmtree(folder)


def test_the_dashboard_shows_but_never_changes_the_studies(service):
    """Its write routes would let any client delete or tell the studies running sweeps own."""
    assert service.get("/api/studies").status_code == 200
    for method, path in [("POST", "/api/studies"), ("DELETE", "/api/studies/1"), ("POST", "/api/trials/1/tell"),
                         ("PUT", "/api/studies/1/note"), ("POST", "/incompatible-rdb-schema")]:
        response = service.session.request(method, path, json={})
        assert response.status_code == 405 and "read-only" in response.json()["detail"], (method, path)
    assert service.get("/api/studies").json()["study_summaries"] == []  # nothing was created
    nothing_started(service)


def test_a_full_queue_turns_requests_away(tmp_path):
    server = ServiceApp(tmp_path / "outputs", "--max-queued", "0")
    try:
        response = server.post("/sweeps", json={"overrides": ["training.epochs=1"]})
        assert response.status_code == 429 and "serve.max_queued=0" in response.json()["detail"]
        assert not (server.output_root / "sweeps").exists()
    finally:
        server.close()


def test_another_sites_page_and_another_host_name_are_refused(service):
    refused = service.post("/sweeps", json={"overrides": ["training.epochs=1"]},
                           headers={"Origin": "http://attacker.example"})
    assert refused.status_code == 403 and "Origin" in refused.json()["detail"]
    rebound = service.get("/health", headers={"Host": "attacker.example:80"})
    assert rebound.status_code == 400 and "answers only to 127.0.0.1" in rebound.json()["detail"]
    nothing_started(service)


def test_with_a_token_every_route_needs_it(tmp_path):
    server = ServiceApp(tmp_path / "outputs", token=TOKEN)
    try:
        anonymous = server.anonymous()
        for path in ("/health", "/options", "/sweeps", "/sweeps/20261129-000000-abcdef", "/dashboard", "/api/studies"):
            response = anonymous.get(path)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", path
        for wrong in ("Bearer wrong", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
            response = anonymous.get("/options", headers={"Authorization": wrong})
            assert response.status_code == 401, wrong
        assert anonymous.post("/sweeps", json={"overrides": []}).status_code == 401
        assert server.get("/options").status_code == 200  # the bearer token
        # The page's shell loads without it; its login sets a cookie that then works.
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/session").json() == {"auth_required": True,
                                                                                  "authenticated": False}
        assert anonymous.post("/session", json={"token": "wrong"}).status_code == 401
        login = anonymous.post("/session", json={"token": TOKEN})
        assert login.status_code == 204
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
        assert anonymous.get("/options").status_code == 200
        assert not (server.output_root / "sweeps").exists()
    finally:
        server.close()


def run_serve(*args: str, token: str | None, monkeypatch, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``cvsweep serve ARGS`` for settings it refuses: its
    main() returns before it builds the app or binds a port."""
    from cvsweep.cli.main import main

    monkeypatch.delenv("CVSWEEP_API_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("CVSWEEP_API_TOKEN", token)
    status = main(["serve", *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("args, token, words", [
    (["--host", "0.0.0.0"], None, "CVSWEEP_API_TOKEN"),
    (["--host", "192.0.2.1"], None, "reachable from other machines"),
    (["--host", "0.0.0.0"], "short", "at least 16"),
    (["--max-running", "0"], None, "serve.max_running=0"),
    (["--data-root", "/no/such/folder"], None, "serve.data_roots"),
])
def test_a_server_that_would_be_unsafe_or_wrong_refuses_to_start(tmp_path, args, token, words, monkeypatch, capsys):
    status, stderr = run_serve(*args, "--output-root", str(tmp_path / "outputs"), token=token,
                               monkeypatch=monkeypatch, capsys=capsys)
    assert status == 2 and words in stderr, stderr
    assert not (tmp_path / "outputs" / "sweeps").exists()
