"""Where a run executed and on what: host, device and library versions, for every result.
Each is looked up once per process (none changes while it runs) and handed out as a copy."""

from __future__ import annotations

import functools
import platform
import socket
import sys
from importlib import metadata

# The libraries whose versions can change a run's numbers, plus cvsweep itself.
VERSIONED_PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "scikit-learn", "cvsweep")


def versions() -> dict:
    return dict(_versions())


def device() -> dict:
    return dict(_device())


def host() -> dict:
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

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return {"type": "GPU", "name": details.get("device_name", gpus[0].name), "count": len(gpus)}
    return {"type": "CPU", "name": _cpu_name(), "count": 1}


@functools.cache
def _host() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0]}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
