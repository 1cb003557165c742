"""Which data files cvsweep opens, and how: the rules every ``dataset.path`` meets.

Locally, ``dataset.path`` may name any file or folder the user can read. On a worker
(``remote/handler.py`` calls ``confine_to_data_roots`` when it starts) only what lies under
its data roots: ``CVSWEEP_DATA_ROOTS`` (os.pathsep-separated), by default the network volume
``/runpod-volume`` and the cache folder (``$CVSWEEP_CACHE_DIR``, default ``~/.cache/cvsweep``).
A path is resolved (every symlink followed) before its containment is checked, so a symlink
leading out of a root is outside.

Everywhere, only regular files are read: never a device (``/dev/zero``), a FIFO or a socket.
Each is opened once, without following a final symlink (a swap after the check fails) and
without blocking, then checked again on the open descriptor (type, size, and on the worker
where it really is), and read to exactly its size. Sizes and image dimensions have caps
(``LIMITS``), settable through the environment; so do a worker's own limits, set by the
endpoint's operator and never by a job: its result's size and the training settings a job may
ask for (``TRAINING_CAPS``, checked by cvsweep/execution/payload.py). On the worker every refusal of access reads
the same, so a reply never tells whether a path outside the roots exists.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cvsweep.errors import CvsweepError

ROOTS_VARIABLE = "CVSWEEP_DATA_ROOTS"
CONFINED_VARIABLE = "CVSWEEP_DATA_CONFINED"  # "1": this process (and what it starts) is a worker
WORKER_VOLUME = "/runpod-volume"  # where RunPod mounts a network volume in a serverless worker

GiB, MiB = 1024**3, 1024**2
# Caps on what a dataset may make cvsweep read or allocate: variable -> (default, what).
LIMITS = {
    "CVSWEEP_MAX_DATA_FILE_BYTES": (2 * GiB, "size of a dataset file (.npz), read into memory whole"),
    "CVSWEEP_MAX_IMAGE_FILE_BYTES": (64 * MiB, "size of one image file of an image folder"),
    "CVSWEEP_MAX_IMAGE_PIXELS": (64_000_000, "pixels (width x height) of one image before resizing"),
    "CVSWEEP_MAX_DECODED_BYTES": (4 * GiB, "decoded arrays of a dataset (all images at image_size, or an .npz's arrays)"),
    # serverless/workers/handler-functions.mdx "Payload limits": /run 10 MB; a result over it is
    # refused at job-done and the job reads COMPLETED without output (runpod-workers/worker-comfyui#129).
    "CVSWEEP_MAX_RESULT_BYTES": (8_000_000, "serialized result a worker returns (RunPod's /run limit is 10 MB)"),
    # The endpoint's operator caps what a job may ask of the worker; the job's own lower limits still apply.
    "CVSWEEP_MAX_PARAMS": (50_000_000, "training.max_params a job may set"),
    "CVSWEEP_MAX_ACTIVATION_MB": (8192, "training.max_activation_mb a job may set"),
    "CVSWEEP_MAX_EPOCHS": (1000, "training.epochs a job may set"),
}
# The worker's caps on a job's training settings: run config key -> variable of LIMITS.
TRAINING_CAPS = {"max_params": "CVSWEEP_MAX_PARAMS", "max_activation_mb": "CVSWEEP_MAX_ACTIVATION_MB",
                 "epochs": "CVSWEEP_MAX_EPOCHS"}


class AccessRefused(CvsweepError, ValueError):
    """A path or file cvsweep will not read; the message names ``dataset.path``."""


def cache_root() -> Path:
    """cvsweep's cache folder (decoded image folders live in its ``image_folder/``).

    Returns:
        ``$CVSWEEP_CACHE_DIR``, else ``~/.cache/cvsweep``.
    """
    return Path(os.environ.get("CVSWEEP_CACHE_DIR") or Path.home() / ".cache" / "cvsweep")


def confine_to_data_roots() -> None:
    """Make this process, and every process it starts, read data only under the worker's
    data roots. The worker's handler calls it before taking jobs."""
    os.environ[CONFINED_VARIABLE] = "1"


def worker_roots() -> tuple[str, ...]:
    """The worker's data roots, resolved.

    Returns:
        The real paths of the folders in the roots variable, else of the network volume and the
        cache folder.
    """
    configured = os.environ.get(ROOTS_VARIABLE)
    roots = configured.split(os.pathsep) if configured else [WORKER_VOLUME, str(cache_root())]
    return tuple(os.path.realpath(root) for root in roots if root.strip())


