"""A trained model as a file: ``model.keras`` (Keras's own format: architecture, weights and
optimizer state) written atomically, with the size and sha256 every later reader checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from cvsweep import layout
from cvsweep.errors import CvsweepError
from cvsweep.jsonio import replaced_atomically

MODEL_FILE = layout.MODEL


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def saved(path: Path) -> dict:
    """The record of a model file: its path (as given, relative to the result's folder when it
    is one), size and sha256."""
    return {"path": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def missing(reason: str) -> dict:
    """The record of a model that is not there, and why."""
    return {"missing": reason}


def save(model, folder: str | os.PathLike) -> dict:
    """Write ``model`` as ``folder/model.keras`` (a reader never sees half a file) and return
    its record; a model that cannot be saved is recorded as missing, never a failed run."""
    folder = Path(folder)
    try:
        # The mode every file of a run gets (the umask's), not mkstemp's 0600.
        with replaced_atomically(folder / MODEL_FILE, suffix=".keras") as partial:
            model.save(partial)  # Keras wants the .keras suffix
        return saved(folder / MODEL_FILE)
    except Exception as err:  # a full disk, a read-only folder: the run itself is fine
        return missing(f"could not be saved in {folder}: {type(err).__name__}: {err}")


class ChecksumMismatch(CvsweepError, ValueError):
    """Bytes that are not the model whose sha256 was reported."""


def place(folder: str | os.PathLike, fill: Callable[[str], None], sha256: str) -> dict:
    """Write ``folder/model.keras`` with ``fill(partial_path)`` (a model that came from elsewhere:
    a remote worker), atomically and only when its sha256 is ``sha256``; returns its record.
    Raises ChecksumMismatch, or what ``fill`` raises; either way no model.keras is written."""
    folder = Path(folder)
    with replaced_atomically(folder / MODEL_FILE, suffix=".keras") as partial:
        fill(str(partial))
        actual = sha256_of(Path(partial))
        if actual != sha256:
            raise ChecksumMismatch(f"its sha256 is {actual}, not the {sha256} the worker reported")
    return saved(folder / MODEL_FILE)
