"""Keras's text sets (IMDB reviews, 2 classes; Reuters newswires, 46 classes) as padded token
matrices.

Sources: ``keras.datasets.<name>.load_data`` on a connected machine, or ``dataset.path``: a
local .npz in Keras's layout (``x_train``/``x_test`` object arrays of token lists, as in
~/.keras/datasets/imdb.npz) or already padded integer matrices. Keras's own files are
pickled object arrays; they are read with an unpickler that builds NumPy arrays and lists of
integers and nothing else, so a hostile file cannot run code.

Tokens follow Keras's conventions: 0 pads, 1 starts a sequence, 2 is out of vocabulary;
indices from ``index_from`` (3) on are words by frequency. Words outside ``vocab_size``
become 2, sequences are cut and padded to ``sequence_length`` at the front, as Keras's
``pad_sequences`` does by default.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np

from cvsweep.errors import CvsweepError

OOV, START, INDEX_FROM = 2, 1, 3
KEYS = ("x_train", "y_train", "x_test", "y_test")


class TextDataError(CvsweepError, ValueError):
    """A text dataset that cannot be used; the message names where and the problem."""


def load_keras(name: str, vocab_size: int) -> dict:
    """A Keras text dataset, downloaded on first use, its words limited to the ``vocab_size`` commonest.

    Args:
        name: The ``keras.datasets`` module (imdb, reuters).
        vocab_size: Keras's ``num_words``.

    Returns:
        ``x_train``, ``y_train``, ``x_test``, ``y_test`` as Keras loads them.
    """
    import keras  # downloads into ~/.keras/datasets on first use

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data(num_words=vocab_size)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def read_npz(data: bytes, where: str) -> dict:
    """The four arrays of a Keras-layout text .npz, object arrays included, without pickle's power to call anything.

    Args:
        data: The file's bytes.
        where: How messages name the file.

    Returns:
        ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Raises:
        TextDataError: When it is no .npz, lacks an array, or an array cannot be read.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
    except zipfile.BadZipFile as err:
        raise TextDataError(f"{where}: not a readable .npz file ({err})") from None
    missing = [key for key in KEYS if key not in members]
    if missing:
        raise TextDataError(f"{where}: missing arrays {missing}; a Keras-layout .npz has {list(KEYS)}")
    arrays = {}
    for key in KEYS:
        try:
            with archive.open(members[key]) as handle:
                arrays[key] = _read_npy(io.BytesIO(handle.read()))
        except (ValueError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as err:
            raise TextDataError(f"{where}: {key} is not a readable array ({err})") from None
    return arrays


def pad(sequences, vocab_size: int, length: int, where: str) -> np.ndarray:
    """[N, length] int32: the last ``length`` tokens of each sequence, zeros in front.

    Args:
        sequences: Token id sequences.
        vocab_size: Ids at or above it become the out-of-vocabulary id.
        length: The padded length.
        where: How messages name the data.

    Returns:
        The padded array.

    Raises:
        TextDataError: When a sequence is not a list of non-negative token ids.
    """
    out = np.zeros((len(sequences), length), dtype=np.int32)
    for i, sequence in enumerate(sequences):
        tokens = np.asarray(sequence, dtype=np.int64)[-length:] if len(sequence) else np.zeros(0, np.int64)
        if tokens.ndim != 1 or (len(tokens) and tokens.min() < 0):
            raise TextDataError(f"{where}: sequence {i} is not a list of non-negative token ids")
        tokens = np.where(tokens >= vocab_size, OOV, tokens)
        if len(tokens):
            out[i, -len(tokens):] = tokens
    return out


class _ArraysOnly(pickle.Unpickler):
    """What np.save writes for an object array of lists, and nothing more."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")
        return super().find_class(module, name)


def _read_npy(handle) -> np.ndarray:
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, dtype = read_header(handle)
    if not dtype.hasobject:
        count = int(np.prod(shape)) if shape else 1
        array = np.frombuffer(handle.read(count * dtype.itemsize), dtype=dtype, count=count)
        return array.reshape(shape, order="F" if fortran else "C")
    array = _ArraysOnly(handle).load()
    if not isinstance(array, np.ndarray):
        raise ValueError("an object array was expected")
    return array
