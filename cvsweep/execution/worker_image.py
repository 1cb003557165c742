"""The worker image's deployment (``cvsweep deploy``, cvsweep/cli/deploy.py): build it,
smoke-test it, push it, and point the RunPod endpoint's template at it.

The tag is ``<commit>-<lock>``: the checkout's commit and the sha256 of remote/requirements.lock,
so an image name says which code and which packages it holds (a tree whose image files differ
from the commit is refused unless --allow-dirty, which tags it ``-dirty-<time>``). The steps:
``docker build`` with remote/Dockerfile; one job of remote/test_input.json inside the image
(``remote/handler.py --smoke-test``: it must train and echo the input's fingerprint);
``docker push``; then RunPod's REST API (https://docs.runpod.io/api-reference):
``GET /endpoints/{endpointId}?includeTemplate=true`` for its ``templateId`` and ``PATCH /templates/{templateId}``
with ``{"imageName": ...}``, which RunPod rolls out to the endpoint's workers. The API key
(RUNPOD_API_KEY, also from ./.env) goes in a Bearer header and is never printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cvsweep.errors import CvsweepError, UserError
from cvsweep.execution.env_file import ENDPOINT_VARIABLE
from cvsweep.execution.redact import API_KEY_VARIABLE, scrub

REST_URL = "https://rest.runpod.io/v1"
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository this package runs from
DOCKERFILE = "remote/Dockerfile"
LOCK = "remote/requirements.lock"
TEST_INPUT = "remote/test_input.json"


class DeployError(CvsweepError):
    """A step failed: the message says what to fix (exit status 1)."""


class SettingsError(DeployError, UserError):
    """A setting is missing or wrong, found before any step runs (exit status 2)."""


@dataclass
class Plan:
    """What a deployment builds and where: the checkout, the image's name and tag, the endpoint, the REST API."""

    source: Path
    image: str  # registry/name:tag
    endpoint_id: str | None
    rest_url: str
    commit: str = ""  # the checkout's full commit, built into the image beside its name


def image_files(source: Path) -> list[str]:
    """What the image is built from: the Dockerfile and what its .dockerignore lets in.

    The ignore file's ``!`` lines, so the dirty check and the build context are one list.

    Args:
        source: The checkout.

    Returns:
        Paths relative to the checkout.
    """
    ignore = (source / DOCKERFILE).with_name("Dockerfile.dockerignore")
    allowed = [line[1:].strip() for line in ignore.read_text().splitlines() if line.startswith("!")]
    return [DOCKERFILE, str(ignore.relative_to(source)), *allowed]


