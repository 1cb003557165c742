"""What proxy sampling buys: the same config (the Keras MNIST convnet) trained on
sampling.fraction 0.25, 0.5 and 1.0 of MNIST's training split, alternating, several rounds.
Validation and test sets stay whole, so the accuracies compare.

    uv run python benchmarks/proxy_sampling.py [--rounds 1] [--epochs 3] [--data ../shared/data/mnist.npz]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FRACTIONS = (0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "proxy_sampling.json"))
    args = parser.parse_args()
    from cvsweep.compose import compose
    from cvsweep.config.schema import run_config_of
    from cvsweep.training.train import train

    runs: dict[float, list[dict]] = {f: [] for f in FRACTIONS}
    for round_ in range(args.rounds):
        for fraction in FRACTIONS:
            sampling = ["sampling=proxy", f"sampling.fraction={fraction}"] if fraction < 1 else ["sampling=full"]
            cfg = compose("+experiment=keras_mnist_convnet", "dataset=mnist", f"dataset.path={args.data}",
                          f"training.epochs={args.epochs}", *sampling)
            result = train(run_config_of(cfg))
            metrics = result["metrics"]
            runs[fraction].append({"train_seconds": metrics["train_seconds"], "val_accuracy": metrics["val_accuracy"],
                                   "test_accuracy": metrics["test_accuracy"], "train_images": result["data"]["train"]})
            print(f"round {round_ + 1}: fraction {fraction}: {metrics['train_seconds']:.1f}s, "
                  f"val {metrics['val_accuracy']:.4f}, test {metrics['test_accuracy']:.4f}", flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "epochs": args.epochs,
        "fractions": {str(f): {"train_images": r[0]["train_images"],
                               "train_seconds_median": statistics.median(x["train_seconds"] for x in r),
                               "val_accuracy_median": statistics.median(x["val_accuracy"] for x in r),
                               "test_accuracy_median": statistics.median(x["test_accuracy"] for x in r),
                               "runs": r} for f, r in runs.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'fraction':>8} {'images':>7} {'train s':>8} {'val acc':>8} {'test acc':>9}")
    for f, row in report["fractions"].items():
        print(f"{f:>8} {row['train_images']:>7} {row['train_seconds_median']:>8.1f} "
              f"{row['val_accuracy_median']:>8.4f} {row['test_accuracy_median']:>9.4f}")


if __name__ == "__main__":
    main()
