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
    """The sha256 of a file's bytes.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def saved(path: Path) -> dict:
    """The record of a model file: its name (relative to the result's folder), size and sha256.

    Args:
        path: The model file.

    Returns:
        ``{"path", "bytes", "sha256"}``.
    """
    return {"path": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def missing(reason: str) -> dict:
    """The record of a model that is not there, and why.

    Args:
        reason: Why there is no model.

    Returns:
        ``{"missing": reason}``.
    """
    return {"missing": reason}


def save(model, folder: str | os.PathLike) -> dict:
    """Write ``model`` as ``folder/model.keras``; a reader never sees half a file.

    A model that cannot be saved is recorded as missing, never a failed run.

    Args:
        model: The Keras model.
        folder: The trial's folder.

    Returns:
        The model's record (see ``saved`` and ``missing``).
    """
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
    """Write ``folder/model.keras`` with ``fill(partial_path)``, only when its sha256 is ``sha256``.

    For a model that came from elsewhere (a remote worker); written atomically, and on any
    failure no model.keras is written.

    Args:
        folder: The trial's folder.
        fill: Writes the model's bytes to the path it is given.
        sha256: The sha256 the model must have.

    Returns:
        The model's record (see ``saved``).

    Raises:
        ChecksumMismatch: When the written bytes have another sha256.
    """
    folder = Path(folder)
    with replaced_atomically(folder / MODEL_FILE, suffix=".keras") as partial:
        fill(str(partial))
        actual = sha256_of(Path(partial))
        if actual != sha256:
            raise ChecksumMismatch(f"its sha256 is {actual}, not the {sha256} the worker reported")
    return saved(folder / MODEL_FILE)
