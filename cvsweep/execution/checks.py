"""Before a run or sweep with executor=runpod: the settings it needs, then the endpoint's own
answer (its health route, asked with the trials' client, key and retries), so that a wrong URL,
key or endpoint id, or an endpoint whose every worker fails, stops the sweep now instead of
failing each of its trials."""

from __future__ import annotations

import logging
import os

from cvsweep.config.schema import ConfigError
from cvsweep.config.validate import runpod_problems
from cvsweep.execution import model_transport
from cvsweep.execution.env_file import ENDPOINT_VARIABLE
from cvsweep.execution.redact import API_KEY_VARIABLE, scrub
from cvsweep.execution.runpod import RemoteError, RequestFailed, RunpodClient, Unreachable

log = logging.getLogger("cvsweep.runpod")

# The worker counts of RunPod's health answer ({"jobs": {...}, "workers": {...}}).
WORKER_STATES = ("idle", "initializing", "ready", "running", "throttled", "unhealthy")


def missing_settings(cfg) -> list[str]:
    """What executor=runpod lacks before it can send anything (checked before a sweep).

    Args:
        cfg: executor=runpod's settings.

    Returns:
        One message per problem, each naming the setting and the fix; empty when none.
    """
    problems = []
    if not os.environ.get(API_KEY_VARIABLE):
        problems.append(f"executor=runpod needs the environment variable {API_KEY_VARIABLE} (your RunPod API key)")
    if not cfg.endpoint_id:
        problems.append(
            f"executor.endpoint_id is not set: set the environment variable {ENDPOINT_VARIABLE} "
            "or executor.endpoint_id=<id>"
        )
    if not str(cfg.base_url).startswith(("http://", "https://")):
        problems.append(f"executor.base_url={cfg.base_url}: must start with http:// or https://")
    return problems + runpod_problems(cfg) + model_transport.client_problems(cfg)


def endpoint_health(cfg) -> dict:
    """The endpoint's answer to ``GET {base_url}/{endpoint_id}/health``, asked with the trials'
    client, key and retry policy.

    Args:
        cfg: executor=runpod's settings.

    Returns:
        The health answer (a JSON object).

    Raises:
        Unreachable: No answer at all.
        RequestFailed: An HTTP error the retries did not cure.
        RemoteError: An answer that is not a JSON object, or no API key.
    """
    client = RunpodClient(cfg)
    try:
        health = client.get("health", "health")
    except ValueError as err:  # a 200 whose body is not JSON: a proxy's page, another service
        raise RemoteError(f"the health answer is not JSON ({type(err).__name__})") from None
    if not isinstance(health, dict):
        raise RemoteError(f"the health answer is not a JSON object: {scrub(str(health))[:200]}")
    return health


def check_setup(executor) -> None:
    """Before a run or sweep: the settings executor=runpod needs, then the endpoint's health.

    Args:
        executor: executor=runpod's settings.

    Raises:
        ConfigError: A missing setting, or an endpoint that cannot run the trials (each
            message names the setting and the fix).
    """
    problems = missing_settings(executor)
    if problems:
        raise ConfigError(*problems)
    _check_endpoint(executor)


def _check_endpoint(executor) -> None:
    """Ask the endpoint's health route, with the trials' client, key and retries."""
    endpoint = f"executor.endpoint_id={executor.endpoint_id}"
    try:
        workers = _worker_counts(endpoint_health(executor))
    except Unreachable as err:
        raise ConfigError(scrub(f"executor.base_url={executor.base_url}: cannot reach the endpoint: {err}")) from None
    except RequestFailed as err:
        if err.status in (401, 403):
            raise ConfigError(f"{API_KEY_VARIABLE}: the endpoint refused the key (HTTP {err.status}); "
                              f"set {API_KEY_VARIABLE} to a RunPod API key with access to this endpoint") from None
        if err.status == 404:
            raise ConfigError(f"{endpoint}: no such endpoint at {executor.base_url} (HTTP 404); check "
                              f"executor.endpoint_id (or {ENDPOINT_VARIABLE}) and executor.base_url") from None
        raise ConfigError(scrub(f"{endpoint}: the endpoint's health check failed: {err}")) from None
    except RemoteError as err:
        raise ConfigError(scrub(f"{endpoint}: a malformed health answer from {executor.base_url}: {err}")) from None
    if workers is None:
        raise ConfigError(f"{endpoint}: a malformed health answer from {executor.base_url}: "
                          "no 'workers' object of counts (is executor.base_url RunPod's API?)")
    if workers["unhealthy"] and not any(workers[state] for state in WORKER_STATES if state != "unhealthy"):
        raise ConfigError(f"{endpoint}: every worker of the endpoint is unhealthy ({workers['unhealthy']}): "
                          "its image fails to start or to serve; see the workers' logs in the RunPod console")
    if not any(workers.values()):
        # Scaled to zero (normal) and max workers 0 (a mistake) look alike here: say it, don't refuse.
        log.warning("%s: no worker is up now; the first trial waits for a cold start (if the endpoint's max "
                    "workers is 0, its jobs wait in the queue until RunPod deletes them at executor.ttl_s)", endpoint)


def _worker_counts(health: dict) -> dict | None:
    """The health answer's worker counts by state (absent states count 0), or None when it has
    no ``workers`` object of non-negative whole numbers."""
    workers = health.get("workers")
    if not isinstance(workers, dict):
        return None
    counts = {state: workers.get(state, 0) for state in WORKER_STATES}
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        return None
    return counts