def limit(variable: str) -> int:
    """The cap an environment variable of ``LIMITS`` sets, else its default.

    Args:
        variable: The variable's name, a key of ``LIMITS``.

    Returns:
        The cap.

    Raises:
        AccessRefused: When the variable is set to anything but a whole number >= 1.
    """
    default, what = LIMITS[variable]
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise AccessRefused(f"{variable}={raw}: allowed is a whole number >= 1 (the cap on the {what})")
    return value


@dataclass(frozen=True)
class Policy:
    """Where data may be read from: ``roots`` None means anywhere the user can read."""

    roots: Optional[tuple[str, ...]] = None

    @classmethod
    def current(cls) -> "Policy":
        """The policy of this process: the worker's roots when confined, else none.

        Returns:
            The policy.
        """
        return cls.worker() if os.environ.get(CONFINED_VARIABLE) == "1" else cls()

    @classmethod
    def worker(cls) -> "Policy":
        """The policy of a worker: only its data roots.

        Returns:
            The policy.
        """
        return cls(worker_roots())

    def inside(self, real: str) -> bool:
        """Whether a real path lies inside the roots (always, without roots).

        Args:
            real: A resolved path.

        Returns:
            True when reading it is allowed by place.
        """
        return self.roots is None or any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.roots)

    def refused(self, given: str, why: str) -> AccessRefused:
        """The refusal of ``given``: one message on the worker, the specific reason locally.

        On the worker, missing, outside the roots, not a regular file and unreadable all read alike.

        Args:
            given: The path as the config gave it.
            why: The specific reason.

        Returns:
            The exception to raise.
        """
        if self.roots is not None:
            return AccessRefused(
                f"dataset.path={given}: not a readable data file or folder under the worker's data roots "
                f"({', '.join(self.roots)}; set {ROOTS_VARIABLE} on the endpoint to change them)")
        return AccessRefused(f"dataset.path={given}: {why}")

    def resolve(self, given: str, folder: bool = False) -> str:
        """The real path of ``given``: inside the roots, and a regular file (or a folder).

        Args:
            given: The path as the config gave it.
            folder: Whether a folder is expected rather than a regular file.

        Returns:
            The resolved path.

        Raises:
            AccessRefused: When it cannot be resolved, lies outside the roots, or is of the wrong kind.
        """
        try:
            real = os.path.realpath(os.path.expanduser(given))
        except (OSError, ValueError) as err:  # a NUL byte, a symlink loop
            raise self.refused(given, _reason(err)) from None
        if not self.inside(real):  # before anything else touches it
            raise self.refused(given, "outside the data roots")
        try:
            mode = os.stat(real).st_mode
        except (OSError, ValueError) as err:
            raise self.refused(given, _reason(err)) from None
        if folder and not stat.S_ISDIR(mode):
            raise self.refused(given, "not a folder (expected one sub-folder of images per class)")
        if not folder and not stat.S_ISREG(mode):
            raise self.refused(given, f"not a regular file (a {_kind(mode)}); give a data file")
        return real

    def read(self, given: str, limit_variable: str) -> bytes:
        """The bytes of the regular file ``given``, at most the cap in ``limit_variable``.

        Args:
            given: The path as the config gave it.
            limit_variable: The environment variable of ``LIMITS`` that caps the size.

        Returns:
            The file's content.

        Raises:
            AccessRefused: When the file is refused (see ``resolve``), over the cap, empty, or
                changed while it was read.
        """
        real = self.resolve(given)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)  # no final symlink, no waiting for a FIFO's writer
        except OSError as err:
            raise self.refused(given, _reason(err)) from None
        try:
            info = os.fstat(fd)  # what was opened, not what the name meant a moment ago
            if not stat.S_ISREG(info.st_mode) or not self.inside(_opened_path(fd, real)):
                raise self.refused(given, f"not a regular file (a {_kind(info.st_mode)})")
            cap = limit(limit_variable)
            if info.st_size > cap:
                raise AccessRefused(f"dataset.path={given}: {info.st_size} bytes; the limit is {limit_variable}={cap}")
            if info.st_size == 0:  # also what /proc's files report
                raise AccessRefused(f"dataset.path={given}: an empty file (0 bytes)")
            data = _read_upto(fd, info.st_size + 1)  # one byte more tells a file that grew
        finally:
            os.close(fd)
        if len(data) != info.st_size:
            raise AccessRefused(f"dataset.path={given}: the file changed while it was read; try again")
        return data


def _read_upto(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 16 * MiB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _opened_path(fd: int, fallback: str) -> str:
    """Where the open descriptor really points (Linux); the checked name elsewhere."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return fallback


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "special file"


def _reason(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, OSError) and err.errno == errno.ELOOP:
        return "a symlink where a file was checked, or a symlink loop"
    if isinstance(err, OSError):
        return f"cannot read it ({err.strerror})"
    return f"not a usable path ({err})"
