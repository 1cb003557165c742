"""A class-per-folder tree of images as arrays, decoded once and kept in a persistent cache.

    root/<class name>/<image>        e.g. GTSRB's Train/00000/*.ppm, or your own photos
    root/train/<class>/..., root/test/<class>/...   used as given when both exist

Classes are the sub-folder names in sorted order (label 0, 1, ...), as Keras's
``image_dataset_from_directory`` does; a class folder without images is refused (dropping it
would shift every later label). Every image is read once through cvsweep/data/access.py
(regular files only, under a worker's data roots, size-capped), its pixel count checked
from its header before it is decoded with Pillow, converted to RGB or grayscale and resized
to ``dataset.image_size`` (bilinear).

The decoded arrays are cached in ``$CVSWEEP_CACHE_DIR/image_folder`` (default
``~/.cache/cvsweep``, a folder kept private to the user: 0700) under a key made of every
file's path and the sha256 of the bytes that were decoded, plus the decode settings. Each
entry carries its key and the sha256 of its own arrays; an entry is used only when it is a
private regular file of this user whose key, hash, classes, counts and shapes all check out.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import time
import warnings
from pathlib import Path

import numpy as np

from cvsweep.data.access import AccessRefused, Policy, cache_root, limit
from cvsweep.errors import CvsweepError
from cvsweep.jsonio import replaced_atomically

log = logging.getLogger("cvsweep.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}
# The Pillow decoders an image may use (PPM covers PGM): nothing else is tried on its bytes.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "PPM", "GIF", "TIFF", "WEBP")
# Part of every key: entries of another layout are never read as this one.
CACHE_FORMAT = "v2"
# Decoded, resized arrays of the last folders seen, by content key: per process.
_memory: dict[str, dict] = {}
# (folder, listing of (path, size, mtime, ctime, inode)) -> content key: skips re-reading unchanged
# files (ctime cannot be set back by hand, unlike mtime).
_keys: dict[tuple, str] = {}


class FolderError(CvsweepError, ValueError):
    """An image folder that cannot be used; the message names ``dataset.path`` and the problem."""


def cache_dir() -> Path:
    """The folder of decoded image-folder caches.

    Returns:
        ``<cache_root>/image_folder``.
    """
    return cache_root() / "image_folder"


def load_folder(root: str, image_size: tuple[int, int], grayscale: bool,
                policy: Policy = Policy()) -> tuple[dict, str, bool]:
    """Load an image folder: decoded, resized arrays, from the cache where its content is unchanged.

    Args:
        root: The folder, as ``dataset.path`` gives it.
        image_size: ``(height, width)`` every image is resized to.
        grayscale: Whether images are read with one channel rather than three.
        policy: Where data may be read from.

    Returns:
        ``({"train": (x, y), "test": (x, y) or None, "classes": [...]}, content key, cached)``:
        cached tells whether it came from the cache (memory or disk) rather than from decoding.

    Raises:
        FolderError: When the folder cannot be listed or read, or its classes do not fit.
        AccessRefused: When a path is refused, or the decoded images would be over a cap.
    """
    real_root = Path(policy.resolve(root, folder=True))
    try:
        files = _listing(real_root, root, policy)
    except OSError as err:  # a folder that cannot be listed
        raise FolderError(f"dataset.path={root}: cannot list {err.filename}: {err.strerror}") from None
    _check_decoded_size(root, len(files), image_size, grayscale)
    memo = _stat_memo(real_root, files, image_size, grayscale)
    key = _keys.get(memo)
    if key is not None and key in _memory:
        return _memory[key], key, True
    if key is None:  # pass 1: hash every file
        key = _content_key(real_root, files, [_sha256(policy, path) for _, _, path in files], image_size, grayscale)
    arrays = _read_cache(key, _expected(files, image_size, grayscale))
    if arrays is not None:
        _keys[memo] = key
        return _remember(key, arrays), key, True
    started = time.perf_counter()
    arrays, digests = _decode(real_root, files, image_size, grayscale, policy)  # pass 2: hash what is decoded
    decoded_key = _content_key(real_root, files, digests, image_size, grayscale)
    if decoded_key == key:  # else a file changed since it was listed: the key of what was decoded wins
        _keys[memo] = key
    log.info("decoded %d images of %s in %.1fs; cached as %s", len(files), root, time.perf_counter() - started,
             cache_dir() / f"{decoded_key}.npz")
    _write_cache(decoded_key, arrays)
    return _remember(decoded_key, arrays), decoded_key, False


def class_names(root: str, policy: Policy = Policy()) -> list[str]:
    """An image folder's classes, from its listing alone (nothing is decoded): the sub-folder
    names, of train/ where train/ and test/ both exist.

    Args:
        root: The folder, as ``dataset.path`` gives it.
        policy: Where data may be read from.

    Returns:
        The class names in label order.

    Raises:
        FolderError: When the folder cannot be listed, or its classes do not fit.
        AccessRefused: When a path is refused.
    """
    real_root = Path(policy.resolve(root, folder=True))
    try:
        files = _listing(real_root, root, policy)
    except OSError as err:
        raise FolderError(f"dataset.path={root}: cannot list {err.filename}: {err.strerror}") from None
    return sorted({name for _, name, _ in files})


def forget_loaded() -> None:
    """Drop this process's memory of loaded folders (the disk cache stays): the next load
    lists, hashes and reads as a new process would."""
    _memory.clear()
    _keys.clear()


def _remember(key: str, arrays: dict) -> dict:
    _memory.clear()  # one folder at a time: decoded image sets are large
    _memory[key] = arrays
    return arrays


def _listing(real_root: Path, given: str, policy: Policy) -> list[tuple[str, str, Path]]:
    """(split, class, file) for every image, in a stable order; split is '' without train/test."""
    subdirs = {p.name.lower(): p for p in _subfolders(real_root, policy)}
    splits = {"train": subdirs["train"], "test": subdirs["test"]} if {"train", "test"} <= set(subdirs) else {"": real_root}
    files, class_sets = [], {}
    for split, folder in splits.items():
        classes = sorted(_subfolders(folder, policy), key=lambda p: p.name)
        if len(classes) < 2:
            raise FolderError(f"dataset.path={given}: {folder} has {len(classes)} class folder(s); need at least 2")
        class_sets[split] = [p.name for p in classes]
        for class_folder in classes:
            images = _images_in(class_folder, policy)
            if not images:
                raise FolderError(
                    f"dataset.path={given}: the class folder {class_folder} has no images "
                    f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove it: an empty class would "
                    "shift the label of every class after it")
            files += [(split, class_folder.name, p) for p in images]
    if len(class_sets) == 2 and class_sets["train"] != class_sets["test"]:
        raise FolderError(f"dataset.path={given}: train/ has the classes {class_sets['train']} but test/ has "
                          f"{class_sets['test']}; both need the same class folders")
    return files


def _subfolders(folder: Path, policy: Policy) -> list[Path]:
    """Folders in ``folder``, symlinked ones only where they lead to an allowed folder."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                found.append(Path(entry.path))
            elif entry.is_symlink() and os.path.isdir(entry.path):  # False for a loop or a dangling link
                policy.resolve(entry.path, folder=True)  # where it leads must be allowed
                found.append(Path(entry.path))
    return found


