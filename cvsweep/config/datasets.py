"""The dataset registry: one entry per dataset cvsweep knows, and everything that follows
from it (the schema's ``DatasetName`` choices and each name's schema, the loaders' dispatch,
the test-split rule, which sources download, the model and search a dataset picks).

Adding a dataset is one entry here plus one file conf/dataset/<name>.yaml (its preset:
class count, and for a text set the model and search it picks); tests/unit/config/test_datasets.py
checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class Kind(Enum):
    """What a dataset's examples are: image arrays, a folder of images, or token sequences."""

    image = "image"  # image arrays: [N, H, W] or [N, H, W, C] with integer labels
    image_folder = "image_folder"  # a folder of class folders, decoded and resized to arrays
    text = "text"  # token sequences, padded to dataset.sequence_length


class Loader(Enum):
    """Where a dataset's arrays come from."""

    sklearn_digits = "sklearn_digits"  # scikit-learn's bundled 8x8 digits
    keras = "keras"  # keras.datasets.<name>.load_data (downloads once into ~/.keras/datasets)
    npz = "npz"  # a local .npz in Keras layout (dataset.path)
    folder = "folder"  # cvsweep/data/image_folder.py (dataset.path)


class HeldOut(Enum):
    """Where a dataset's test set comes from."""

    own = "own"  # the source comes with a test split
    drawn = "drawn"  # none: dataset.test_fraction is drawn from it (stratified, seed 0)
    folder = "folder"  # a test/ sub-folder when there is one, else dataset.test_fraction


@dataclass(frozen=True)
class Dataset:
    """One dataset's registry entry: its kind, loader, test split, default model and search, shape."""

    kind: Kind
    loader: Loader
    test_set: HeldOut = HeldOut.own
    # The model and search space a plain ``dataset=<name>`` picks (conf/dataset/<name>.yaml
    # sets them; tests/unit/config/test_datasets.py checks they agree).
    model: str = "cnn"
    search: str = "cnn"
    # One image's shape, for the size check before a sweep without downloading (Keras image sets).
    shape: Optional[tuple[int, int, int]] = None

    @property
    def downloads(self) -> bool:
        """Fetched from the internet unless dataset.path names a local copy."""
        return self.loader == Loader.keras

    @property
    def needs_path(self) -> bool:
        """Nothing to load without dataset.path."""
        return self.loader in (Loader.npz, Loader.folder)


REGISTRY: dict[str, Dataset] = {
    "digits": Dataset(Kind.image, Loader.sklearn_digits, HeldOut.drawn),
    "mnist": Dataset(Kind.image, Loader.keras, shape=(28, 28, 1)),
    "fashion_mnist": Dataset(Kind.image, Loader.keras, shape=(28, 28, 1)),
    "cifar10": Dataset(Kind.image, Loader.keras, shape=(32, 32, 3)),
    "cifar100": Dataset(Kind.image, Loader.keras, shape=(32, 32, 3)),
    "npz": Dataset(Kind.image, Loader.npz),
    "image_folder": Dataset(Kind.image_folder, Loader.folder, HeldOut.folder),
    "gtsrb": Dataset(Kind.image_folder, Loader.folder, HeldOut.folder),
    "imdb": Dataset(Kind.text, Loader.keras, model="lstm", search="lstm"),
    "reuters": Dataset(Kind.text, Loader.keras, model="lstm", search="lstm"),
}


def kind_of(name) -> Kind:
    """The kind of a dataset.

    Args:
        name: The dataset's name, as text or as the schema's ``DatasetName`` member.

    Returns:
        Its registry entry's kind.
    """
    return REGISTRY[getattr(name, "value", name)].kind


def names_of(kind: Kind) -> list[str]:
    """The datasets of one kind, in registry order (for sets and messages).

    Args:
        kind: The kind.

    Returns:
        The names of its datasets.
    """
    return [name for name, entry in REGISTRY.items() if entry.kind == kind]


def known_shape(dataset) -> Optional[tuple[int, ...]]:
    """One example's shape from the config and the registry alone, without reading the data:
    what the size checks use for a download, or data that lives on the worker.

    Args:
        dataset: The dataset's config node.

    Returns:
        ``(sequence_length,)`` for text; ``(height, width, channels)`` for an image folder
        (every image is resized to ``image_size`` in ``color_mode``); the registry's shape for
        the Keras image sets; None where only the data can say (an .npz, digits).
    """
    if "sequence_length" in dataset:  # text: imdb, reuters
        return (dataset.sequence_length,)
    if kind_of(dataset.name) == Kind.image_folder:
        grayscale = getattr(dataset.color_mode, "value", dataset.color_mode) == "grayscale"
        return (*dataset.image_size, 1 if grayscale else 3)
    return REGISTRY[getattr(dataset.name, "value", dataset.name)].shape
