"""What data cvsweep reads (cvsweep/data/access.py) on this machine and on a worker, the caps
on sizes and image dimensions, and the image-folder cache's integrity. Real files, FIFOs,
devices, /proc, symlinks; no mocks."""

from __future__ import annotations

import ctypes
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from cvsweep.config.schema import ConfigError, dataset_config
from cvsweep.data import image_folder
from cvsweep.data.access import CONFINED_VARIABLE, ROOTS_VARIABLE
from cvsweep.data.source_identity import pin_dataset
from cvsweep.data.sources import DataError, DataRefused, load_source

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    image_folder.forget_loaded()
    return tmp_path / "cache" / "image_folder"


def dataset(path, name="npz", **settings):
    if name in ("image_folder", "gtsrb"):
        settings = {"image_size": [8, 8], "color_mode": "grayscale", "num_classes": 2, "test_fraction": 0.5,
                    **settings}
    return dataset_config({"name": name, "path": str(path), "num_classes": 10, **settings})


def write_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=rng.integers(0, 255, (10, 8, 8), dtype=np.uint8), y_test=np.arange(10))
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height grey pixels, with one tiny data chunk: a
    decompression bomb's header, a few hundred bytes on disk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def image_tree(root: Path, classes=("a", "b"), per_class=4, size=12, seed=1, suffix=".png") -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / name / f"{i:03d}{suffix}")
    return root


def confined(monkeypatch, *roots):
    monkeypatch.setenv(CONFINED_VARIABLE, "1")
    monkeypatch.setenv(ROOTS_VARIABLE, os.pathsep.join(str(r) for r in roots))


def refused(path, **kwargs) -> str:
    with pytest.raises(DataRefused) as caught:
        load_source(dataset(path, **kwargs))
    return str(caught.value)


# -- locally: anywhere the user can read, but only regular files, within the caps ----------------

def test_devices_fifos_and_proc_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    # Were the FIFO opened for reading, this writer would unblock it (and the test would fail on
    # what was read) instead of leaving the test hanging.
    writer = threading.Timer(5, lambda: Path(fifo).write_bytes(b"not a dataset"))
    writer.start()
    try:
        assert "not a regular file (a FIFO)" in refused(fifo)
    finally:
        writer.cancel()
    assert "not a regular file (a character device)" in refused("/dev/zero")
    assert "an empty file (0 bytes)" in refused("/proc/self/environ")  # procfs files stat as empty
    assert "no such file" in refused(tmp_path / "absent.npz")


def test_locally_a_symlink_anywhere_readable_is_followed(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    target = write_npz(tmp_path / "elsewhere" / "data.npz")
    (tmp_path / "link.npz").symlink_to(target)
    assert load_source(dataset(tmp_path / "link.npz")).sha256 == load_source(dataset(target)).sha256


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path, monkeypatch):
    big = tmp_path / "big.npz"
    with open(big, "wb") as handle:  # sparse: 1 byte on disk past the default 2 GiB cap
        handle.truncate(2 * 1024**3 + 1)
    assert "2147483649 bytes; the limit is CVSWEEP_MAX_DATA_FILE_BYTES=2147483648" in refused(big)
    monkeypatch.setenv("CVSWEEP_MAX_DATA_FILE_BYTES", "1000")
    assert "the limit is CVSWEEP_MAX_DATA_FILE_BYTES=1000" in refused(write_npz(tmp_path / "small.npz"))
    monkeypatch.setenv("CVSWEEP_MAX_DATA_FILE_BYTES", "lots")
    assert "CVSWEEP_MAX_DATA_FILE_BYTES=lots: allowed is a whole number >= 1" in refused(tmp_path / "small.npz")


def test_an_npz_that_unpacks_past_the_cap_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x_train=np.zeros((2000, 100, 100), np.uint8), y_train=np.zeros(2000, np.int64),
                        x_test=np.zeros((10, 100, 100), np.uint8), y_test=np.zeros(10, np.int64))
    monkeypatch.setenv("CVSWEEP_MAX_DECODED_BYTES", str(10 * 1024**2))
    assert path.stat().st_size < 100_000
    assert "its arrays unpack to" in refused(path) and "CVSWEEP_MAX_DECODED_BYTES=10485760" in refused(path)


def test_an_image_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    root = image_tree(tmp_path / "folder")
    png_header_only(root / "a" / "bomb.png", 50_000, 50_000)  # 2.5 gigapixels claimed, 100 bytes on disk
    message = refused(root, name="image_folder")
    assert "bomb.png claims more pixels than CVSWEEP_MAX_IMAGE_PIXELS=64000000" in message
    (root / "a" / "bomb.png").unlink()
    monkeypatch.setenv("CVSWEEP_MAX_IMAGE_PIXELS", "100")  # the 12x12 images are 144 pixels
    assert "CVSWEEP_MAX_IMAGE_PIXELS=100" in refused(root, name="image_folder")