def _images_in(folder: Path, policy: Policy) -> list[Path]:
    """Image files anywhere below ``folder`` (symlinked sub-folders are not followed), sorted.
    A symlink must lead to a regular file the policy allows; anything else is refused."""
    found, pending = [], [folder]
    while pending:  # no recursion: a deep tree cannot exhaust the stack
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    if not entry.is_file(follow_symlinks=False):
                        policy.resolve(entry.path)  # a symlink, a FIFO, a device: refused unless a file allowed
                    found.append(Path(entry.path))
    return sorted(found)


def _check_decoded_size(given: str, count: int, image_size, grayscale: bool) -> None:
    height, width = image_size
    size = count * height * width * (1 if grayscale else 3)
    cap = limit("CVSWEEP_MAX_DECODED_BYTES")
    if size > cap:
        raise AccessRefused(f"dataset.path={given}: {count} images at {height}x{width} decode to {size} bytes; the "
                            f"limit is CVSWEEP_MAX_DECODED_BYTES={cap} (a smaller dataset.image_size fits more)")


def _stat_memo(real_root: Path, files, image_size, grayscale: bool) -> tuple:
    stats = []
    for _, _, path in files:
        try:
            info = path.stat()
        except OSError as err:  # removed since it was listed
            raise FolderError(f"cannot read {path}: {err.strerror}") from None
        stats.append((str(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino))
    return str(real_root), tuple(stats), tuple(image_size), grayscale


def _sha256(policy: Policy, path: Path) -> bytes:
    return hashlib.sha256(policy.read(str(path), "CVSWEEP_MAX_IMAGE_FILE_BYTES")).digest()


def _content_key(real_root: Path, files, digests, image_size, grayscale: bool) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{tuple(image_size)}:{grayscale}".encode())
    for (split, name, path), file_digest in zip(files, digests, strict=True):
        digest.update(f"{split}/{name}/{path.relative_to(real_root)}:".encode())
        digest.update(file_digest)
    return digest.hexdigest()


def _expected(files, image_size, grayscale: bool) -> dict:
    """What a cache entry of this listing must hold."""
    counts = {"train": sum(split != "test" for split, _, _ in files), "test": sum(split == "test" for split, _, _ in files)}
    return {"classes": sorted({name for _, name, _ in files}), "counts": counts,
            "shape": (*image_size, 1 if grayscale else 3)}


def _decode(root: Path, files, image_size, grayscale: bool, policy: Policy) -> tuple[dict, list[bytes]]:
    """The arrays, and the sha256 of each file's bytes exactly as they were decoded."""
    from PIL import Image

    max_pixels = limit("CVSWEEP_MAX_IMAGE_PIXELS")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard: a warning above it, an error at twice it
    classes = sorted({name for _, name, _ in files})
    index = {name: i for i, name in enumerate(classes)}
    height, width = image_size
    out: dict = {"classes": classes, "train": None, "test": None}
    digests = [b""] * len(files)  # in the listing's order, as _content_key pairs them with the files
    for split in sorted({s for s, _, _ in files}):
        part = [(n, name, path) for n, (s, name, path) in enumerate(files) if s == split]
        x = np.empty((len(part), height, width, 1 if grayscale else 3), dtype=np.uint8)
        for i, (n, name, path) in enumerate(part):
            data = policy.read(str(path), "CVSWEEP_MAX_IMAGE_FILE_BYTES")
            digests[n] = hashlib.sha256(data).digest()
            pixels = _decode_image(data, path, root, (width, height), grayscale, max_pixels)
            x[i] = pixels[..., np.newaxis] if grayscale else pixels
        y = np.array([index[name] for _, name, _ in part], dtype=np.int64)
        out["test" if split == "test" else "train"] = (x, y)
    return out, digests


def _decode_image(data: bytes, path: Path, root: Path, size: tuple[int, int], grayscale: bool,
                  max_pixels: int) -> np.ndarray:
    """One image's pixels, resized; its header's dimensions are checked before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as image:
                if image.width * image.height > max_pixels:
                    raise Image.DecompressionBombError("too many pixels")
                image = image.convert("L" if grayscale else "RGB").resize(size, Image.BILINEAR)
                return np.asarray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AccessRefused(f"dataset.path={root}: {path} claims more pixels than CVSWEEP_MAX_IMAGE_PIXELS="
                            f"{max_pixels} (a decompression bomb, or raise the limit)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise FolderError(f"dataset.path={root}: cannot decode {path}: {err}") from None


def _arrays_sha256(flat: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(flat):
        array = np.ascontiguousarray(flat[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _private_cache_dir() -> Path | None:
    """The cache folder, created private (0700) and made so if it is not: another user who
    could write into it could plant entries. None (no cache) when it is not this user's."""
    folder = cache_dir()
    try:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            log.warning("not using the image cache %s: not a folder owned by this user", folder)
            return None
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(folder, 0o700)
    except OSError as err:  # a read-only home: decode every time, but say so
        log.warning("cannot use the image cache %s: %s", folder, err)
        return None
    return folder


def _write_cache(key: str, arrays: dict) -> None:
    folder = _private_cache_dir()
    if folder is None:
        return
    flat = {"classes": np.array(arrays["classes"]), "x_train": arrays["train"][0], "y_train": arrays["train"][1]}
    if arrays["test"] is not None:
        flat.update(x_test=arrays["test"][0], y_test=arrays["test"][1])
    try:
        with replaced_atomically(folder / f"{key}.npz") as tmp, open(tmp, "wb") as handle:
            os.chmod(tmp, 0o600)
            np.savez(handle, **flat, key=np.array(key), arrays_sha256=np.array(_arrays_sha256(flat)))
    except OSError as err:
        log.warning("could not write the image cache %s: %s", folder, err)


def _read_cache(key: str, expected: dict) -> dict | None:
    """The entry for ``key``, or None when there is none or it fails a check (then it is
    decoded again and replaced)."""
    folder = _private_cache_dir()
    path = folder / f"{key}.npz" if folder else None
    if path is None or not os.path.lexists(path):
        return None
    try:
        flat = _load_entry(path)
        problem = _entry_problem(flat, key, expected)
    except Exception as err:  # damaged, truncated, not an npz
        problem = f"unreadable ({err})"
    if problem:
        log.warning("ignoring the image cache entry %s: %s", path, problem)
        return None
    test = (flat["x_test"], flat["y_test"]) if "x_test" in flat else None
    return {"classes": [str(c) for c in flat["classes"]], "train": (flat["x_train"], flat["y_train"]), "test": test}


def _load_entry(path: Path) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise ValueError("not a regular file of this user that only this user can write")
        if info.st_size > limit("CVSWEEP_MAX_DECODED_BYTES") + 1024**2:
            raise ValueError(f"{info.st_size} bytes, more than CVSWEEP_MAX_DECODED_BYTES")
        with np.load(handle, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def _entry_problem(flat: dict, key: str, expected: dict) -> str | None:
    stored_key, stored_hash = str(flat.pop("key", "")), str(flat.pop("arrays_sha256", ""))
    if stored_key != key:
        return f"it holds the key {stored_key or 'none'}"
    if stored_hash != _arrays_sha256(flat):
        return "its arrays do not match the hash stored with them"
    if [str(c) for c in flat.get("classes", [])] != expected["classes"]:
        return "other classes than the folder's"
    for part, count in expected["counts"].items():
        x, y = flat.get(f"x_{part}"), flat.get(f"y_{part}")
        if count == 0 and x is None:
            continue
        if x is None or y is None or x.dtype != np.uint8 or x.shape != (count, *expected["shape"]):
            return f"x_{part} is not {count} images of {expected['shape']}"
        if y.shape != (count,) or not np.issubdtype(y.dtype, np.integer) or (count and (
                y.min() < 0 or y.max() >= len(expected["classes"]))):
            return f"y_{part} is not {count} labels of the folder's classes"
    return None
