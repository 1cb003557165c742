"""Datasets: load a source, check it, and split it into train / validation / test.

Sources: scikit-learn's bundled 8x8 digits (offline, the default), the Keras downloaders
(mnist, fashion_mnist, cifar10, cifar100, and the text sets imdb and reuters; cached in
~/.keras), any local .npz in Keras layout, and class-per-folder image trees (image_folder,
gtsrb). Whatever the source, the result is one in-memory form (``Source``) that splitting,
sampling, training and the fingerprint share. Everything here is NumPy, scikit-learn and
Pillow: TensorFlow is only imported to download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from cvsweep.config.datasets import REGISTRY, Kind, Loader, kind_of
from cvsweep.config.schema import DataLocation
from cvsweep.data import image_folder
from cvsweep.data import text as text_data
from cvsweep.data.access import AccessRefused, Policy, limit
from cvsweep.errors import CvsweepError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# The test split of sources that have none is always drawn with this seed, so every trial
# (whatever its training seed) is scored on the same test images.
TEST_SPLIT_SEED = 0


class DataError(CvsweepError, ValueError):
    """A dataset that cannot be used; the message names the file or key and the problem."""


class DataRefused(DataError):
    """A path or file cvsweep will not read (cvsweep/data/access.py): outside a worker's data
    roots, not a regular file, over a size cap, an image bomb."""


@dataclass(frozen=True)
class Source:
    """Raw arrays of a dataset, as loaded (pixel values not yet scaled)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sha256: str  # of the four arrays: tells whether two machines trained on the same data
    # The arrays' form: Kind.image ([N, H, W] or [N, H, W, C], image folders decoded too) or
    # Kind.text ([N, sequence_length] token ids).
    kind: Kind = Kind.image
    cache: Optional[str] = None  # image folders: "decoded" now, or "cached"
    # The classes the labels were checked against: as given, or counted (the largest label + 1).
    num_classes: Optional[int] = None


@dataclass(frozen=True)
class Splits:
    """A dataset's training, validation and test arrays, scaled, as a run trains on them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_sha256: str
    kind: Kind = Kind.image
    cache: Optional[str] = None

    def describe(self) -> dict:
        """The splits' sizes, image shape, kind and source hash, for the result's ``data``.

        Returns:
            Plain data, with ``cache`` when the source says how it was loaded.
        """
        described = {
            "train": int(len(self.y_train)),
            "val": int(len(self.y_val)),
            "test": int(len(self.y_test)),
            "image_shape": list(self.x_train.shape[1:]),
            "kind": self.kind.value,
            "source_sha256": self.source_sha256,
        }
        return described | ({"cache": self.cache} if self.cache else {})


class _Cache:
    """A small in-process cache: a sweep's trials load and prepare each dataset once."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, make: Callable):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.items[key] = make()
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


_sources = _Cache(size=4)
_splits = _Cache(size=2)  # prepared float32 copies are large: keep few


def load_source(dataset, policy: Optional[Policy] = None) -> Source:
    """Load and check the dataset that ``dataset`` (a dataset config node) names.

    Files are read as ``policy`` allows. Local files and folders are cached by their content (a
    changed file is loaded anew, whatever its name), after they were read under the policy.

    Args:
        dataset: The dataset's config node.
        policy: Where data may be read from; default this process's (cvsweep/data/access.py).

    Returns:
        The dataset's raw arrays and their hash.

    Raises:
        DataError: When the data cannot be used, or does not hash to a pinned ``dataset.sha256``.
    """
    source = _load(dataset, policy or Policy.current())
    check_pinned(dataset, source.sha256)
    return source


def check_pinned(dataset, sha256: str) -> None:
    """Refuse data that does not hash to the ``dataset.sha256`` the run was configured with.

    Args:
        dataset: The dataset's config node.
        sha256: What the data hashes to now.

    Raises:
        DataError: When a pinned sha256 differs.
    """
    if dataset.sha256 is not None and dataset.sha256 != sha256:
        raise DataError(
            f"dataset.sha256={dataset.sha256}: the data loaded now hashes to {sha256}; "
            "it changed since the run was configured (or differs on this machine)"
        )


