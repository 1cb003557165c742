"""Config fingerprints: the sha256 of a run config's canonical JSON.

Canonical means sorted keys, no whitespace, UTF-8, and no NaN or infinity, so the same
settings give the same fingerprint whatever their key order, YAML or JSON spelling, or
the machine that computes it. Client and worker both call ``fingerprint``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping


def canonical_json(data: Mapping[str, Any]) -> str:
    """The canonical JSON of ``data``: sorted keys, no whitespace, no NaN or infinity.

    Args:
        data: A plain mapping.

    Returns:
        The JSON text (not ASCII-escaped).

    Raises:
        ValueError: When ``data`` holds NaN or infinity.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(run_config: Mapping[str, Any]) -> str:
    """sha256 (hex) of a validated, plain run config (see ``schema.run_config_of``).

    Args:
        run_config: The plain run config.

    Returns:
        The hex digest of its canonical JSON, encoded as UTF-8.
    """
    return hashlib.sha256(canonical_json(run_config).encode("utf-8")).hexdigest()
