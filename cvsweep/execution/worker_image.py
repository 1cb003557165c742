"""The worker image's deployment (``cvsweep deploy``, cvsweep/cli/deploy.py): build it,
smoke-test it, push it, and point the RunPod endpoint at it.

The tag is ``<commit>-<lock>``: the checkout's commit and the sha256 of remote/requirements.lock,
so an image name says which code and which packages it holds (a tree whose image files differ
from the commit is refused unless --allow-dirty, which tags it ``-dirty-<time>``); the build
passes the name and the full commit to remote/Dockerfile, whose workers record them in every
result (``executed_on.image``). The steps: ``docker build`` with remote/Dockerfile; one job of
remote/test_input.json inside the image (``remote/handler.py --smoke-test``: it must train and
echo the input's fingerprint); ``docker push``; then RunPod's REST API v2
(api-reference-v2/overview.mdx: base ``https://api.runpod.io/v2``; v1 is retired,
api-reference-v2/migrate-from-v1.mdx): ``GET /serverless/{id}`` for the image it serves,
``PATCH /serverless/{id}`` with ``{"image": ...}``, which creates a release that rolls out as
workers cycle, and ``GET /serverless/{id}/releases`` until its ``rollout.inProgress`` is false
(api-reference-v2/openapi.json, updateEndpoint and listEndpointReleases), or a timeout. Errors
are RFC 9457 problems (``title``, ``status``, ``detail``, ``errors``): shown with their detail.
The API key (RUNPOD_API_KEY, also from ./.env) goes in a Bearer header and is never printed.
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

from cvsweep.config.validate import ENDPOINT_ID  # the one form, also checked for executor.endpoint_id
from cvsweep.errors import CvsweepError, UserError
from cvsweep.execution.env_file import ENDPOINT_VARIABLE, REST_URL_VARIABLE
from cvsweep.execution.redact import API_KEY_VARIABLE, scrub

REST_URL = "https://api.runpod.io/v2"
ROLLOUT_TIMEOUT_S = 600.0
ROLLOUT_POLL_S = 2.0
# api-reference-v2/openapi.json: a release's diff names an image change "template.imageName".
IMAGE_FIELDS = ("template.imageName", "image")
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
    rollout_timeout_s: float = ROLLOUT_TIMEOUT_S  # 0: the rollout is not followed


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


def rest_session():
    """A session for RunPod's REST API: the key in a Bearer header, retries of safe requests.

    Returns:
        The requests session.
    """
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
    problem = _problem(response)
    if response.status_code in (401, 403):
        raise DeployError(scrub(f"{API_KEY_VARIABLE}: RunPod refused the key (HTTP {response.status_code} for {method} "
                                f"{url}{problem}); use a key with read and write access to this endpoint"))
    if response.status_code == 404:
        raise DeployError(scrub(f"{what}: not found at {url} (HTTP 404{problem})"))
    if not response.ok:
        raise DeployError(scrub(f"{method} {url}: HTTP {response.status_code}{problem or ': ' + response.text[:300]}"))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DeployError(f"{method} {url}: the answer is not a JSON object (is --rest-url RunPod's REST API v2?)")
    return answer


def _problem(response) -> str:
    """An RFC 9457 problem's words (api-reference-v2: ``title``, ``status``, ``detail``,
    optional ``errors``), as ``: <title>: <detail> (<errors>)``; empty for any other body."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or not any(key in body for key in ("title", "detail")):
        return ""
    words = ": ".join(str(body[key])[:200] for key in ("title", "detail") if body.get(key))
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        listed = "; ".join(_error_item(item) for item in errors[:5])
        words += f" ({listed[:300]})"
    return f": {words}" if words else ""


def _error_item(item) -> str:
    if isinstance(item, dict):
        where = item.get("field") or item.get("location") or item.get("path") or item.get("name")
        text = item.get("message") or item.get("detail") or json.dumps(item, sort_keys=True)
        return f"{where}: {text}" if where else str(text)
    return str(item)


@dataclass
class Rollout:
    """Where a release stands: RunPod's rollout summary after the image changed."""

    done: bool
    version: int | None  # our release's version; None when no release names the image
    on_latest: int
    total: int
    seconds: float


def point_endpoint(session, plan: Plan) -> str | None:
    """Make the endpoint name ``plan.image``: RunPod creates a release that rolls out as workers cycle.

    Args:
        session: The REST session (``rest_session``).
        plan: The deployment.

    Returns:
        The image it named before.

    Raises:
        DeployError: When RunPod refuses the key or the request, the endpoint is not found, or
            the change does not take.
    """
    endpoint_url = f"{plan.rest_url}/serverless/{plan.endpoint_id}"
    endpoint = _rest(session, "GET", endpoint_url, f"--endpoint-id {plan.endpoint_id} (or {ENDPOINT_VARIABLE}): "
                     "no such endpoint for this key", plan)
    before = endpoint.get("image")
    if "image" not in endpoint:
        raise DeployError(f"GET {endpoint_url}: the answer names no image (is --rest-url RunPod's REST API v2, "
                          f"{REST_URL}?)")
    after = _rest(session, "PATCH", endpoint_url, f"--endpoint-id {plan.endpoint_id}", plan, {"image": plan.image})
    if after.get("image") != plan.image:
        raise DeployError(f"PATCH {endpoint_url}: the endpoint still names {after.get('image')!r}, not {plan.image!r}")
    return before


