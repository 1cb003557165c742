"""Image folders (real MNIST written as PNG files, a GTSRB-shaped tree), text in Keras's IMDB
layout with the LSTM model, augmentation, and the model/dataset compatibility check."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import SHARED_MNIST, TINY_RUN, as_the_command_checks, read_json, require, run_cli

from cvsweep.reporting.result_diff import without_timings
from cvsweep.config.schema import ConfigError, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.data.source_identity import pin_dataset
from cvsweep.data.sources import DataError
from cvsweep.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "image_folder"


@pytest.fixture(scope="module")
def mnist_folder(tmp_path_factory):
    """40 real MNIST training images per digit, as PNG files in one folder per class."""
    require(SHARED_MNIST.exists(), "../shared/data/mnist.npz")
    from PIL import Image

    root = tmp_path_factory.mktemp("mnist_png")
    with np.load(SHARED_MNIST) as mnist:
        x, y = mnist["x_train"][:2000], mnist["y_train"][:2000]
    for digit in range(10):
        (root / str(digit)).mkdir()
        for i in np.flatnonzero(y == digit)[:40]:
            Image.fromarray(x[i]).save(root / str(digit) / f"{i}.png")
    return root


@pytest.fixture
def small_folder(tmp_path):
    """A generated folder of 10 classes of 28x28 grayscale PNG files (noise): its content is
    all the fingerprint test needs, not real digits."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "small_png"
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / str(digit) / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def gtsrb_folder(tmp_path_factory):
    """GTSRB's shape: 43 class folders (00000..00042) of RGB .ppm files of varying sizes; each
    class a coloured sign shape of its own on noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("gtsrb") / "Train"
    for label in range(43):
        folder = root / f"{label:05d}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for i in range(8):
            h, w = rng.integers(30, 50, 2)
            image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            top, left = (label // 7) * h // 8, (label % 7) * w // 9
            image[top:top + h // 3, left:left + w // 3] = colour
            Image.fromarray(image).save(folder / f"{label:05d}_{i:05d}.ppm")
    return root


def imdb_layout(path, n_train=400, n_test=100, seed=0):
    """Keras's imdb.npz layout: object arrays of token lists (1 starts, words from 3), labels
    0/1. Class 1 reviews use mostly one half of a 500-word vocabulary, class 0 the other."""
    rng = np.random.default_rng(seed)

    def reviews(n):
        labels = rng.integers(0, 2, n)
        texts = np.empty(n, dtype=object)
        for i, label in enumerate(labels):
            length = int(rng.integers(20, 120))
            words = rng.integers(3, 250, length) + 250 * (rng.random(length) < (0.8 if label else 0.2))
            texts[i] = [1] + words.tolist()
        return texts, labels.astype(np.int64)

    x_train, y_train = reviews(n_train)
    x_test, y_test = reviews(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def run_config(**sections) -> dict:
    data = copy.deepcopy(TINY_RUN)
    for section, values in sections.items():
        # A dataset, or a model of another architecture, has settings of its own: it replaces TINY_RUN's.
        replaces = section == "dataset" or values.get("architecture", "cnn") != "cnn"
        data[section] = values if replaces else {**data.get(section, {}), **values}
    return run_config_of(load_run_config(data))


def folder_run(path, **dataset) -> dict:
    return run_config(dataset={"name": "image_folder", "path": str(path), "num_classes": 10, "pixel_scale": 255.0,
                               "test_fraction": 0.2, "image_size": [28, 28], "color_mode": "grayscale", **dataset},
                      training={"epochs": 3, "batch_size": 32, "seed": 1})


def test_an_mnist_image_folder_trains_and_decodes_once(mnist_folder, image_cache):
    first = train(folder_run(mnist_folder))
    assert first["status"] == "completed", first.get("reason")
    assert first["data"]["image_shape"] == [28, 28, 1] and first["data"]["train"] + first["data"]["val"] == 320
    assert first["data"]["cache"] == "decoded" and len(list(image_cache.glob("*.npz"))) == 1
    assert first["metrics"]["val_accuracy"] > 0.5  # 3 epochs on 288 real digits
    second = train(folder_run(mnist_folder))
    assert second["data"]["cache"] == "cached"
    assert without_timings(second["metrics"]) == without_timings(first["metrics"])  # timings and memory peaks vary


@pytest.mark.slow
def test_the_cache_serves_a_sweeps_trials_and_later_processes(mnist_folder, tmp_path):
    args = ["-m", "dataset=image_folder", f"dataset.path={mnist_folder}", "dataset.num_classes=10",
            "dataset.image_size=[28,28]", "dataset.color_mode=grayscale", "model.conv_layers=1", "model.filters=8",
            "training.epochs=1", "plots=none"]
    proc = run_cli(*args, "hydra.sweeper.n_trials=2", f"output_root={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    caches = [read_json(p)["data"]["cache"] for p in sorted((tmp_path / "a").glob("sweeps/*/*/result.json"))]
    assert caches == ["cached", "cached"]  # preflight decoded the folder once, before the trials
    assert (proc.stdout + proc.stderr).count("decoded 400 images") == 1
    again = run_cli(*args, "hydra.sweeper.n_trials=1", f"output_root={tmp_path / 'b'}")
    assert again.returncode == 0 and "decoded 400 images" not in again.stdout + again.stderr


def test_changing_one_image_changes_the_fingerprint(small_folder):
    from PIL import Image

    before = pin_dataset(folder_run(small_folder))
    assert before["dataset"]["sha256"] and pin_dataset(folder_run(small_folder)) == before
    victim = next((small_folder / "3").iterdir())
    pixels = np.asarray(Image.open(victim)).copy()
    pixels[10, 10] = 255 - pixels[10, 10]
    Image.fromarray(pixels).save(victim)
    after = pin_dataset(folder_run(small_folder))
    assert after["dataset"]["sha256"] != before["dataset"]["sha256"]
    from cvsweep.config.fingerprint import fingerprint

    assert fingerprint(after) != fingerprint(before)
    # A pinned hash that no longer matches the data fails the run, naming both.
    with pytest.raises(DataError, match="dataset.sha256=.*hashes to"):
        pin_dataset(before)  # pinned to the old content


def test_a_gtsrb_shaped_tree_trains(gtsrb_folder):
    result = train(run_config(
        dataset={"name": "gtsrb", "path": str(gtsrb_folder), "num_classes": 43, "pixel_scale": 255.0,
                 "test_fraction": 0.2, "image_size": [30, 30], "color_mode": "rgb"},
        training={"epochs": 8, "batch_size": 16, "seed": 0, "validation_split": 0.2}))
    assert result["status"] == "completed", result.get("reason")
    assert result["data"]["image_shape"] == [30, 30, 3] and result["data"]["test"] == 69
    assert result["metrics"]["val_accuracy"] > 1 / 43 * 3  # well above chance


@pytest.mark.slow
def test_imdb_layout_trains_an_lstm(tmp_path):
    path = imdb_layout(tmp_path / "imdb.npz")
    result = train(run_config(
        dataset={"name": "imdb", "path": str(path), "num_classes": 2, "vocab_size": 600, "sequence_length": 64},
        model={"architecture": "lstm", "embedding_dim": 16, "lstm_units": 16, "bidirectional": True,
               "dense_layers": 0},
        training={"epochs": 3, "batch_size": 32, "seed": 0}))
    assert result["status"] == "completed", result.get("reason")
    assert result["data"]["image_shape"] == [64]
    assert result["metrics"]["val_accuracy"] > 0.8


def test_a_text_file_cannot_run_code(tmp_path, capfd):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    texts = np.empty(2, dtype=object)
    texts[0], texts[1] = [1, 5, 6], Exploit()
    np.savez(tmp_path / "evil.npz", x_train=texts, y_train=np.array([0, 1]), x_test=texts, y_test=np.array([0, 1]))
    cfg = run_config(dataset={"name": "imdb", "path": str(tmp_path / "evil.npz"), "num_classes": 2,
                              "vocab_size": 100, "sequence_length": 8},
                     model={"architecture": "lstm"})
    result = train(cfg)
    assert result["status"] == "failed" and "builtins.print is not allowed" in result["reason"]
    assert "pwned" not in capfd.readouterr().out  # print() was never called
    # The file is a real exploit: the standard unpickler calls print() on it.
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as evil:
        evil["x_train"]
    assert "pwned" in capfd.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["dataset=imdb", "model=cnn"], "model.architecture=cnn cannot read dataset=imdb"),
    (["dataset=mnist", "model=lstm"], "model.architecture=lstm reads token sequences"),
    (["dataset=digits", "+dataset.vocab_size=100"],
     "dataset.vocab_size: not a setting of ImageDatasetConfig (digits, mnist, fashion_mnist, cifar10, cifar100, npz); "
     "only for text datasets (imdb, reuters)"),
    (["dataset=imdb", "model=lstm", "model.architecture=cnn"],
     "model.architecture=cnn: its settings are CnnModelConfig's, not LstmModelConfig's; choose it with model=cnn"),
])
def test_incompatible_model_and_dataset_are_refused_before_training(tmp_path, args, message, capsys):
    status, said = as_the_command_checks([*args, f"output_root={tmp_path}"], capsys, multirun=False)
    assert status == 2 and message in said, said[-2000:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["dataset=digits", "dataset.vocab_size=100"], "Key 'vocab_size' not in 'ImageDatasetConfig'"),
    (["dataset=imdb", "model.augmentation.flip=horizontal"], "Key 'augmentation' not in 'LstmModelConfig'"),
])
def test_settings_of_another_kind_fail_at_composition(tmp_path, args, message, capsys):
    status, said = as_the_command_checks([*args, f"output_root={tmp_path}"], capsys, multirun=False)
    assert status != 0 and message in said, said[-2000:]
    assert not (tmp_path / "runs").exists()


def test_a_text_dataset_picks_the_lstm_model_and_search(tmp_path):
    from conftest import compose

    cfg = compose("dataset=reuters", f"output_root={tmp_path}")
    assert cfg.model.architecture.name == "lstm" and cfg.hydra.runtime.choices.search == "lstm"
    assert cfg.dataset.num_classes == 46 and "model.lstm_units" in cfg.hydra.sweeper.params


@pytest.mark.slow
def test_augmentation_is_in_the_model_and_the_fingerprint():
    from cvsweep.config.fingerprint import fingerprint

    plain = run_config()
    augmented = run_config(model={"augmentation": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1,
                                                   "translation": 0.1}})
    assert fingerprint(plain) != fingerprint(augmented)
    first, second = train(augmented), train(augmented)
    assert first["status"] == "completed" and first["metrics"]["history"] == second["metrics"]["history"]
    assert first["metrics"]["history"] != train(plain)["metrics"]["history"]
    with pytest.raises(ConfigError, match="model.augmentation.rotation"):
        run_config(model={"augmentation": {"rotation": 2.0}})
