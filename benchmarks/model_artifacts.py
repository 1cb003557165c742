"""What keeping the trained model costs a local trial: the seconds train() spends saving
model.keras (Keras's save, the atomic rename, the sha256), the seconds the sweeper spends
registering it as an Optuna artifact (a copy into <output_root>/artifacts and one SQLite
write), the one-time import of optuna.artifacts, and the size of the file.

Models: the default CNN on digits (8x8), and the MNIST sweep's CNN (+experiment=mnist_sweep's
fixed values, its widest head; 28x28) when ../shared/data/mnist.npz exists (trained one epoch on
a 2% proxy sample: the file's size does not depend on how long it trained).

    uv run python benchmarks/model_artifacts.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
MODELS = {
    "default CNN, digits 8x8": ["training.epochs=2"],
    "MNIST sweep CNN, 28x28": [
        "dataset=mnist", f"dataset.path={MNIST}", "sampling=proxy", "sampling.fraction=0.02",
        "model.conv_layers=2", "model.filters=32", "model.batch_norm=true", "model.dense_units=256",
        "model.dropout=0.2", "training.epochs=1", "training.lr_schedule=cosine", "training.early_stopping_patience=0",
        "training.batch_size=128",
    ],
}


def measure(overrides: list[str], rounds: int, root: Path) -> dict:
    import optuna

    from cvsweep.compose import compose
    from cvsweep.config.schema import run_config_of
    from cvsweep.data.source_identity import pin_dataset
    from cvsweep.jsonio import write_json_atomic
    from cvsweep.study.artifacts import register_model
    from cvsweep.training import artifact
    from cvsweep.training.train import train

    saves = []
    save = artifact.save

    def timed_save(model, folder):
        started = time.perf_counter()
        record = save(model, folder)
        saves.append(time.perf_counter() - started)
        return record

    artifact.save = timed_save
    try:
        run_config = pin_dataset(run_config_of(compose(*overrides)))
        study = optuna.create_study(storage=f"sqlite:///{root}/optuna.db")
        registers, sizes = [], []
        for round_ in range(rounds):
            folder = root / str(round_)
            result = train(run_config, model_dir=str(folder))
            assert result["status"] == "completed", result["reason"]
            result_path = write_json_atomic(folder / "result.json", result)
            sizes.append(result["model"]["bytes"])
            trial = study.ask()
            started = time.perf_counter()
            assert register_model(trial, result_path, root) is not None
            registers.append(time.perf_counter() - started)
            study.tell(trial, 0.0)
    finally:
        artifact.save = save
    return {
        "model_bytes": sizes[0],
        "params": result["metrics"]["params"],
        "save_s_median": round(statistics.median(saves), 4),
        "save_s": [round(s, 4) for s in saves],
        "register_s_median": round(statistics.median(registers[1:] or registers), 4),  # the first imports
        "register_s": [round(s, 4) for s in registers],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "model_artifacts.json"))
    args = parser.parse_args()
    import optuna  # noqa: F401  (already imported by a sweep: not part of what is measured)

    started = time.perf_counter()
    import optuna.artifacts  # noqa: F401

    report = {"import_optuna_artifacts_s": round(time.perf_counter() - started, 4), "rounds": args.rounds, "models": {}}
    for name, overrides in MODELS.items():
        if "dataset=mnist" in overrides and not MNIST.exists():
            print(f"{name}: skipped ({MNIST} is missing)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            report["models"][name] = measured = measure(overrides, args.rounds, Path(tmp))
        print(f"{name}: {measured['params']:,} parameters, model.keras {measured['model_bytes'] / 1024:.0f} KiB; "
              f"save {measured['save_s_median']:.3f} s, Optuna artifact {measured['register_s_median']:.3f} s "
              f"(medians of {args.rounds})", flush=True)
    print(f"import optuna.artifacts (boto3 with it), once per sweep process: {report['import_optuna_artifacts_s']:.3f} s")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