def test_image_file_and_decoded_size_caps(tmp_path, monkeypatch):
    root = image_tree(tmp_path / "folder")
    monkeypatch.setenv("CVSWEEP_MAX_IMAGE_FILE_BYTES", "10")
    assert "the limit is CVSWEEP_MAX_IMAGE_FILE_BYTES=10" in refused(root, name="image_folder")
    monkeypatch.delenv("CVSWEEP_MAX_IMAGE_FILE_BYTES")
    monkeypatch.setenv("CVSWEEP_MAX_DECODED_BYTES", "100")
    assert "8 images at 8x8 decode to 512 bytes; the limit is CVSWEEP_MAX_DECODED_BYTES=100" in refused(
        root, name="image_folder")


def test_image_size_has_an_upper_bound():
    from conftest import TINY_RUN

    from cvsweep.config.validate import load_run_config

    config = {**TINY_RUN, "dataset": {"name": "image_folder", "path": "/data/photos", "num_classes": 2,
                                      "pixel_scale": 255.0, "test_fraction": 0.2, "image_size": [4096, 4096],
                                      "color_mode": "rgb"}}
    with pytest.raises(ConfigError, match=r"dataset.image_size=\[4096, 4096\]: allowed is \[height, width\], each in \[4, 1024\]"):
        load_run_config(config)


# -- on a worker: only under its data roots, one message for every refusal -----------------------

def test_a_confined_process_reads_only_under_its_roots(tmp_path, monkeypatch):
    root, outside = tmp_path / "volume", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    inside_file = write_npz(root / "data.npz")
    secret = write_npz(outside / "secret.npz")
    (root / "out.npz").symlink_to(secret)  # a symlink leading out of the root
    (root / "dir-out").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo.npz")
    confined(monkeypatch, root)
    assert load_source(dataset(inside_file)).x_train.shape == (20, 8, 8)
    messages = {str(path): refused(path) for path in (
        "/dev/zero", root / "fifo.npz", "/proc/self/environ", "/etc/passwd", "/etc/no-such-file",
        root / "out.npz", root / "dir-out" / "secret.npz", root / ".." / "outside" / "secret.npz",
        outside / "absent.npz", "~/.ssh/id_rsa")}
    # One message for all of them, whether the file exists or not: only the path differs.
    assert {message.replace(path, "<path>") for path, message in messages.items()} == {
        f"dataset.path=<path>: not a readable data file or folder under the worker's data roots ({root}; set "
        "CVSWEEP_DATA_ROOTS on the endpoint to change them)"}


def test_a_folder_under_the_roots_may_not_reach_out(tmp_path, monkeypatch):
    root = image_tree(tmp_path / "volume" / "photos")
    outside = image_tree(tmp_path / "outside", classes=("c",))
    confined(monkeypatch, tmp_path / "volume")
    (root / "a" / "escape.png").symlink_to(outside / "c" / "000.png")
    assert "escape.png: not a readable data file or folder under the worker's data roots" in refused(
        root, name="image_folder")
    (root / "a" / "escape.png").unlink()
    (root / "c").symlink_to(outside / "c", target_is_directory=True)  # a class folder outside
    assert "not a readable data file or folder under the worker's data roots" in refused(root, name="image_folder")
    (root / "c").unlink()
    os.mkfifo(root / "a" / "pipe.png")
    assert "pipe.png: not a readable data file" in refused(root, name="image_folder")


# -- the image-folder cache --------------------------------------------------------------------------

def load(root, size=(8, 8)):
    return image_folder.load_folder(str(root), size, True)


def test_an_empty_class_folder_is_refused_by_name(tmp_path):
    root = image_tree(tmp_path / "folder", classes=("a", "b", "c"))
    for image in (root / "b").iterdir():
        image.unlink()
    with pytest.raises(image_folder.FolderError, match=f"the class folder {root / 'b'} has no images"):
        load(root)


def test_the_cache_folder_is_private(tmp_path, private_cache):
    root = image_tree(tmp_path / "folder")
    private_cache.mkdir(parents=True, mode=0o777)
    os.chmod(private_cache, 0o777)  # made by an earlier version, or by someone else's umask
    load(root)
    assert stat.S_IMODE(private_cache.stat().st_mode) == 0o700
    entry = next(private_cache.glob("*.npz"))
    assert stat.S_IMODE(entry.stat().st_mode) & 0o077 == 0