def _git(source: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise SettingsError(f"--source {source}: git {' '.join(args)} failed (a git checkout is needed for the image "
                          f"tag): {getattr(err, 'stderr', '') or err}".strip()) from None
    return done.stdout


def image_tag(source: Path, allow_dirty: bool) -> str:
    """``<commit>-<lock sha256>``, 12 and 8 hex digits; ``-dirty-<UTC time>`` for a dirty tree.

    Args:
        source: The checkout.
        allow_dirty: Whether image files that differ from the commit are allowed.

    Returns:
        The tag.

    Raises:
        SettingsError: When the checkout lacks a file the image needs, git fails, or the image's
            files are not committed and ``allow_dirty`` is false.
    """
    for name in (DOCKERFILE, LOCK, TEST_INPUT):
        if not (source / name).is_file():
            raise SettingsError(f"--source {source}: no {name} (run from a cvsweep checkout, or pass --source)")
    commit = _git(source, "rev-parse", "--short=12", "HEAD").strip()
    lock = hashlib.sha256((source / LOCK).read_bytes()).hexdigest()[:8]
    changed = _git(source, "status", "--porcelain", "--", *image_files(source)).splitlines()
    if changed and not allow_dirty:
        listed = "; ".join(line[3:] for line in changed[:10]) + ("; ..." if len(changed) > 10 else "")
        raise SettingsError(f"the image's files differ from commit {commit} ({listed}): commit them, or pass "
                          "--allow-dirty (the tag then ends in -dirty-<time>)")
    return f"{commit}-{lock}" + (time.strftime("-dirty-%Y%m%d%H%M%S", time.gmtime()) if changed else "")


def docker_steps(plan: Plan, args) -> list[tuple[str, list[str]]]:
    """(what, command) for the docker steps not skipped, run in the source folder.

    Args:
        plan: The deployment.
        args: The parsed command line (its skips, platform and GPUs).

    Returns:
        The build, smoke test and push steps that are not skipped, in that order.
    """
    steps = []
    if not args.skip_build:
        steps.append(("build", ["docker", "build", "--platform", args.platform, "-f", DOCKERFILE,
                                "--build-arg", f"CVSWEEP_IMAGE={plan.image}",
                                "--build-arg", f"CVSWEEP_IMAGE_COMMIT={plan.commit}", "-t", plan.image, "."]))
    if not args.skip_smoke_test:
        gpus = ["--gpus", args.gpus] if args.gpus else []
        steps.append(("smoke test", ["docker", "run", "--rm", *gpus, plan.image, "python", "-u", "remote/handler.py",
                                     "--smoke-test", TEST_INPUT]))
    if not args.skip_push:
        steps.append(("push", ["docker", "push", plan.image]))
    return steps


def _session():
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    # Both requests are safe to repeat (a read; setting the same image name again).
    retry = Retry(total=3, backoff_factor=1, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET", "PATCH"), raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["Authorization"] = f"Bearer {os.environ.get(API_KEY_VARIABLE, '')}"
    return session


def _rest(session, method: str, url: str, what: str, plan: Plan, body: dict | None = None) -> dict:
    import requests

    try:
        response = session.request(method, url, json=body, timeout=30)
    except requests.RequestException as err:
        raise DeployError(scrub(f"--rest-url {plan.rest_url}: cannot reach RunPod's REST API: "
                                f"{type(err).__name__}: {err}")) from None
    if response.status_code in (401, 403):
        raise DeployError(f"{API_KEY_VARIABLE}: RunPod refused the key (HTTP {response.status_code} for {method} "
                          f"{url}); use a key with read and write access to this endpoint and its template")
    if response.status_code == 404:
        raise DeployError(f"{what}: not found at {url} (HTTP 404)")
    if not response.ok:
        raise DeployError(scrub(f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}"))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DeployError(f"{method} {url}: the answer is not a JSON object (is --rest-url RunPod's REST API?)")
    return answer


def point_endpoint(plan: Plan) -> tuple[str, str | None]:
    """Make the endpoint's template name ``plan.image``.

    Args:
        plan: The deployment.

    Returns:
        ``(template id, the image it named before)``.

    Raises:
        DeployError: When RunPod refuses the key, the endpoint or its template is not found or
            named, or the change does not take.
    """
    session = _session()
    endpoint_url = f"{plan.rest_url}/endpoints/{plan.endpoint_id}?includeTemplate=true"
    endpoint = _rest(session, "GET", endpoint_url, f"--endpoint-id {plan.endpoint_id} (or {ENDPOINT_VARIABLE}): "
                     "no such endpoint for this key", plan)
    template_id = endpoint.get("templateId")
    if not isinstance(template_id, str) or not template_id:
        raise DeployError(f"--endpoint-id {plan.endpoint_id}: RunPod's answer names no templateId; create the "
                          "endpoint from a template (RunPod console: Serverless > the endpoint > Manage > Edit) "
                          "or check --rest-url")
    template_url = f"{plan.rest_url}/templates/{template_id}"
    before = (endpoint.get("template") or {}).get("imageName")
    after = _rest(session, "PATCH", template_url, f"the endpoint's template {template_id}", plan,
                  {"imageName": plan.image})
    if after.get("imageName") != plan.image:
        raise DeployError(f"PATCH {template_url}: the template still names {after.get('imageName')!r}, "
                          f"not {plan.image!r}")
    return template_id, before


def _print_plan(plan: Plan, args, steps) -> None:
    key = "Bearer ***" if os.environ.get(API_KEY_VARIABLE) else f"Bearer <{API_KEY_VARIABLE} is not set>"
    print(f"image: {plan.image}  (from {plan.source})")
    for what, command in steps:
        print(f"{what}: {' '.join(_quoted(part) for part in command)}")
    if not args.skip_update:
        print(f"update: GET {plan.rest_url}/endpoints/{plan.endpoint_id}?includeTemplate=true  (Authorization: {key})")
        print(f"update: PATCH {plan.rest_url}/templates/<its templateId>  {json.dumps({'imageName': plan.image})}  "
              f"(Authorization: {key})")


def _quoted(part: str) -> str:
    return shlex.quote(part)


def _run_docker(what: str, command: list[str], source: Path) -> None:
    print(f"{what}: {' '.join(_quoted(part) for part in command)}", flush=True)
    if what != "smoke test":
        if subprocess.run(command, cwd=source).returncode != 0:
            raise DeployError(f"{what} failed (the command above); nothing later was run")
        return
    done = subprocess.run(command, cwd=source, stdout=subprocess.PIPE, text=True)
    lines = done.stdout.strip().splitlines()
    try:
        verdict = json.loads(lines[-1])
    except (IndexError, ValueError):
        verdict = None
    if done.returncode != 0 or not isinstance(verdict, dict) or not verdict.get("ok"):
        raise DeployError(f"smoke test: the image did not train {TEST_INPUT} (exit status {done.returncode}: "
                          f"{lines[-1][:500] if lines else 'no output'}); nothing was pushed")
    print(f"smoke test: trained, fingerprint echoed, on {verdict.get('device')}", flush=True)


def deploy(args) -> int:
    """Build, smoke-test and push the worker image, and point the endpoint at it.

    Every setting is checked before any step runs; a dry run only prints the steps.

    Args:
        args: The parsed command line.

    Returns:
        0.

    Raises:
        SettingsError: When a setting is missing or wrong.
        DeployError: When a step fails.
    """
    source = args.source.resolve()
    name = f"{args.registry.rstrip('/')}/{args.image}" if args.registry else args.image
    plan = Plan(source, f"{name}:{image_tag(source, args.allow_dirty)}", args.endpoint_id, args.rest_url.rstrip("/"),
                _git(source, "rev-parse", "HEAD").strip())
    problems = []
    if not args.skip_push and "/" not in name:
        problems.append(f"--registry is not set: RunPod pulls {name} from a registry (e.g. --registry docker.io/<user>)"
                        ", or --skip-push")
    if not args.skip_update and not plan.endpoint_id:
        problems.append(f"--endpoint-id is not set: pass it, set {ENDPOINT_VARIABLE} (environment or .env), "
                        "or --skip-update")
    if not args.skip_update and not args.dry_run and not os.environ.get(API_KEY_VARIABLE):
        problems.append(f"{API_KEY_VARIABLE} is not set (environment or .env): the endpoint update needs it")
    steps = docker_steps(plan, args)
    if steps and not args.dry_run and shutil.which("docker") is None:
        problems.append("docker is not on PATH: install Docker, or --skip-build --skip-smoke-test --skip-push")
    if problems:
        raise SettingsError("; ".join(problems))
    if args.dry_run:
        _print_plan(plan, args, steps)
        print("dry run: nothing was built, run, pushed or changed")
        return 0
    for what, command in steps:
        _run_docker(what, command, source)
    if not args.skip_update:
        template_id, before = point_endpoint(plan)
        print(f"update: endpoint {plan.endpoint_id}'s template {template_id} now names {plan.image} (was {before}); "
              "RunPod rolls its workers over to it")
    print(f"deployed: {plan.image}")
    return 0
