"""What the image-folder cache saves: a class-per-folder tree of real MNIST PNG files, loaded
(a) with nothing cached: list, hash, decode and resize every image, write the cache;
(b) as a new process would with the disk cache warm: list, hash, read the cache;
(c) as a sweep's next trial does: list and stat only, arrays from memory.
Alternating, several rounds; median and spread.

    uv run python benchmarks/image_folder_cache.py [--per-class 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_tree(root: Path, mnist: Path, per_class: int) -> int:
    from PIL import Image

    with np.load(mnist) as data:
        x, y = data["x_train"], data["y_train"]
    count = 0
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
        for i in np.flatnonzero(y == digit)[:per_class]:
            Image.fromarray(x[i]).save(root / str(digit) / f"{i}.png")
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "image_folder_cache.json"))
    args = parser.parse_args()
    from cvsweep.data import image_folder

    work = Path(tempfile.mkdtemp(prefix="cvsweep-bench-"))
    images = write_tree(work / "tree", Path(args.data), args.per_class)
    os.environ["CVSWEEP_CACHE_DIR"] = str(work / "cache")
    load = lambda: image_folder.load_folder(str(work / "tree"), (28, 28), True)  # noqa: E731
    times: dict[str, list[float]] = {"no cache": [], "disk cache (new process)": [], "memory (next trial)": []}
    for _ in range(args.rounds):
        shutil.rmtree(work / "cache", ignore_errors=True)
        image_folder.forget_loaded()
        for name in times:
            if name == "disk cache (new process)":
                image_folder.forget_loaded()
            started = time.perf_counter()
            _, _, cached = load()
            times[name].append(time.perf_counter() - started)
            assert cached == (name != "no cache")
    shutil.rmtree(work)
    rows = {name: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for name, v in times.items()}
    report = {"images": images, "image_size": [28, 28], "rounds": args.rounds, "load": rows}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{images} MNIST PNG files, {args.rounds} rounds")
    print(f"{'load':28} {'median s':>9} {'min':>8} {'max':>8}")
    for name, row in rows.items():
        print(f"{name:28} {row['median_s']:9.3f} {row['min_s']:8.3f} {row['max_s']:8.3f}")


if __name__ == "__main__":
    main()
