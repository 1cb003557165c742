"""Shared helpers: the real CLI in a subprocess, the command's composition and checks in this
process, Hydra's compose API, a tiny real run config, one real sweep for the session, the
service as a server process or as its app in this process, the RunPod emulator."""

from __future__ import annotations

import collections
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cvsweep.compose import CONF_DIR, compose, compose_sweep  # noqa: F401 (the tests import them from here)
from cvsweep.data.source_identity import FILE as SOURCE_IDENTITIES

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# Test modules share helpers by basename (``from test_resume import wait_for``) across folders:
# each folder of test files is on sys.path, whichever file pytest imports first.
for _folder in sorted({path.parent for path in TESTS.rglob("test_*.py")} - {TESTS}):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))
# tests/unit: in-process; tests/integration: real training, processes, the emulator, PostgreSQL;
# tests/e2e: the CLI, the wheel, the browser. The folder is the marker (pytest -m unit).
KINDS = ("unit", "integration", "e2e")
# The real MNIST shipped beside the checkout (see ../shared/data/README.md).
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
# Under CI (.ci/run installs and starts everything) a missing service or file is a failure:
# a test that skips there is coverage that vanished without anyone seeing it.
ON_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """Skip without ``what`` on a developer's machine; fail under CI=true."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"CI=true, but this test has no {what}")
    pytest.skip(f"needs {what}")

# A real run on sklearn's digits that trains in about a second.
TINY_RUN = {
    "dataset": {"name": "digits", "path": None, "num_classes": 10, "pixel_scale": 16.0, "test_fraction": 0.2},
    "model": {"conv_layers": 1, "filters": 8, "dense_layers": 0, "dropout": 0.1},
    "sampling": {"strategy": "full", "fraction": 1.0},
    "training": {"epochs": 2, "batch_size": 64, "seed": 3},
    "health": {},
}
# The same, as command-line overrides, for the end-to-end tests.
TINY_OVERRIDES = ["model.conv_layers=1", "model.filters=8", "model.dense_layers=0", "training.epochs=2", "training.batch_size=64"]


# The files that read one of the session's real sweeps (the tiny_sweep and epochs_1_sweep
# fixtures): one test process runs all the readers of a sweep, so that it runs once.
SHARED_SWEEP_FILES = {
    **dict.fromkeys(["test_sweep_outputs.py", "test_model_artifacts.py", "test_trial_files.py",
                     "test_cli_end_to_end.py", "test_hostile_cli.py", "test_progress.py"], "tiny_sweep"),
    **dict.fromkeys(["test_study_identity.py", "test_resume.py"], "epochs_1_sweep"),
}


def file_group(path: str) -> str:
    """What pytest-xdist hands to one test process as a whole: a test file, or all the files
    that read one of the session's sweeps."""
    shared = SHARED_SWEEP_FILES.get(Path(path).name)
    return f"the files that read {shared}" if shared else str(path)


@pytest.hookimpl(trylast=True)  # after -m has deselected: only the tests that run count
def pytest_collection_modifyitems(config, items) -> None:
    """Marks each test unit, integration or e2e by the folder its file sits in, and puts the
    file groups with the most slow tests first, then those with the most tests: pytest-xdist
    hands them out in this order (``--no-loadscope-reorder``), so no long file starts last while
    the other process idles."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS).parts
        if parts[0] in KINDS:
            item.add_marker(getattr(pytest.mark, parts[0]))
    groups = [file_group(item.nodeid.split("::")[0]) for item in items]
    slow = collections.Counter(group for group, item in zip(groups, items) if item.get_closest_marker("slow"))
    tests = collections.Counter(groups)
    order = {id(item): (-slow[group], -tests[group]) for group, item in zip(groups, items)}
    items.sort(key=lambda item: order[id(item)])  # stable: a file's tests keep their order


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown where xdist is not loaded
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the files of SHARED_SWEEP_FILES as one unit (pytest-xdist's own
    ``loadgroup`` cannot be used: it renames test ids in a way pytest 9 no longer allows)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileGroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return file_group(super()._split_scope(nodeid))

    return FileGroupScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """cvsweep's cache (decoded image folders, the remote job ledger) for this session only,
    never the user's ~/.cache/cvsweep; the CLI subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("cvsweep-cache")))
        yield


@pytest.fixture
def tiny_run() -> dict:
    return copy.deepcopy(TINY_RUN)


