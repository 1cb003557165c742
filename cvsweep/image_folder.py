"""A class-per-folder tree of images as arrays, decoded once and kept in a persistent cache.

    root/<class name>/<image>        e.g. GTSRB's Train/00000/*.ppm, or your own photos
    root/train/<class>/..., root/test/<class>/...   used as given when both exist

Classes are the sub-folder names in sorted order (label 0, 1, ...), as Keras's
``image_dataset_from_directory`` does. Images are decoded with Pillow, converted to RGB or
grayscale and resized to ``dataset.image_size`` (bilinear). The decoded arrays are cached in
``$CVSWEEP_CACHE_DIR`` (default ``~/.cache/cvsweep``) under a key made of every file's path
and bytes plus the decode settings: a sweep, and every later sweep on the same folder, decodes
the images once; changing, adding or removing any image makes a new key.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from cvsweep.jsonio import replaced_atomically

log = logging.getLogger("cvsweep.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}
# Decoded, resized arrays of the last folders seen, by content key: per process.
_memory: dict[str, dict] = {}
# (folder, listing of (path, size, mtime)) -> content key: skips re-reading unchanged files.
_keys: dict[tuple, str] = {}


class FolderError(ValueError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("CVSWEEP_CACHE_DIR") or Path.home() / ".cache" / "cvsweep") / "image_folder"


def load_folder(root: str, image_size: tuple[int, int], grayscale: bool) -> tuple[dict, str, bool]:
    """``{"train": (x, y), "test": (x, y) or None, "classes": [...]}``, its content key, and
    whether it came from the cache (memory or disk) rather than from decoding."""
    files = _listing(Path(root))
    key = _content_key(root, files, image_size, grayscale)
    if key in _memory:
        return _memory[key], key, True
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        arrays = _read_cache(path)
        if arrays is not None:
            _memory.clear()  # one folder at a time: decoded image sets are large
            _memory[key] = arrays
            return arrays, key, True
    started = time.perf_counter()
    arrays = _decode(Path(root), files, image_size, grayscale)
    log.info("decoded %d images of %s in %.1fs; cached as %s", len(files), root, time.perf_counter() - started, path)
    _write_cache(path, arrays)
    _memory.clear()
    _memory[key] = arrays
    return arrays, key, False


def _listing(root: Path) -> list[tuple[str, str, Path]]:
    """(split, class, file) for every image, in a stable order; split is '' without train/test."""
    if not root.is_dir():
        raise FolderError(f"dataset.path={root}: not a folder (expected one sub-folder of images per class)")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    splits = {"train": subdirs["train"], "test": subdirs["test"]} if {"train", "test"} <= set(subdirs) else {"": root}
    files = []
    for split, folder in splits.items():
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise FolderError(f"dataset.path={folder}: found {len(classes)} class folder(s); need at least 2")
        for name in classes:
            images = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files += [(split, name, p) for p in images]
    if not files:
        raise FolderError(f"dataset.path={root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _content_key(root: str, files, image_size, grayscale: bool) -> str:
    stats = tuple((str(p), (st := p.stat()).st_size, st.st_mtime_ns) for _, _, p in files)
    memo = (root, stats, tuple(image_size), grayscale)
    if memo not in _keys:
        digest = hashlib.sha256(f"v1:{tuple(image_size)}:{grayscale}".encode())
        base = Path(root)
        for split, name, path in files:
            digest.update(f"{split}/{name}/{path.relative_to(base)}:".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        _keys[memo] = digest.hexdigest()
    return _keys[memo]


def _decode(root: Path, files, image_size, grayscale: bool) -> dict:
    from PIL import Image, UnidentifiedImageError

    classes = sorted({name for _, name, _ in files})
    index = {name: i for i, name in enumerate(classes)}
    height, width = image_size
    out: dict = {"classes": classes, "train": None, "test": None}
    for split in sorted({s for s, _, _ in files}):
        part = [(name, path) for s, name, path in files if s == split]
        x = np.empty((len(part), height, width, 1 if grayscale else 3), dtype=np.uint8)
        for i, (name, path) in enumerate(part):
            try:
                with Image.open(path) as image:
                    image = image.convert("L" if grayscale else "RGB").resize((width, height), Image.BILINEAR)
                    pixels = np.asarray(image)
            except (UnidentifiedImageError, OSError) as err:
                raise FolderError(f"dataset.path={root}: cannot decode {path}: {err}") from None
            x[i] = pixels[..., np.newaxis] if grayscale else pixels
        y = np.array([index[name] for name, _ in part], dtype=np.int64)
        out["test" if split == "test" else "train"] = (x, y)
    return out


def _write_cache(path: Path, arrays: dict) -> None:
    flat = {"classes": np.array(arrays["classes"]), "x_train": arrays["train"][0], "y_train": arrays["train"][1]}
    if arrays["test"] is not None:
        flat.update(x_test=arrays["test"][0], y_test=arrays["test"][1])
    try:
        with replaced_atomically(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **flat)
    except OSError as err:  # a read-only home: decode every time, but say so
        log.warning("could not write the image cache %s: %s", path, err)


def _read_cache(path: Path) -> dict | None:
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
            test = (data["x_test"], data["y_test"]) if "x_test" in data.files else None
            return {"classes": [str(c) for c in data["classes"]], "train": (data["x_train"], data["y_train"]),
                    "test": test}
    except Exception as err:  # damaged: decode again and replace it
        log.warning("ignoring a damaged image cache %s: %s", path, err)
        return None
