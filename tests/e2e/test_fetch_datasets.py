"""``cvsweep datasets fetch gtsrb``, offline: a small archive shaped like GTSRB's
official one (GTSRB/Final_Training/Images/<class>/*.ppm with GT-<class>.csv), served over real
HTTP on 127.0.0.1, fetched, checked, unpacked and trained on with dataset=gtsrb."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_OVERRIDES, read_json, run_cli
from PIL import Image

from cvsweep.config.datasets import REGISTRY
from cvsweep.data.archives import ARCHIVES

CLASSES = 3
PER_CLASS = 12


def make_archive(path: Path) -> str:
    """A GTSRB-shaped zip: each class a colour (learnable), with noise; its sha256."""
    rng = np.random.default_rng(0)
    colours = [(220, 30, 30), (30, 200, 40), (40, 60, 220)]
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("GTSRB/Readme-Images.txt", "a small stand-in for GTSRB's training archive\n")
        for label in range(CLASSES):
            folder = f"GTSRB/Final_Training/Images/{label:05d}"
            rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
            for index in range(PER_CLASS):
                pixels = np.clip(np.array(colours[label]) + rng.normal(0, 25, (14, 15, 3)), 0, 255).astype(np.uint8)
                name = f"00000_{index:05d}.ppm"
                target = path.parent / name
                Image.fromarray(pixels).save(target, format="PPM")
                zipped.write(target, f"{folder}/{name}")
                target.unlink()
                rows.append(f"{name};15;14;1;1;13;12;{label}")
            zipped.writestr(f"{folder}/GT-{label:05d}.csv", "\n".join(rows) + "\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with ``Range: bytes=N-`` answered 206 as a download server does."""

    served: list[tuple[str, int]] = []

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        wanted = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not wanted.startswith("bytes=") or not path.is_file():
            return super().send_head()
        start = int(wanted[len("bytes="):].rstrip("-"))
        data = path.read_bytes()[start:]
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{path.stat().st_size}")
        self.end_headers()
        RangeHandler.served.append((self.path, len(data)))
        import io

        return io.BytesIO(data)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The archive on an HTTP server of 127.0.0.1: (its URL, its sha256)."""
    root = tmp_path_factory.mktemp("mirror")
    sha256 = make_archive(root / "GTSRB_Final_Training_Images.zip")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/GTSRB_Final_Training_Images.zip", sha256, root
    server.shutdown()


def fetch_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvsweep", "datasets", "fetch", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_every_fetchable_dataset_is_a_registered_one_read_from_a_folder():
    assert set(ARCHIVES) <= set(REGISTRY)
    assert all(REGISTRY[name].needs_path for name in ARCHIVES)


@pytest.mark.slow
def test_fetch_checks_unpacks_and_a_gtsrb_sweep_trains_on_it(mirror, tmp_path):
    url, sha256, _ = mirror
    dest = tmp_path / "datasets" / "gtsrb"
    proc = fetch_cli("gtsrb", "--dest", str(dest), "--url", url, "--sha256", sha256)
    assert proc.returncode == 0, proc.stderr
    assert f"sha256 {sha256} checks out" in proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line == f"dataset=gtsrb dataset.path={dest / 'GTSRB' / 'Final_Training' / 'Images'}"
    images = Path(line.split("dataset.path=")[1])
    assert sorted(p.name for p in images.iterdir()) == ["00000", "00001", "00002"]
    assert len(list(images.glob("*/*.ppm"))) == CLASSES * PER_CLASS and len(list(images.glob("*/GT-*.csv"))) == 3
    assert sorted(p.name for p in dest.iterdir()) == ["GTSRB", "GTSRB_Final_Training_Images.zip"]  # no .part, no staging

    again = fetch_cli("gtsrb", "--dest", str(dest), "--url", url, "--sha256", sha256)  # nothing downloaded twice
    assert again.returncode == 0 and "is here and checks out" in again.stderr and "already unpacked" in again.stderr

    out = tmp_path / "out"
    run = run_cli("-m", "dataset=gtsrb", line.split()[1], f"dataset.num_classes={CLASSES}", "dataset.image_size=[12,12]",
                  *TINY_OVERRIDES, "training.epochs=3", "hydra.sweeper.n_trials=1", f"output_root={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = read_json(next(out.rglob("summary.json")))
    assert (summary["n_trials"], summary["n_completed"]) == (1, 1)
    result = read_json(next(out.rglob("result.json")))
    assert result["status"] == "completed" and result["config"]["dataset"]["name"] == "gtsrb"
    data = result["data"]
    assert data["image_shape"] == [12, 12, 3] and data["train"] + data["val"] + data["test"] == CLASSES * PER_CLASS


def test_a_wrong_checksum_deletes_the_download_and_names_both_hashes(mirror, tmp_path):
    url, sha256, _ = mirror
    dest = tmp_path / "gtsrb"
    # Only --url: the pinned md5 of the official archive applies, and this one is not it.
    proc = fetch_cli("gtsrb", "--dest", str(dest), "--url", url)
    actual_md5 = hashlib.md5((mirror[2] / "GTSRB_Final_Training_Images.zip").read_bytes()).hexdigest()
    assert proc.returncode == 1
    assert f"GTSRB_Final_Training_Images.zip: checksum mismatch: expected md5 {ARCHIVES['gtsrb'].md5}, " \
           f"got {actual_md5}" in proc.stderr
    wrong = "0" * 64
    proc = fetch_cli("gtsrb", "--dest", str(dest), "--url", url, "--sha256", wrong)
    assert proc.returncode == 1 and f"expected sha256 {wrong}, got {sha256}" in proc.stderr
    assert list(dest.iterdir()) == [] and proc.stdout == ""  # nothing kept, no dataset.path printed


def test_an_interrupted_download_resumes_where_it_stopped(mirror, tmp_path):
    url, sha256, root = mirror
    dest = tmp_path / "gtsrb"
    dest.mkdir()
    whole = (root / "GTSRB_Final_Training_Images.zip").read_bytes()
    (dest / "GTSRB_Final_Training_Images.zip.part").write_bytes(whole[:1000])  # what a killed run left
    RangeHandler.served.clear()
    proc = fetch_cli("gtsrb", "--dest", str(dest), "--url", url, "--sha256", sha256)
    assert proc.returncode == 0, proc.stderr
    assert "resuming after 1000 bytes" in proc.stderr
    assert RangeHandler.served == [("/GTSRB_Final_Training_Images.zip", len(whole) - 1000)]
    assert (dest / "GTSRB_Final_Training_Images.zip").read_bytes() == whole


def test_a_bad_sha256_is_refused_before_anything_is_fetched(tmp_path):
    proc = fetch_cli("gtsrb", "--dest", str(tmp_path / "d"), "--sha256", "abc")
    assert proc.returncode == 2 and "--sha256 abc: 64 hexadecimal digits expected" in proc.stderr
    assert not (tmp_path / "d").exists() and os.listdir(tmp_path) == []