def follow_rollout(session, plan: Plan) -> Rollout:
    """Poll the endpoint's releases until the release of ``plan.image`` has rolled out.

    Done when ``rollout.inProgress`` is false and ``endpointVersion`` has reached the release's
    version (rolling-releases.mdx: in-flight workers keep the previous version until replaced;
    an endpoint with no worker up has nothing left to roll).

    Args:
        session: The REST session (``rest_session``).
        plan: The deployment.

    Returns:
        The finished rollout.

    Raises:
        DeployError: When it is not done within ``plan.rollout_timeout_s``, or an answer is
            malformed.
    """
    url = f"{plan.rest_url}/serverless/{plan.endpoint_id}/releases"
    started = time.monotonic()
    while True:
        answer = _rest(session, "GET", url, f"--endpoint-id {plan.endpoint_id}: its releases", plan)
        rollout, releases = answer.get("rollout"), answer.get("releases")
        if not isinstance(rollout, dict) or not isinstance(releases, list):
            raise DeployError(f"GET {url}: the answer has no rollout and releases (is --rest-url RunPod's REST API v2?)")
        version = _release_of(releases, plan.image)
        latest = answer.get("endpointVersion")
        reached = version is None or (isinstance(latest, int) and latest >= version)
        state = Rollout(rollout.get("inProgress") is False and reached, version,
                        _count(rollout.get("workersOnLatest")), _count(rollout.get("workersTotal")),
                        time.monotonic() - started)
        if state.done:
            return state
        if state.seconds >= plan.rollout_timeout_s:
            release = f"release v{version}" if version is not None else "the release"
            raise DeployError(f"rollout: {release} of {plan.image} not complete after {plan.rollout_timeout_s:g} s "
                              f"({state.on_latest} of {state.total} workers on it; RunPod goes on replacing workers "
                              f"as they finish their jobs): follow GET {url}, or deploy with a longer "
                              "--rollout-timeout")
        time.sleep(min(ROLLOUT_POLL_S, max(0.0, plan.rollout_timeout_s - state.seconds)))


def _release_of(releases: list, image: str) -> int | None:
    """The version of the newest release whose diff sets the image to ``image``."""
    versions = [release.get("version") for release in releases if isinstance(release, dict)
                and any(isinstance(change, dict) and change.get("field") in IMAGE_FIELDS and change.get("new") == image
                        for change in release.get("diff") or [])]
    versions = [v for v in versions if isinstance(v, int) and not isinstance(v, bool)]
    return max(versions) if versions else None


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _print_plan(plan: Plan, args, steps) -> None:
    key = "Bearer ***" if os.environ.get(API_KEY_VARIABLE) else f"Bearer <{API_KEY_VARIABLE} is not set>"
    print(f"image: {plan.image}  (from {plan.source})")
    for what, command in steps:
        print(f"{what}: {' '.join(_quoted(part) for part in command)}")
    if not args.skip_update:
        endpoint = f"{plan.rest_url}/serverless/{plan.endpoint_id}"
        print(f"update: GET {endpoint}  (Authorization: {key})")
        print(f"update: PATCH {endpoint}  {json.dumps({'image': plan.image})}  (Authorization: {key})")
        if plan.rollout_timeout_s > 0:
            print(f"rollout: GET {endpoint}/releases until rollout.inProgress is false, at most "
                  f"{plan.rollout_timeout_s:g} s  (Authorization: {key})")


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
                _git(source, "rev-parse", "HEAD").strip(), args.rollout_timeout)
    problems = []
    if not args.skip_update and plan.rest_url.endswith("/v1"):
        problems.append(f"--rest-url {plan.rest_url}: RunPod's REST API v1 is retired; use v2, "
                        f"{REST_URL} (the default; check {REST_URL_VARIABLE} in the environment or .env)")
    if not 0 <= plan.rollout_timeout_s <= 86400:
        problems.append(f"--rollout-timeout {plan.rollout_timeout_s:g}: allowed is 0 (do not wait) to 86400 seconds")
    if not args.skip_push and "/" not in name:
        problems.append(f"--registry is not set: RunPod pulls {name} from a registry (e.g. --registry docker.io/<user>)"
                        ", or --skip-push")
    if not args.skip_update and plan.endpoint_id and not ENDPOINT_ID.fullmatch(plan.endpoint_id):
        problems.append(f"--endpoint-id {plan.endpoint_id!r} (or {ENDPOINT_VARIABLE}): allowed is RunPod's endpoint id "
                        "form, letters, digits, - and _ (at most 64), as the RunPod console shows it")
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
        session = rest_session()
        before = point_endpoint(session, plan)
        print(f"update: endpoint {plan.endpoint_id} now names {plan.image} (was {before}); RunPod rolls its workers "
              "over to it as they finish their jobs", flush=True)
        if plan.rollout_timeout_s <= 0:
            print("rollout: not followed (--rollout-timeout 0)")
        else:
            rollout = follow_rollout(session, plan)
            release = f"release v{rollout.version}" if rollout.version is not None else "the endpoint"
            print(f"rollout: {release} serves {plan.image}: {rollout.on_latest} of {rollout.total} workers on it "
                  f"after {rollout.seconds:.0f} s")
    print(f"deployed: {plan.image}")
    return 0
