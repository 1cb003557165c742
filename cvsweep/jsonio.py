"""Atomic files: a reader, or a run after a crash, sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically.

    Args:
        path: The file to write; its folder is created.
        data: JSON-serialisable data, without NaN or infinity.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: When ``data`` holds NaN or infinity.
        TypeError: When ``data`` is not JSON-serialisable.
    """
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, as UTF-8.

    Args:
        path: The file to write; its folder is created.
        text: The file's new content.

    Returns:
        ``path`` as a Path.
    """
    with replaced_atomically(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


@contextmanager
def replaced_atomically(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` whose content replaces ``path`` when the block succeeds.

    What the block writes there replaces ``path`` in one step when the block succeeds, and is
    removed when it fails. A kill in between leaves the old file (or none) and a hidden
    ``.NAME.*.tmp``. An OSError that names no file (a write to a full disk) is raised again
    naming ``path``.

    Args:
        path: The file to replace; its folder is created.
        suffix: The end of the temporary name, for writers that go by it (Keras saves only to a
            name ending in .keras).

    Yields:
        The temporary path, an empty file with the mode ``open(path, "w")`` would give.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_hidden_file(path, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # on disk before it takes the name
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None and err.errno is not None:  # a failed write (a full disk) names no file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_hidden_file(path: Path, suffix: str = "") -> Path:
    """A new, empty ``.NAME.<random>.tmp`` beside ``path``, with the mode ``open(path, "w")``
    would give (0666 less the umask, 0644 under umask 022): mkstemp's 0600 would make every
    result private to its writer, unlike every other file of a run."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the kernel applies the umask
            return tmp
        except FileExistsError:
            continue


def read_json(path: str | os.PathLike) -> Any:
    """Read a UTF-8 JSON file.

    Args:
        path: The file.

    Returns:
        Its parsed content.

    Raises:
        OSError: When the file cannot be read.
        json.JSONDecodeError: When it is not JSON.
    """
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