def settle_num_classes(dataset) -> None:
    """An image dataset's ``dataset.num_classes``, where the data is read here. An image
    folder's is counted from its class folders when unset and checked against them when given,
    before anything is decoded; image arrays (a local .npz, digits) count their labels when
    unset (the largest label + 1) and are checked against a given number when loaded. The run
    config made after it carries the number, so the fingerprint covers it as if it had been
    typed.

    A download or data on the worker is not counted: there it must be given
    (cvsweep/config/validate.py).

    Args:
        dataset: The config's dataset node; ``num_classes`` is filled in when unset.

    Raises:
        DataError: The data cannot be read, or holds another number of classes than given.
    """
    from omegaconf import read_write

    if not pinnable(dataset):
        return
    kind = kind_of(dataset.name)
    if kind == Kind.image_folder and dataset.path:
        found = _folder_classes(dataset.path, Policy.current())
        if dataset.num_classes is not None and dataset.num_classes != found:
            raise DataError(_classes_differ(dataset.num_classes, dataset.path, found))
    elif kind == Kind.image and dataset.num_classes is None:
        found = load_source(dataset).num_classes
    else:
        return
    with read_write(dataset):
        dataset.num_classes = found


def _folder_classes(root: str, policy: Policy) -> int:
    try:
        return len(image_folder.class_names(root, policy))
    except AccessRefused as err:
        raise DataRefused(str(err)) from None
    except image_folder.FolderError as err:
        raise DataError(str(err)) from None


def _classes_differ(given: int, root: str, found: int) -> str:
    return (f"dataset.num_classes={given}: dataset.path={root} has {found} class folders; set "
            f"dataset.num_classes={found}, or dataset.num_classes=null to count them")


def pinnable(dataset) -> bool:
    """Whether the data ``dataset`` names is read here, so its sha256 can be pinned: a local
    file or folder, or digits; never a download or data that lives on the worker.

    Args:
        dataset: The run config's dataset node.

    Returns:
        True when the data is read in this process.
    """
    local = dataset.path is not None or REGISTRY[dataset.name.value].loader == Loader.sklearn_digits
    return dataset.location != DataLocation.worker and local


def _load(dataset, policy: Policy) -> Source:
    name = getattr(dataset.name, "value", dataset.name)
    entry = REGISTRY[name]
    if entry.kind == Kind.image_folder:
        return _load_folder(dataset, policy)
    if entry.kind == Kind.text:
        return _load_text(name, dataset, policy)
    if dataset.path is not None:  # a local copy in Keras layout, whatever the source
        data = _read_data_file(dataset.path, policy)
        key = ("npz", hashlib.sha256(data).hexdigest(), dataset.num_classes)
        return _sources.get(key, lambda: _decode_npz(data, dataset.path, dataset.num_classes))
    if entry.loader == Loader.sklearn_digits:
        key = ("digits", dataset.test_fraction, dataset.num_classes)
        return _sources.get(key, lambda: _load_digits(dataset.test_fraction, dataset.num_classes))
    if entry.loader == Loader.npz:
        raise DataError(f"dataset.path: dataset '{name}' needs the path of a local .npz file")
    # Keras verifies its own downloads' hashes: the name identifies the content.
    return _sources.get(("keras", name, dataset.num_classes), lambda: _load_keras(name, dataset.num_classes))


def _load_folder(dataset, policy: Policy) -> Source:
    if dataset.path is None:
        raise DataError(f"dataset.path: dataset '{dataset.name.name}' needs the path of a folder of class folders")
    root = dataset.path
    grayscale = dataset.color_mode.name == "grayscale"
    try:
        arrays, key, from_cache = image_folder.load_folder(root, tuple(dataset.image_size), grayscale, policy)
    except AccessRefused as err:
        raise DataRefused(str(err)) from None
    except image_folder.FolderError as err:
        raise DataError(str(err)) from None

    def build() -> Source:
        from sklearn.model_selection import train_test_split

        (x, y), test = arrays["train"], arrays["test"]
        if test is None:  # one tree: a stratified, fixed test share
            x, x_test, y, y_test = _stratified(train_test_split, "dataset.test_fraction", x, y,
                                               test_size=dataset.test_fraction, seed=TEST_SPLIT_SEED)
            test = (x_test, y_test)
        found = len(arrays["classes"])
        if dataset.num_classes is not None and found != dataset.num_classes:
            raise DataError(_classes_differ(dataset.num_classes, root, found))
        return _checked({"x_train": x, "y_train": y, "x_test": test[0], "y_test": test[1]},
                        found, where=f"dataset.path={root}")

    source = _sources.get(("folder", key, dataset.num_classes, dataset.test_fraction), build)
    return dataclasses.replace(source, cache="cached" if from_cache else "decoded")


