"""Secrets never leave this process in a message: the RunPod API key and the artifact store's
credentials, which are read from the environment at run time only."""

from __future__ import annotations

import os

API_KEY_VARIABLE = "RUNPOD_API_KEY"
STORE_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def scrub(text: str) -> str:
    """Hide the secrets in a text.

    Args:
        text: A message that may hold a secret.

    Returns:
        ``text`` with the value of every secret variable set here replaced by ***.
    """
    for name in (API_KEY_VARIABLE, *STORE_CREDENTIALS):
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text
