"""Training throughput: cvsweep's train() against a plain Keras script of the same model on
the same data and batch size, alternating, several rounds. train() runs as a sweep's local
trial runs it: in the training process (cvsweep/training/process.py), writing progress.json
after every epoch and asking a median pruner, through a real Optuna trial, whether to stop.

    uv run python benchmarks/throughput.py [--rounds 3] [--fraction 0.25] [--epochs 2]

Images per second of fit (validation included in both), median and spread, and the ratio.
Data: the real MNIST of ../shared/data/mnist.npz (or --data PATH); model: the Keras MNIST
convnet (+experiment=keras_mnist_convnet), batch 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cvsweep_run(run_config: dict, training, study, progress_dir: str) -> float:
    from cvsweep.config.schema import Objective
    from cvsweep.study.pruning import EpochReporter
    from cvsweep.training.progress_file import epoch_writer

    trial = study.ask()
    result = training.run(run_config, progress=epoch_writer(progress_dir),
                          prune=EpochReporter(trial, Objective.val_accuracy, 0.0))
    assert result["status"] == "completed", result["reason"]
    study.tell(trial, result["metrics"]["val_accuracy"])
    return result["data"]["train"] * result["metrics"]["epochs_run"] / result["metrics"]["train_seconds"]


def plain_keras_run(x, y, x_val, y_val, epochs: int, seed: int) -> float:
    """What a user would write by hand: the Keras example, numpy arrays straight into fit."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(x_val, y_val), verbose=0)
    return len(y) * epochs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "throughput.json"))
    args = parser.parse_args()

    from cvsweep.compose import compose
    from cvsweep.config.schema import run_config_of
    from cvsweep.config.validate import load_run_config
    from cvsweep.data.sources import load_source, split

    overrides = ["+experiment=keras_mnist_convnet", "dataset=mnist", f"dataset.path={args.data}",
                 f"training.epochs={args.epochs}", "training.early_stopping_patience=0"]
    if args.fraction < 1:
        overrides += ["sampling=proxy", f"sampling.fraction={args.fraction}"]
    run_config = run_config_of(compose(*overrides))
    cfg = load_run_config(run_config)
    # The plain script gets exactly the arrays train() trains on.
    splits = split(load_source(cfg.dataset), cfg.dataset, cfg.sampling, cfg.training.seed, cfg.training.validation_split)

    import tempfile

    import optuna

    from cvsweep.training.process import TrainingProcess

    training = TrainingProcess()
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner())
    speeds = {"cvsweep": [], "plain_keras": []}
    progress_dir = tempfile.mkdtemp(prefix="cvsweep-throughput-")
    cvsweep_run(run_config, training, study, progress_dir)  # warm-up: imports, first tracing
    for round_ in range(args.rounds):
        speeds["cvsweep"].append(cvsweep_run(run_config, training, study, progress_dir))
        speeds["plain_keras"].append(plain_keras_run(splits.x_train, splits.y_train, splits.x_val, splits.y_val,
                                                     args.epochs, cfg.training.seed))
        print(f"round {round_ + 1}: cvsweep {speeds['cvsweep'][-1]:.0f} img/s, "
              f"plain Keras {speeds['plain_keras'][-1]:.0f} img/s", flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "train_images": len(splits.y_train), "epochs": args.epochs, "batch_size": 128, "rounds": args.rounds,
        "cvsweep_with": "the training process, progress.json every epoch, a median pruner asked every epoch",
        "images_per_second": {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                              for k, v in speeds.items()},
    }
    report["ratio"] = report["images_per_second"]["cvsweep"]["median"] / report["images_per_second"]["plain_keras"]["median"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'':12} {'median img/s':>13} {'min':>7} {'max':>7}")
    for name, v in report["images_per_second"].items():
        print(f"{name:12} {v['median']:>13.0f} {v['min']:>7.0f} {v['max']:>7.0f}")
    print(f"ratio cvsweep / plain Keras: {report['ratio']:.3f} (goal >= 0.95); written to {args.out}")
    training.close()


if __name__ == "__main__":
    main()
