"""``cvsweep deploy``: build the worker image, smoke-test it, push it, point the RunPod
endpoint at it and follow the release's rollout (cvsweep/execution/worker_image.py says how).

    cvsweep deploy --registry docker.io/<user> --dry-run   # every step, nothing run
    cvsweep deploy --registry docker.io/<user>             # RUNPOD_API_KEY, RUNPOD_ENDPOINT_ID

Exit status 0 when deployed, 1 when a step failed, 2 for a setting missing or wrong (found
before any step runs).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cvsweep.execution.env_file import ENDPOINT_VARIABLE, REST_URL_VARIABLE, load_env_file
from cvsweep.execution.redact import scrub
from cvsweep.execution.worker_image import CHECKOUT, REST_URL, ROLLOUT_TIMEOUT_S, DeployError, deploy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep deploy``; the endpoint and the REST API default to the
    environment (and ./.env), read when it runs.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument("--registry", default=None, help="e.g. docker.io/<user> or ghcr.io/<org> (needed to push)")
    parser.add_argument("--image", default="cvsweep-worker", help="the image's name (default: cvsweep-worker)")
    parser.add_argument("--endpoint-id", default=None, help=f"the serverless endpoint (default: ${ENDPOINT_VARIABLE})")
    parser.add_argument("--rest-url", default=None,
                        help=f"RunPod's REST API v2 (default: ${REST_URL_VARIABLE} or {REST_URL})")
    parser.add_argument("--rollout-timeout", type=float, default=ROLLOUT_TIMEOUT_S, metavar="SECONDS",
                        help="wait at most this long for the endpoint's workers to run the new image "
                             f"(default: {ROLLOUT_TIMEOUT_S:g}; 0: do not wait)")
    parser.add_argument("--source", type=Path, default=CHECKOUT, help="the checkout to build (default: this one)")
    parser.add_argument("--platform", default="linux/amd64", help="docker build --platform (RunPod runs amd64)")
    parser.add_argument("--gpus", default=None, help="docker run --gpus for the smoke test (e.g. all; default: CPU)")
    parser.add_argument("--allow-dirty", action="store_true", help="build a tree whose image files are not committed")
    parser.add_argument("--dry-run", action="store_true", help="print every step; run and change nothing")
    for step in ("build", "smoke-test", "push", "update"):
        parser.add_argument(f"--skip-{step}", action="store_true", help=f"leave out the {step} step")


def run(args: argparse.Namespace) -> int:
    """Read ./.env, complete the defaults from the environment, deploy.

    Args:
        args: The parsed command line.

    Returns:
        0.

    Raises:
        SettingsError: For a setting missing or wrong (exit status 2).
        DeployError: When a step failed (exit status 1); its message holds no secret.
    """
    load_env_file()  # before the defaults are read from the environment
    args.endpoint_id = args.endpoint_id or os.environ.get(ENDPOINT_VARIABLE)
    args.rest_url = args.rest_url or os.environ.get(REST_URL_VARIABLE) or REST_URL
    try:
        return deploy(args)
    except DeployError as err:
        raise type(err)(scrub(str(err))) from None
