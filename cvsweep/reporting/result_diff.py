"""How two trial results differ, most telling cause first (``cvsweep compare``,
cvsweep/cli/compare.py):

1. config: any differing setting means a different run (the fingerprints differ too);
2. data: another source file;
3. versions: another library version can change low-order bits, or more;
4. device: CPU vs GPU, or another GPU (other kernels), TF32 on or off, the precision policy
   (executed_on.device) change low-order bits, or more.
Then the metrics: identical, or where the per-epoch history first diverges.
"""

from __future__ import annotations

from typing import Any

# Timings vary from run to run on any machine, so they are never compared. One rule instead
# of a list, so a timing added later is covered: any key, at any depth, named like a
# duration (train_seconds, evaluate_seconds, latency_ms, round_trip_s, ...). Memory peaks
# (peak_memory_mb: what else the process held) vary alike and are measured alike: "_mb".
TIMING_SUFFIXES = ("seconds", "_s", "_ms", "_mb")
# The parts of a result that must be bit-identical for the metrics to be called identical.
COMPARED = ("metrics", "health", "diagnostics")


def is_timing(key: str) -> bool:
    """Whether ``key`` names a timing or a memory peak (never compared).

    Args:
        key: A result's key, at any depth.

    Returns:
        True when it ends like a duration or a memory figure (TIMING_SUFFIXES).
    """
    return str(key).endswith(TIMING_SUFFIXES)


def without_timings(data: Any) -> Any:
    """``data`` with every timing key dropped, at any depth (lists included).

    Args:
        data: A result or any part of it.

    Returns:
        A copy without timing keys.
    """
    if isinstance(data, dict):
        return {key: without_timings(value) for key, value in data.items() if not is_timing(key)}
    if isinstance(data, list):
        return [without_timings(value) for value in data]
    return data


def _flat(data: Any, prefix: str = "") -> dict:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def _diff(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    fa, fb = _flat(a or {}), _flat(b or {})
    return [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]


def explain(a: dict, b: dict) -> tuple[list[str], bool]:
    """Explain how one result differs from another, most telling cause first.

    Args:
        a: The first result.json's content.
        b: The second's.

    Returns:
        The lines that explain, and whether their metrics are bit-identical (timings aside).
    """
    lines = []
    sections = [
        ("config", a.get("config"), b.get("config"), "a different run: compare these settings first"),
        ("data", a.get("data"), b.get("data"), "different data or splits"),
        ("versions", a.get("versions"), b.get("versions"), "other library versions can change results"),
        ("device", a.get("executed_on", {}).get("device"), b.get("executed_on", {}).get("device"),
         "another device or its numerics: CPU vs GPU, TF32, the precision policy change low-order bits, or more"),
    ]
    for name, left, right, meaning in sections:
        differences = _diff(left, right)
        if differences:
            lines.append(f"{name} differs ({meaning}):")
            lines += [f"  {key}: {x!r} -> {y!r}" for key, x, y in differences]
        else:
            lines.append(f"{name}: same")
    a_parts = {part: without_timings(a.get(part)) for part in COMPARED}
    b_parts = {part: without_timings(b.get(part)) for part in COMPARED}
    if a_parts == b_parts:
        lines.append("metrics: bit-identical (every epoch of the history, every final metric, health and "
                     "diagnostics; timings aside)")
        return lines, True
    lines.append("metrics differ:")
    ma, mb = a_parts["metrics"] or {}, b_parts["metrics"] or {}
    history_a, history_b = ma.pop("history", {}), mb.pop("history", {})
    for key, x, y in _diff(ma, mb):
        lines.append(f"  {key}: {x!r} -> {y!r}")
    for key in sorted(history_a.keys() | history_b.keys()):
        xs, ys = history_a.get(key, []), history_b.get(key, [])
        first = next((i for i, (x, y) in enumerate(zip(xs, ys)) if x != y), None)
        if first is not None:
            lines.append(f"  history.{key} first differs in epoch {first + 1}: {xs[first]!r} -> {ys[first]!r}")
        elif len(xs) != len(ys):
            lines.append(f"  history.{key}: {len(xs)} epochs -> {len(ys)} epochs")
    for key, x, y in _diff(a_parts["health"], b_parts["health"]):
        lines.append(f"  health.{key}: {x!r} -> {y!r}")
    for key, _, _ in _diff(a_parts["diagnostics"], b_parts["diagnostics"]):
        lines.append(f"  diagnostics.{key} differs")  # long arrays: the place, not the values
    return lines, False
