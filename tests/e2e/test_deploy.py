"""``cvsweep deploy``: the dry run, and the endpoint update over real HTTP against the
emulator's REST API v2 routes (GET and PATCH /v2/serverless/{id}, GET .../releases; there is no Docker engine here: the docker steps are run by a stand-in
``docker`` on PATH that logs its arguments and runs the smoke test's command in this checkout).
The command runs in this process (the deploy fixture: main(), as ``cvsweep`` calls it), but for
one run in a fresh interpreter (deploy_cli), where its exit status and one-line refusal are
what a user meets."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import BARE_ENDPOINT_ID, REPO, SENTINEL_API_KEY, TINY_RUN, EmulatorProcess

from cvsweep.cli.main import main
from cvsweep.config.schema import run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.execution.payload import make_input
from cvsweep.execution.env_file import VARIABLES

# Runs in place of docker: logs its arguments; `run` runs the command after the image here.
DOCKER_STAND_IN = """#!{python}
import os, subprocess, sys
with open(os.environ["DOCKER_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "run":
    args = sys.argv[2:]
    while args[0].startswith("--"):
        args = args[2:] if args[0] == "--gpus" else args[1:]
    command = args[1:]
    command[0] = sys.executable if command[0] == "python" else command[0]
    sys.exit(subprocess.run(command).returncode)
"""


@pytest.fixture(autouse=True)
def working_folder(tmp_path, monkeypatch):
    """Each deploy runs in a folder of its own: no .env of the developer's is read."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)


def deploy_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m cvsweep deploy ARGS`` in a fresh interpreter: the command as a user runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    return subprocess.run([sys.executable, "-m", "cvsweep", "deploy", *args], capture_output=True, text=True,
                          timeout=300, env={**base, "PYTHONUNBUFFERED": "1", **(env or {})})


@pytest.fixture
def deploy(capsys, monkeypatch):
    """``cvsweep deploy ARGS`` in this process (main(), as the command calls it), in the environment
    deploy_cli gives its process: what it prints, and its exit status."""

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as patch:
            for name in [*(k for k in os.environ if k.startswith("RUNPOD_")), *VARIABLES]:
                patch.delenv(name, raising=False)  # ./.env's values, set by the command, go too
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            capsys.readouterr()
            status = main(["deploy", *args])
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["cvsweep", "deploy", *args], status, out, err)

    return run


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A committed checkout holding what the image is built from (the real files)."""
    repo = tmp_path / "checkout"
    for name in ("remote/Dockerfile", "remote/Dockerfile.dockerignore", "remote/requirements.lock",
                 "remote/test_input.json", "remote/handler.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    (repo / "cvsweep").mkdir()
    (repo / "cvsweep" / "__init__.py").write_text("")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "image files")
    return repo


def expected_tag(repo: Path) -> str:
    lock = hashlib.sha256((repo / "remote/requirements.lock").read_bytes()).hexdigest()[:8]
    return f"{git(repo, 'rev-parse', '--short=12', 'HEAD')}-{lock}"


@pytest.fixture
def docker_stand_in(tmp_path) -> dict:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "docker").write_text(DOCKER_STAND_IN.format(python=sys.executable))
    (folder / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "DOCKER_LOG": str(log)}


def rest_url(emulator) -> str:
    """The emulator's REST API v2 (RunPod's is https://api.runpod.io/v2)."""
    return emulator.base_url.rsplit("/v2", 1)[0] + "/v2"


def served_image(emulator, endpoint_id: str = BARE_ENDPOINT_ID) -> str:
    """The image the endpoint names, as RunPod's REST API v2 says (GET /v2/serverless/{id})."""
    answer = requests.get(f"{rest_url(emulator)}/serverless/{endpoint_id}", timeout=10,
                          headers={"Authorization": f"Bearer {SENTINEL_API_KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["image"]


def test_the_dry_run_prints_every_step_and_runs_and_changes_nothing(deploy, checkout, docker_stand_in, bare_endpoint):
    image = f"registry.example/me/cvsweep-worker:{expected_tag(checkout)}"
    proc = deploy("--dry-run", "--source", str(checkout), "--registry", "registry.example/me/",
                  "--endpoint-id", BARE_ENDPOINT_ID, "--rest-url", rest_url(bare_endpoint),
                  env={**docker_stand_in, "RUNPOD_API_KEY": SENTINEL_API_KEY})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"image: {image}  (from {checkout})"
    assert lines[1] == f"build: docker build --platform linux/amd64 -f remote/Dockerfile --build-arg " \
                       f"CVSWEEP_IMAGE={image} --build-arg CVSWEEP_IMAGE_COMMIT={git(checkout, 'rev-parse', 'HEAD')} " \
                       f"-t {image} ."
    assert lines[2] == f"smoke test: docker run --rm {image} python -u remote/handler.py --smoke-test " \
                       "remote/test_input.json"
    assert lines[3] == f"push: docker push {image}"
    endpoint = f"{rest_url(bare_endpoint)}/serverless/{BARE_ENDPOINT_ID}"
    assert lines[4] == f"update: GET {endpoint}  (Authorization: Bearer ***)"
    assert lines[5] == f'update: PATCH {endpoint}  {{"image": "{image}"}}  (Authorization: Bearer ***)'
    assert lines[6] == f"rollout: GET {endpoint}/releases until rollout.inProgress is false, at most 600 s  " \
                       "(Authorization: Bearer ***)"
    assert lines[7] == "dry run: nothing was built, run, pushed or changed"
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr
    assert not Path(docker_stand_in["DOCKER_LOG"]).exists()  # docker never called
    assert served_image(bare_endpoint) != image  # no REST request changed anything


@pytest.mark.slow
def test_a_deploy_runs_each_step_and_points_the_endpoints_template_at_the_new_image(deploy, docker_stand_in,
                                                                                     bare_endpoint, tmp_path):
    """Every step for real but docker's (the stand-in runs the smoke test's command in this checkout: the real
    handler trains test_input.json); the update over HTTP to the emulator's REST routes."""
    proc = deploy("--registry", "registry.example/me", "--endpoint-id", BARE_ENDPOINT_ID, "--allow-dirty",
                  "--rest-url", rest_url(bare_endpoint), "--gpus", "all",
                  env={**docker_stand_in, "RUNPOD_API_KEY": SENTINEL_API_KEY, "RUNPOD_LOG_LEVEL": "ERROR"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    image = proc.stdout.splitlines()[-1].removeprefix("deployed: ")
    assert image.startswith("registry.example/me/cvsweep-worker:")
    calls = Path(docker_stand_in["DOCKER_LOG"]).read_text().splitlines()
    assert [call.split()[0] for call in calls] == ["build", "run", "push"]
    assert calls[1].startswith(f"run --rm --gpus all {image} python -u remote/handler.py --smoke-test")
    assert "smoke test: trained, fingerprint echoed" in proc.stdout
    assert served_image(bare_endpoint) == image
    assert f"update: endpoint {BARE_ENDPOINT_ID} now names {image}" in proc.stdout
    assert f"serves {image}: 0 of 0 workers on it" in proc.stdout  # no worker up: nothing left to roll
    assert SENTINEL_API_KEY not in proc.stdout + proc.stderr


def test_the_update_alone_makes_a_release_and_follows_its_rollout_over_http(deploy, checkout, bare_endpoint):
    before = served_image(bare_endpoint)
    proc = deploy("--skip-build", "--skip-smoke-test", "--skip-push", "--source", str(checkout),
                  "--rest-url", rest_url(bare_endpoint),
                  env={"RUNPOD_API_KEY": SENTINEL_API_KEY, "RUNPOD_ENDPOINT_ID": BARE_ENDPOINT_ID, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    image = f"cvsweep-worker:{expected_tag(checkout)}"
    assert served_image(bare_endpoint) == image != before
    assert f"now names {image} (was {before})" in proc.stdout
    releases = requests.get(f"{rest_url(bare_endpoint)}/serverless/{BARE_ENDPOINT_ID}/releases", timeout=10,
                            headers={"Authorization": f"Bearer {SENTINEL_API_KEY}"}).json()
    newest = releases["releases"][0]
    assert {"field": "template.imageName", "old": before, "new": image} in newest["diff"]
    assert f"rollout: release v{newest['version']} serves {image}" in proc.stdout
    assert releases["rollout"]["inProgress"] is False


ROLLING_ENDPOINT_ID = "rolling-endpoint"


@pytest.fixture(scope="module")
def rolling_endpoint(tmp_path_factory):
    """An emulated endpoint with one worker up: a release has a worker to replace."""
    emu = EmulatorProcess(1, tmp_path_factory.mktemp("rolling-endpoint-logs"), "--endpoint-id", ROLLING_ENDPOINT_ID)
    yield emu
    emu.close()


def update_only(deploy, checkout, emulator, *args: str):
    return deploy("--skip-build", "--skip-smoke-test", "--skip-push", "--source", str(checkout), "--allow-dirty",
                  "--rest-url", rest_url(emulator), "--endpoint-id", ROLLING_ENDPOINT_ID, *args,
                  env={"RUNPOD_API_KEY": SENTINEL_API_KEY})


@pytest.mark.slow
def test_a_rollout_that_does_not_finish_is_reported_in_one_line(deploy, checkout, rolling_endpoint):
    rolling_endpoint.wait_for_workers()
    rolling_endpoint.admin("faults", {"stuck_rollouts": 1})  # the worker is never replaced
    proc = update_only(deploy, checkout, rolling_endpoint, "--rollout-timeout", "0.5", "--image", "stuck")
    assert proc.returncode == 1
    assert f"now names stuck:{expected_tag(checkout)}" in proc.stdout  # the release was made
    (line,) = proc.stderr.strip().splitlines()
    assert f"of stuck:{expected_tag(checkout)} not complete after 0.5 s (0 of 1 workers on it;" in line
    assert "deploy with a longer --rollout-timeout" in line


@pytest.mark.slow
def test_after_the_rollout_the_worker_runs_the_new_image_and_its_results_say_so(deploy, checkout, rolling_endpoint):
    """The worker restarted by the release reads the image from its environment (as a built image's
    CVSWEEP_IMAGE) and records it in its result's executed_on."""
    rolling_endpoint.reset_faults()
    proc = update_only(deploy, checkout, rolling_endpoint, "--rollout-timeout", "240")
    assert proc.returncode == 0, proc.stderr
    image = proc.stdout.splitlines()[-1].removeprefix("deployed: ")
    assert f"serves {image}: 1 of 1 workers on it" in proc.stdout
    headers = {"Authorization": f"Bearer {SENTINEL_API_KEY}"}
    job_input = make_input(run_config_of(load_run_config(copy.deepcopy(TINY_RUN))))
    job = requests.post(f"{rolling_endpoint.base_url}/{ROLLING_ENDPOINT_ID}/run", json={"input": job_input},
                        headers=headers, timeout=30).json()
    deadline = time.monotonic() + 240
    while (status := requests.get(f"{rolling_endpoint.base_url}/{ROLLING_ENDPOINT_ID}/status/{job['id']}",
                                  headers=headers, timeout=30).json())["status"] not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "COMPLETED", status
    assert status["output"]["executed_on"]["image"] == image


@pytest.mark.parametrize("case", ["unknown endpoint", "refused key", "v1 url",
                                  pytest.param("unreachable", marks=pytest.mark.slow)])  # 3 retries with backoff
def test_a_failed_update_says_what_to_fix_and_never_the_key(deploy, case, checkout, bare_endpoint):
    key, endpoint, url = SENTINEL_API_KEY, BARE_ENDPOINT_ID, rest_url(bare_endpoint)
    if case == "unknown endpoint":
        endpoint = "no-such-endpoint"
    elif case == "refused key":
        key = "sk-wrong-key-5d1e"
    elif case == "v1 url":
        url = url.removesuffix("/v2") + "/v1"
    else:
        url = "http://127.0.0.1:9/v2"  # the discard port: nothing listens
    proc = deploy("--skip-build", "--skip-smoke-test", "--skip-push", "--source", str(checkout),
                  "--endpoint-id", endpoint, "--rest-url", url, env={"RUNPOD_API_KEY": key})
    assert proc.returncode == (2 if case == "v1 url" else 1) and proc.stdout == ""
    expected = {  # RunPod's RFC 9457 problem: its title and detail in the line
        "unknown endpoint": f"--endpoint-id no-such-endpoint (or RUNPOD_ENDPOINT_ID): no such endpoint for this key: "
                            f"not found at {url}/serverless/no-such-endpoint (HTTP 404: Not Found: ",
        "refused key": f"RUNPOD_API_KEY: RunPod refused the key (HTTP 401 for GET {url}/serverless/{endpoint}: "
                       "Unauthorized",
        "v1 url": f"--rest-url {url}: RunPod's REST API v1 is retired; use v2, https://api.runpod.io/v2",
        "unreachable": f"--rest-url {url}: cannot reach RunPod's REST API: ConnectionError",
    }[case]
    assert expected in proc.stderr
    assert key not in proc.stderr


def test_settings_are_checked_before_any_step(deploy, checkout, docker_stand_in):
    proc = deploy_cli("--source", str(checkout), env={**docker_stand_in, "RUNPOD_API_KEY": SENTINEL_API_KEY})
    assert proc.returncode == 2
    assert "--registry is not set: RunPod pulls cvsweep-worker from a registry" in proc.stderr
    assert "--endpoint-id is not set: pass it, set RUNPOD_ENDPOINT_ID (environment or .env), or --skip-update" \
        in proc.stderr
    proc = deploy("--source", str(checkout), "--registry", "r.example/me", "--endpoint-id", "e",
                  env={**docker_stand_in})
    assert proc.returncode == 2 and "RUNPOD_API_KEY is not set (environment or .env)" in proc.stderr
    proc = deploy("--source", str(checkout), "--registry", "r.example/me", "--endpoint-id", "../../steal/x?",
                  "--rollout-timeout", "-1", env={**docker_stand_in, "RUNPOD_API_KEY": SENTINEL_API_KEY})
    assert proc.returncode == 2 and "--endpoint-id '../../steal/x?' (or RUNPOD_ENDPOINT_ID): allowed is" in proc.stderr
    assert "--rollout-timeout -1: allowed is 0 (do not wait) to 86400 seconds" in proc.stderr
    git_only = checkout.parent / "git-only"  # a PATH with git and no docker
    git_only.mkdir()
    (git_only / "git").symlink_to(shutil.which("git"))
    proc = deploy("--source", str(checkout), "--skip-update", "--registry", "r.example/me",
                  env={"PATH": str(git_only)})
    assert proc.returncode == 2 and "docker is not on PATH" in proc.stderr
    assert not Path(docker_stand_in["DOCKER_LOG"]).exists()


def test_a_tree_whose_image_files_differ_from_the_commit_is_refused_unless_allowed(deploy, checkout):
    (checkout / "cvsweep" / "new.py").write_text("x = 1\n")
    (checkout / "notes.txt").write_text("not in the image\n")  # outside the image: does not count
    args = ("--dry-run", "--skip-push", "--skip-update", "--source", str(checkout))
    proc = deploy(*args)
    assert proc.returncode == 2
    assert f"the image's files differ from commit {git(checkout, 'rev-parse', '--short=12', 'HEAD')} " \
           "(cvsweep/new.py): commit them, or pass --allow-dirty" in proc.stderr
    proc = deploy(*args, "--allow-dirty")
    assert proc.returncode == 0 and f"cvsweep-worker:{expected_tag(checkout)}-dirty-" in proc.stdout


def test_the_smoke_test_fails_an_image_that_does_not_train_the_input(tmp_path, capsys, monkeypatch):
    """remote/handler.py --smoke-test, the deploy's check inside the image: a refused input (here a changed
    fingerprint) is a non-zero exit and a verdict that says why. Its smoke_test() in this process: the
    status it returns is the one its __main__ exits with (the refusal comes before any training; a
    smoke test's run as a process is the deploy test's)."""
    job = json.loads((REPO / "remote" / "test_input.json").read_text())
    job["input"]["fingerprint"] = "0" * 64
    (tmp_path / "job.json").write_text(json.dumps(job))
    monkeypatch.syspath_prepend(str(REPO / "remote"))
    monkeypatch.delenv("RUNPOD_LOG_LEVEL", raising=False)  # the module's default for its process, not for later tests
    import handler

    capsys.readouterr()
    status = handler.smoke_test(str(tmp_path / "job.json"))
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 1 and verdict["ok"] is False and verdict["status"] is None
    assert json.loads(verdict["error"])["code"] == "fingerprint_mismatch"