def evaluate_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m cvsweep evaluate ARGS`` in a fresh interpreter, from the repository root."""
    return subprocess.run([sys.executable, "-m", "cvsweep", "evaluate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def evaluate_here(given, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cvsweep evaluate GIVEN`` through the command's main() in
    this process: TensorFlow is imported once per test process instead of once per evaluation."""
    from cvsweep.cli.main import main

    status = main(["evaluate", str(given)])
    printed = capsys.readouterr()
    return status, printed.out, printed.err


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m cvsweep ARGS`` in a fresh interpreter, from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "cvsweep", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def as_the_command_checks(args: list[str], capsys, multirun: bool = True) -> tuple[int, str]:
    """(exit status, what the user reads: stderr, then stdout) of ``cvsweep -m ARGS`` (``cvsweep
    ARGS`` when not ``multirun``) up to its first trial, in this process: what the command says
    of a config Hydra cannot compose (one line, exit 2: cvsweep/cli/composition.py), or what the
    checks' callback (cvsweep/sweep/hooks.py) prints and exits with."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cvsweep.sweep.hooks import CvsweepHooks

    try:
        cfg = compose_sweep(*args) if multirun else compose(*args)
    except (HydraException, OmegaConfBaseException) as err:
        from cvsweep.cli.composition import one_line

        return 2, f"cvsweep: {one_line(err)}"
    status = 0
    try:
        (CvsweepHooks().on_multirun_start if multirun else CvsweepHooks().on_run_start)(cfg)
    except SystemExit as exit:
        status = exit.code
    printed = capsys.readouterr()
    return status, printed.err + printed.out


def class_folder_tree(root: Path, classes=("cat", "dog", "emu"), per_class: int = 5) -> Path:
    """A class-per-folder image tree under ``root``: ``per_class`` tiny noise PNGs per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def read_json(path: Path):
    return json.loads(Path(path).read_text())


SENTINEL_API_KEY = "sk-cvsweep-sentinel-3f9a1c"


class EmulatorProcess:
    """``python remote/emulator.py`` on a free port of 127.0.0.1, with real worker processes."""

    def __init__(self, workers: int, log_dir: Path, *options: str, env: dict | None = None):
        env = {**os.environ, "RUNPOD_API_KEY": SENTINEL_API_KEY, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "remote" / "emulator.py"), "--port", "0", "--workers", str(workers),
             "--log-dir", str(log_dir), *options],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()  # blocks until the workers are up
        assert line.startswith("emulator ready: "), line
        self.base_url = line.split()[2]
        self.log_dir = log_dir

    def admin(self, path: str, body=None):
        import requests

        root = self.base_url.rsplit("/v2", 1)[0]
        if body is None:
            return requests.get(f"{root}/admin/{path}", timeout=10).json()
        return requests.post(f"{root}/admin/{path}", json=body, timeout=10).json()

    def reset(self) -> None:
        """Every fault off and the settings (time_scale, retention_s, ...) as the emulator started."""
        self.admin("reset", {})

    reset_faults = reset

    def settings(self, **values) -> dict:
        """Changes the emulator's settings (remote/emulator.py ``Settings``) until the next reset."""
        return self.admin("settings", values)

    def wait_for_workers(self, timeout: float = 180) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.admin("state")["workers"].values()
            if all(w["alive"] and w["ready"] for w in workers):
                return
            time.sleep(0.5)
        raise TimeoutError("emulator workers not ready")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``python -m cvsweep serve`` on a free port of 127.0.0.1 (a real server process), over
    ``output_root``; ``env`` adds to the environment (CVSWEEP_API_TOKEN, RUNPOD_API_KEY)."""

    def __init__(self, output_root: Path, *options: str, env: dict | None = None, token: str | None = None):
        import requests

        self.port, self.output_root, self.token = free_port(), Path(output_root), token
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        env.pop("CVSWEEP_API_TOKEN", None)
        if token is not None:
            env["CVSWEEP_API_TOKEN"] = token
        self.log = open(Path(output_root).parent / f"service-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cvsweep", "serve", "--port", str(self.port), "--output-root", str(output_root),
             *options], env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, Path(self.log.name).read_text()[-3000:]
            try:
                if self.session.get(self.base_url + "/health", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the service did not start: {Path(self.log.name).read_text()[-3000:]}")

    def get(self, path: str, **kwargs):
        return self.session.get(self.base_url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs):
        return self.session.post(self.base_url + path, timeout=kwargs.pop("timeout", 120), **kwargs)

    def start_sweep(self, *overrides: str) -> str:
        response = self.post("/sweeps", json={"overrides": list(overrides)})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def wait_for(self, sweep_id: str, statuses=("finished", "failed", "cancelled"), timeout: float = 300) -> dict:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.get(f"/sweeps/{sweep_id}").json()
            if view["status"] in statuses:
                return view
            time.sleep(0.3)
        raise TimeoutError(f"sweep {sweep_id} still {view['status']} after {timeout} s")

    def close(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()

    def kill_sweeps(self) -> None:
        """Sweeps outlive their server (by design): a test's are killed when it ends."""
        import signal

        for state in self.output_root.glob("sweeps/*/service_state.json"):
            pid = json.loads(state.read_text()).get("supervisor_pid")
            try:
                os.killpg(pid, signal.SIGKILL)  # the supervisor leads its own session and group
            except (OSError, TypeError):
                pass


