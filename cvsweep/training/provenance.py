"""Where a run executed and on what: host, device and library versions, for every result.
Each is looked up once per process (none changes while it runs) and handed out as a copy;
only the numerics a run sets for itself (precision policy, TF32) are read at each call."""

from __future__ import annotations

import copy
import functools
import platform
import socket
import sys
from importlib import metadata

# The libraries whose versions can change a run's numbers, plus cvsweep itself.
VERSIONED_PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "scikit-learn", "cvsweep")


def versions() -> dict:
    """The versions a result records: Python and the installed packages of ``VERSIONED_PACKAGES``.

    Returns:
        Package name to version; packages not installed are left out.
    """
    return dict(_versions())


def device() -> dict:
    """The device TensorFlow trains on, every GPU it sees, and this run's process-wide numerics.

    Returns:
        ``type``, ``name``, ``count`` and ``gpus`` (name, compute capability), the Keras
        ``precision`` policy, and ``tf32``: whether TF32 is on (None without a GPU: TF32 is a GPU
        format).
    """
    import keras
    import tensorflow as tf

    found = copy.deepcopy(_device())
    found["tf32"] = tf.config.experimental.tensor_float_32_execution_enabled() if found["gpus"] else None
    found["precision"] = keras.mixed_precision.global_policy().name
    return found


def gpus() -> list[dict]:
    """The GPUs TensorFlow sees, the one it trains on first.

    Returns:
        ``[{"name", "compute_capability"}]``; empty without a GPU.
    """
    return copy.deepcopy(_device()["gpus"])


@functools.cache
def cpu_flags() -> frozenset | None:
    """The CPU's feature flags (avx512_bf16, amx_bf16, ...).

    Returns:
        The flags, or None where /proc/cpuinfo cannot tell.
    """
    for line in _cpuinfo():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return None


def host() -> dict:
    """The machine a result was produced on.

    Returns:
        ``hostname``, ``platform`` and ``python``.
    """
    return dict(_host())


@functools.cache
def _versions() -> dict:
    found = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def _device() -> dict:
    """The accelerator TensorFlow trains on (a GPU if it sees one), else the CPU."""
    import tensorflow as tf

    found = [_gpu(tf, gpu) for gpu in tf.config.list_physical_devices("GPU")]
    if found:
        return {"type": "GPU", "name": found[0]["name"], "count": len(found), "gpus": found}
    return {"type": "CPU", "name": _cpu_name(), "count": 1, "gpus": []}


def _gpu(tf, gpu) -> dict:
    details = tf.config.experimental.get_device_details(gpu)
    capability = details.get("compute_capability")  # (major, minor), as NVIDIA writes it: "8.0"
    return {"name": details.get("device_name", gpu.name),
            "compute_capability": ".".join(map(str, capability)) if capability else None}


@functools.cache
def _host() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0]}


def _cpu_name() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpuinfo() -> list[str]:
    """The first processor's lines of /proc/cpuinfo (Linux); none elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            text = info.read()
    except OSError:
        return []
    return text.split("\n\n", 1)[0].splitlines()
