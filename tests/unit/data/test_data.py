"""Data: real sources load and are checked, splits are stratified and reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_MNIST, TINY_RUN, require
from omegaconf import OmegaConf

from cvsweep.config.validate import load_run_config
from cvsweep.data.sources import DataError, load_source, split


def _cfg(**changes):
    cfg = load_run_config(TINY_RUN)
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def _splits(cfg, seed=0):
    return split(load_source(cfg.dataset), cfg.dataset, cfg.sampling, seed, cfg.training.validation_split)


def _class_shares(y, num_classes=10):
    return np.bincount(y, minlength=num_classes) / len(y)


def test_digits_is_real_and_offline():
    source = load_source(_cfg().dataset)
    assert source.x_train.shape == (1437, 8, 8) and source.x_test.shape == (360, 8, 8)
    assert set(np.unique(source.y_train)) == set(range(10))
    assert source.x_train.max() == 16


def test_validation_split_is_stratified_seeded_and_scaled():
    cfg = _cfg()
    a, b, c = _splits(cfg, seed=0), _splits(cfg, seed=0), _splits(cfg, seed=1)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.y_val, c.y_val)
    assert len(a.y_val) == round(0.1 * 1437)
    assert np.abs(_class_shares(a.y_val) - _class_shares(a.y_train)).max() < 0.02
    assert a.x_train.dtype == np.float32 and a.x_train.shape[1:] == (8, 8, 1) and a.x_train.max() == 1.0
    # The test set is the same whatever the training seed.
    assert np.array_equal(a.x_test, c.x_test)


def test_proxy_sampling_keeps_a_stratified_seeded_fraction():
    cfg = _cfg(**{"sampling.strategy": "proxy", "sampling.fraction": 0.25})
    full = _splits(_cfg())
    a, b = _splits(cfg), _splits(cfg)
    assert abs(len(a.y_train) - 0.25 * len(full.y_train)) <= 1
    assert np.array_equal(a.x_train, b.x_train)
    assert np.abs(_class_shares(a.y_train) - _class_shares(full.y_train)).max() < 0.02
    # Validation and test sets are untouched by proxy sampling, so scores compare.
    assert np.array_equal(a.y_val, full.y_val) and np.array_equal(a.y_test, full.y_test)


def test_real_mnist_from_a_local_file():
    require(SHARED_MNIST.exists(), "../shared/data/mnist.npz")
    cfg = _cfg(**{"dataset.name": "mnist", "dataset.path": str(SHARED_MNIST), "dataset.pixel_scale": 255.0,
                  "dataset.test_fraction": None})
    source = load_source(cfg.dataset)
    assert source.x_train.shape == (60000, 28, 28) and source.x_test.shape == (10000, 28, 28)
    assert list(np.bincount(source.y_test)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _npz_cfg(path):
    return _cfg(**{"dataset.name": "npz", "dataset.path": str(path), "dataset.pixel_scale": 255.0,
                   "dataset.test_fraction": None}).dataset


def _write(path, **arrays):
    rng = np.random.default_rng(0)
    data = {
        "x_train": rng.integers(0, 255, (40, 12, 12), dtype=np.uint8), "y_train": np.arange(40) % 10,
        "x_test": rng.integers(0, 255, (10, 12, 12), dtype=np.uint8), "y_test": np.arange(10),
    }
    data.update(arrays)
    data = {k: v for k, v in data.items() if v is not None}
    np.savez(path, **data)
    return path


def test_npz_layout_problems_are_named(tmp_path):
    good = load_source(_npz_cfg(_write(tmp_path / "good.npz")))
    assert good.x_train.shape == (40, 12, 12)
    cases = {
        "missing.npz": ({"y_test": None}, "missing arrays ['y_test']"),
        "labels.npz": ({"y_train": np.arange(40) % 12}, "y_train labels must be integers in [0, 9]"),
        "shape.npz": ({"x_test": np.zeros((10, 12), np.uint8)}, "x_test has shape (10, 12)"),
        "count.npz": ({"y_test": np.arange(9)}, "y_test has shape (9,)"),
        "sizes.npz": ({"x_test": np.zeros((10, 14, 14), np.uint8)}, "x_train images are (12, 12) but x_test images are (14, 14)"),
    }
    for name, (arrays, message) in cases.items():
        with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            load_source(_npz_cfg(_write(tmp_path / name, **arrays)))
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_source(_npz_cfg(tmp_path / "corrupt.npz"))
    with pytest.raises(DataError, match="no such file"):
        load_source(_npz_cfg(tmp_path / "absent.npz"))