def _load_text(name: str, dataset, policy: Policy) -> Source:
    vocab, length = dataset.vocab_size, dataset.sequence_length
    if dataset.path is not None:
        data = _read_data_file(dataset.path, policy)
        key = ("text", hashlib.sha256(data).hexdigest(), vocab, length, dataset.num_classes)
        where = f"dataset.path={dataset.path}"
        read = lambda: text_data.read_npz(data, where)  # noqa: E731
    else:
        key, where = ("keras-text", name, vocab, length, dataset.num_classes), f"dataset={name}"
        read = lambda: _download(name, lambda: text_data.load_keras(name, vocab))  # noqa: E731

    def build() -> Source:
        try:
            raw = read()
            arrays = {k: raw[k] for k in ("y_train", "y_test")}
            for part in ("train", "test"):
                arrays[f"x_{part}"] = text_data.pad(raw[f"x_{part}"], vocab, length, where)
        except text_data.TextDataError as err:
            raise DataError(str(err)) from None
        return _checked(arrays, dataset.num_classes, where=where, kind=Kind.text)

    return _sources.get(key, build)


def split(source: Source, dataset, sampling, seed: int, validation_split: float) -> Splits:
    """The splits a run trains on: validation carved out, proxy-sampled, scaled.

    A stratified, seeded validation set is carved from the training set, then (proxy sampling)
    a stratified, seeded fraction of what remains is kept for training. Pixels are scaled to
    float32 and images get a channel axis. Cached: trials that share data and seed share it.

    Args:
        source: The loaded dataset.
        dataset: The dataset's config node (its ``pixel_scale``).
        sampling: The sampling config node.
        seed: The split's seed.
        validation_split: The share of the training set held out for validation.

    Returns:
        The splits.
    """
    pixel_scale = float(dataset.get("pixel_scale", 1.0))  # text datasets have none: token ids stay as they are
    key = (source.sha256, pixel_scale, float(sampling.fraction), seed, float(validation_split))
    splits = _splits.get(key, lambda: _split(source, pixel_scale, sampling.fraction, seed, validation_split))
    return dataclasses.replace(splits, cache=source.cache)


def _split(source: Source, pixel_scale: float, fraction: float, seed: int, validation_split: float) -> Splits:
    from sklearn.model_selection import train_test_split

    x_train, x_val, y_train, y_val = _stratified(
        train_test_split, "training.validation_split", source.x_train, source.y_train,
        test_size=validation_split, seed=seed,
    )
    if fraction < 1.0:
        x_train, _, y_train, _ = _stratified(
            train_test_split, "sampling.fraction", x_train, y_train,
            train_size=fraction, seed=seed,
        )
    scale = np.float32(pixel_scale)
    if source.kind == Kind.text:  # token ids stay integers
        prepare = lambda x: x.astype(np.int32)  # noqa: E731
    else:
        prepare = lambda x: _with_channels(x).astype(np.float32) / scale  # noqa: E731
    return Splits(
        prepare(x_train), y_train.astype(np.int32),
        prepare(x_val), y_val.astype(np.int32),
        prepare(source.x_test), source.y_test.astype(np.int32),
        source.sha256, source.kind,
    )


def _stratified(train_test_split, key, x, y, *, seed, **sizes):
    try:
        return train_test_split(x, y, stratify=y, random_state=seed, shuffle=True, **sizes)
    except ValueError as err:
        raise DataError(f"{key}: cannot make a stratified split of {len(y)} samples: {err}") from err


def _with_channels(x: np.ndarray) -> np.ndarray:
    return x[..., np.newaxis] if x.ndim == 3 else x