def test_a_tampered_or_planted_cache_entry_is_not_trusted(tmp_path, private_cache):
    root = image_tree(tmp_path / "folder")
    arrays, key, from_cache = load(root)
    assert not from_cache
    entry = private_cache / f"{key}.npz"
    planted = {"classes": np.array(["a", "b"]), "x_train": np.zeros_like(arrays["train"][0]),
               "y_train": arrays["train"][1]}
    np.savez(entry, **planted)  # other pixels under the same key, no stored hash
    image_folder.forget_loaded()
    again, _, from_cache = load(root)
    assert not from_cache and np.array_equal(again["train"][0], arrays["train"][0])
    # With a matching stored hash but writable by others: still not trusted.
    flat = {**planted}
    np.savez(entry, **flat, key=np.array(key), arrays_sha256=np.array(image_folder._arrays_sha256(flat)))
    os.chmod(entry, 0o666)
    image_folder.forget_loaded()
    again, _, from_cache = load(root)
    assert not from_cache and np.array_equal(again["train"][0], arrays["train"][0])
    image_folder.forget_loaded()
    assert load(root)[2]  # the entry it wrote back is good


def test_a_cache_entry_of_another_shape_is_not_trusted(tmp_path, private_cache):
    root = image_tree(tmp_path / "folder")
    _, key, _ = load(root)
    flat = {"classes": np.array(["a", "b"]), "x_train": np.zeros((8, 4, 4, 1), np.uint8),
            "y_train": np.array([0, 1] * 4)}
    np.savez(private_cache / f"{key}.npz", **flat, key=np.array(key),
             arrays_sha256=np.array(image_folder._arrays_sha256(flat)))
    os.chmod(private_cache / f"{key}.npz", 0o600)
    image_folder.forget_loaded()
    arrays, _, from_cache = load(root)
    assert not from_cache and arrays["train"][0].shape == (8, 8, 8, 1)


def test_a_file_changed_with_its_mtime_put_back_is_read_again(tmp_path):
    root = image_tree(tmp_path / "folder", suffix=".bmp")  # BMP: the same size for other pixels
    first = load(root)[0]["train"][0].copy()
    victim = root / "a" / "000.bmp"
    before = victim.stat()
    image_tree(tmp_path / "other", classes=("a",), seed=2, suffix=".bmp")
    victim.write_bytes((tmp_path / "other" / "a" / "000.bmp").read_bytes())
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert victim.stat().st_size == before.st_size
    assert not np.array_equal(load(root)[0]["train"][0], first)


class _ReadWatch:
    """inotify (Linux): call ``then`` once, right after ``path`` is first read and closed."""

    IN_CLOSE_NOWRITE = 0x10

    def __init__(self, path: Path, then):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_CLOSE_NOWRITE) < 0:
            pytest.skip("no inotify here")
        self.thread = threading.Thread(target=lambda: (os.read(self.fd, 4096), then()), daemon=True)
        self.thread.start()

    def close(self):
        self.thread.join(timeout=10)
        os.close(self.fd)


def test_a_file_changed_while_the_folder_is_read_is_cached_under_what_was_decoded(tmp_path):
    """The old key was taken before decoding: a file changed in between was cached under the
    old content's key, and served when that content came back."""
    root = image_tree(tmp_path / "folder", per_class=150)  # many files after the victim: time to swap it
    victim = root / "a" / "000.png"
    original = victim.read_bytes()
    replacement = image_tree(tmp_path / "other", classes=("a",), per_class=1, seed=2) / "a" / "000.png"
    watch = _ReadWatch(victim, lambda: os.replace(replacement, victim))  # whole, as an editor saves
    load(root)  # the victim changes right after its first read
    watch.close()
    victim.write_bytes(original)  # the first content is back
    image_folder.forget_loaded()
    arrays, _, _ = load(root)
    image_folder.forget_loaded()
    import io

    from PIL import Image

    expected = np.asarray(Image.open(io.BytesIO(original)).convert("L").resize((8, 8), Image.BILINEAR))
    assert np.array_equal(arrays["train"][0][0, ..., 0], expected)


def test_pin_dataset_leaves_worker_data_alone(tmp_path):
    from conftest import TINY_RUN

    from cvsweep.config.schema import run_config_of
    from cvsweep.config.validate import load_run_config

    config = run_config_of(load_run_config({**TINY_RUN, "dataset": {
        "name": "npz", "path": "/runpod-volume/data/mnist.npz", "location": "worker", "num_classes": 10,
        "pixel_scale": 255.0, "test_fraction": None}}))
    assert pin_dataset(config) == config and config["dataset"]["sha256"] is None
    for bad in ({"path": "data/mnist.npz"}, {"path": "~/mnist.npz"}, {"path": None}):
        with pytest.raises(ConfigError, match="dataset.location=worker|with dataset.location=worker"):
            load_run_config({**TINY_RUN, "dataset": {**config["dataset"], **bad}})
    with pytest.raises(DataError):  # a client-side path is still read here
        pin_dataset({**config, "dataset": {**config["dataset"], "location": "client"}})
