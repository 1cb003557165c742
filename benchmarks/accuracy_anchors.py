"""Accuracy anchors on real MNIST (../shared/data/mnist.npz or --data PATH):

1. convnet: +experiment=keras_mnist_convnet (the Keras example: 15 epochs, batch 128) must reach the
   example's ~99% test accuracy;
2. sweep: the shipped MNIST sweep, `python -m cvsweep -m +experiment=mnist_sweep` (12 trials
   of 5 epochs), whose best trial should reach at least 99.0% test accuracy.

    uv run python benchmarks/accuracy_anchors.py [--part convnet|sweep|all] [--trials 12]
        [--fraction 1.0]

Wall times are reported; each part takes minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cvsweep", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("convnet", "sweep", "all"), default="all")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--fraction", type=float, default=1.0, help="below 1: proxy sampling")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "accuracy_anchors.json"))
    args = parser.parse_args()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    data = ["dataset=mnist", f"dataset.path={Path(args.data).resolve()}"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("convnet", "all"):
            wall = cli("+experiment=keras_mnist_convnet", *data, "plots=none", f"output_root={tmp}/convnet")
            result = json.loads(next(Path(tmp, "convnet", "runs").glob("*/result.json")).read_text())
            report["convnet"] = {"wall_s": round(wall, 1), "test_accuracy": result["metrics"]["test_accuracy"],
                                 "val_accuracy": result["metrics"]["val_accuracy"],
                                 "epochs": result["metrics"]["epochs_run"], "goal": "about 0.99"}
            print(f"keras_mnist_convnet: test accuracy {result['metrics']['test_accuracy']:.4f} in {wall:.0f}s", flush=True)
        if args.part in ("sweep", "all"):
            sampling = ["sampling=full"] if args.fraction >= 1 else ["sampling=proxy", f"sampling.fraction={args.fraction}"]
            wall = cli("-m", "+experiment=mnist_sweep", *data, *sampling, f"hydra.sweeper.n_trials={args.trials}",
                       "plots=summary", f"output_root={tmp}/sweep")
            summary = json.loads(next(Path(tmp, "sweep", "sweeps").glob("*/summary.json")).read_text())
            tests = [t["test_accuracy"] for t in summary["trials"] if t["status"] == "completed"]
            report["sweep"] = {"wall_s": round(wall, 1), "trials": args.trials, "fraction": args.fraction,
                               "command": "python -m cvsweep -m +experiment=mnist_sweep", "best_by_validation_test_accuracy": summary["best"]["test_accuracy"],
                               "max_test_accuracy": max(tests), "goal": ">= 0.990"}
            print(f"sweep: best trial (by validation) test accuracy {summary['best']['test_accuracy']:.4f}, "
                  f"max {max(tests):.4f}, {args.trials} trials in {wall:.0f}s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