def _read_data_file(given: str, policy: Policy) -> bytes:
    """A dataset file's bytes, read as cvsweep/data/access.py allows (regular files, under a
    worker's data roots, within the size cap), and refused when its arrays would unpack to
    more than the decoded-size cap (a zip bomb)."""
    try:
        data = policy.read(given, "CVSWEEP_MAX_DATA_FILE_BYTES")
        cap = limit("CVSWEEP_MAX_DECODED_BYTES")
    except AccessRefused as err:
        raise DataRefused(str(err)) from None
    unpacked = _unpacked_size(data)
    if unpacked > cap:
        raise DataRefused(f"dataset.path={given}: its arrays unpack to {unpacked} bytes; the limit is "
                          f"CVSWEEP_MAX_DECODED_BYTES={cap}")
    return data


def _unpacked_size(data: bytes) -> int:
    """The sizes an .npz (a zip) declares for its members; zipfile never unpacks more. 0 for
    what is no zip: the decoder then says what is wrong with it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return 0


def _decode_npz(data: bytes, path: str, num_classes: Optional[int]) -> Source:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"dataset.path={path}: missing arrays {missing}; a Keras-layout .npz has "
                    f"{list(NPZ_KEYS)} (found {sorted(archive.files)})"
                )
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"dataset.path={path}: not a readable .npz file ({err})") from err
    return _checked(arrays, num_classes, where=f"dataset.path={path}")


def _load_digits(test_fraction: float, num_classes: Optional[int]) -> Source:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=test_fraction, stratify=digits.target,
        random_state=TEST_SPLIT_SEED,
    )
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _checked(arrays, num_classes, where="dataset=digits")


def _download(name: str, load: Callable):
    """Keras's downloader, with a failure that says what to do on a machine offline."""
    try:
        return load()
    except Exception as err:  # Keras raises a bare Exception for a failed fetch
        raise DataError(
            f"dataset={name}: the download failed ({str(err).splitlines()[0][:300]}); without internet, "
            f"set dataset.path to a local copy"
        ) from None


def _load_keras(name: str, num_classes: int) -> Source:
    import keras  # downloads into ~/.keras/datasets on first use

    (x_train, y_train), (x_test, y_test) = _download(name, getattr(keras.datasets, name).load_data)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _checked(arrays, num_classes, where=f"dataset={name}")


def _checked(arrays: dict, num_classes: Optional[int], where: str, kind: Kind = Kind.image) -> Source:
    """Shapes, counts and label range (``num_classes`` None: counted from the labels); labels
    come back as flat int64 vectors."""
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], np.asarray(arrays[f"y_{part}"])
        if kind == Kind.text:
            pass  # padded to [N, sequence_length] int32 by text_data.pad
        elif x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
            raise DataError(
                f"{where}: x_{part} has shape {x.shape}; expected images [N, H, W] or [N, H, W, C] "
                "with C in 1, 3, 4"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"{where}: x_{part} has dtype {x.dtype}; expected numbers")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{where}: y_{part} has shape {y.shape}; expected one integer label per image "
                f"({len(x)} images)"
            )
        if len(y) == 0:
            raise DataError(f"{where}: x_{part} is empty")
        if num_classes is None and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise DataError(
                f"{where}: y_{part} labels must be integers from 0 (one per class); found {y.dtype} in "
                f"[{y.min()}, {y.max()}]"
            )
        if num_classes is not None and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0
                                        or y.max() >= num_classes):
            raise DataError(
                f"{where}: y_{part} labels must be integers in [0, {num_classes - 1}] "
                f"(dataset.num_classes={num_classes}); found {y.dtype} in "
                f"[{y.min()}, {y.max()}]"
            )
        arrays[f"y_{part}"] = y.astype(np.int64)
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{where}: x_train images are {arrays['x_train'].shape[1:]} but x_test images are "
            f"{arrays['x_test'].shape[1:]}"
        )
    if num_classes is None:
        num_classes = 1 + max(int(arrays["y_train"].max()), int(arrays["y_test"].max()))
        if num_classes < 2:
            raise DataError(f"{where}: every label is 0; a classifier needs labels of at least 2 classes")
    digest = hashlib.sha256()
    for key in NPZ_KEYS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return Source(**arrays, sha256=digest.hexdigest(), kind=kind, num_classes=num_classes)