class ServiceApp:
    """The service as ``python -m cvsweep serve OPTIONS`` builds it (its settings parsed and checked,
    create_app's guard, routes and request checks, its start-up and shut-down), answering through
    Starlette's TestClient in this process: for the rules decided before any sweep starts. The
    same get/post/session/base_url as ServiceProcess; ``token`` as CVSWEEP_API_TOKEN would give it."""

    def __init__(self, output_root: Path, *options: str, token: str | None = None):
        from fastapi.testclient import TestClient

        from cvsweep.service.app import create_app
        from cvsweep.service.settings import TOKEN_VARIABLE, parse

        self.output_root, self.token = Path(output_root), token
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv(TOKEN_VARIABLE, raising=False)
            if token is not None:
                patch.setenv(TOKEN_VARIABLE, token)
            settings = parse(["--output-root", str(output_root), *options])
        self.base_url = f"http://127.0.0.1:{settings.port}"
        self.session = TestClient(create_app(settings), base_url=self.base_url)
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.__enter__()  # the app's start-up: its monitor thread

    def anonymous(self):
        """Another client of the same app, with no token and no cookie."""
        from fastapi.testclient import TestClient

        return TestClient(self.session.app, base_url=self.base_url)

    def get(self, path: str, **kwargs):
        kwargs.pop("timeout", None)
        return self.session.get(path, **kwargs)

    def post(self, path: str, **kwargs):
        kwargs.pop("timeout", None)
        if "data" in kwargs:  # raw text or bytes, as requests' data= sends them
            kwargs["content"] = kwargs.pop("data")
        return self.session.post(path, **kwargs)

    def close(self) -> None:
        self.session.__exit__(None, None, None)

    kill_sweeps = ServiceProcess.kill_sweeps


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """(output folder, finished process) of one real three-trial sweep, TINY_OVERRIDES and every
    other default (plots=all, each trial's model kept), that several test files read instead of
    running one each: under umask 027 with an API key in the environment (as on a user's machine),
    a probe (tests/trial_probe.py) recording each trial folder as its trial ends. Read-only: a test
    that changes its files works on a copy."""
    root = tmp_path_factory.mktemp("tiny-sweep")
    previous = os.umask(0o027)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)  # present; never to be written
            proc = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=3", f"output_root={root}",
                           "+hydra.callbacks.probe._target_=tests.trial_probe.TrialFolderAtJobEnd",
                           f"+hydra.callbacks.probe.record={root / 'at_job_end.jsonl'}")
    finally:
        os.umask(previous)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


# Two one-epoch accuracy trials of the tiny model: the first sweep of several tests, each of
# which goes on from a copy of it.
EPOCHS_1 = ["hydra.sweeper.n_trials=2", *TINY_OVERRIDES, "training.epochs=1", "plots=none"]


@pytest.fixture(scope="session")
def epochs_1_sweep(tmp_path_factory):
    """The output folder of one finished EPOCHS_1 sweep (its study in optuna.db, its sweep
    folder). Read-only: a test goes on from a copy (copy_of)."""
    root = tmp_path_factory.mktemp("epochs-1")
    first = run_cli("-m", *EPOCHS_1, f"output_root={root}")
    assert first.returncode == 0, first.stderr[-2000:]
    return root


def copy_of(folder: Path, to: Path) -> Path:
    """``to``, holding a copy of what ``folder`` holds."""
    shutil.copytree(folder, to, dirs_exist_ok=True)
    return to


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    emu = EmulatorProcess(workers=2, log_dir=tmp_path_factory.mktemp("emulator-logs"))
    yield emu
    emu.close()


@pytest.fixture
def runpod_env(emulator, monkeypatch, tmp_path_factory):
    """The client's environment for the emulator, with clean faults and settings, every worker up, and a
    remote job ledger of the test's own (cvsweep/execution/remote_jobs.py: otherwise a test would
    collect the finished job of an earlier test's trial with the same config)."""
    emulator.wait_for_workers()
    emulator.reset()
    cache = tmp_path_factory.mktemp("cache")
    remembered = Path(os.environ["CVSWEEP_CACHE_DIR"]) / SOURCE_IDENTITIES
    if remembered.exists():  # the session's digits identity: no sweep of the test imports scikit-learn for it
        shutil.copy(remembered, cache / SOURCE_IDENTITIES)
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(cache))
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "local-endpoint")
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", emulator.base_url)
    return emulator


BARE_ENDPOINT_ID = "bare-endpoint"


@pytest.fixture(scope="session")
def bare_endpoint(tmp_path_factory):
    """An emulated endpoint with no worker up (as one scaled to zero) that serves only
    BARE_ENDPOINT_ID: quick to start, for the checks before a sweep's first trial."""
    emu = EmulatorProcess(0, tmp_path_factory.mktemp("bare-endpoint-logs"), "--endpoint-id", BARE_ENDPOINT_ID)
    yield emu
    emu.close()
