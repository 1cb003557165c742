"""Equal wall clock on real MNIST: the same sweep without and with pruning, each given the same
minutes of sweep wall time on this machine, one after the other (never side by side: they would
share the cores).

    uv run python benchmarks/pruning_mnist.py [--minutes 20] [--search mnist_fast]
        [--pruners none,median_warmup] [--data ../shared/data/mnist.npz]

Each sweep is `python -m cvsweep -m search=<search> dataset=mnist dataset.path=<data>
hydra/sweeper/pruner=<pruner>` with more trials than fit in the time; at the time limit it gets
SIGINT, as a user's Ctrl-C (the trial in flight is stopped and not counted). Reported per
pruner: trials finished (completed, pruned), the best trial by validation accuracy with its test
accuracy, the best test accuracy of any trial, and when the first trial of at least 99.4% test
accuracy finished. JSON in benchmarks/results/pruning_mnist.json, and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.994


def run_sweep(search: str, pruner: str, data: str, seconds: float, root: Path) -> dict:
    command = [sys.executable, "-m", "cvsweep", "-m", f"search={search}", "dataset=mnist", f"dataset.path={data}",
               f"hydra/sweeper/pruner={pruner}", "hydra.sweeper.n_trials=1000", "plots=none", f"output_root={root}"]
    log = open(root / "sweep.log", "w")
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the trial in flight stops, the summary is written
        proc.wait(timeout=600)
    return {"command": " ".join(["python -m cvsweep", *command[3:-1]]), "exit": proc.returncode,
            "wall_s": round(time.monotonic() - started, 1), **_outcome(root)}


def _outcome(root: Path) -> dict:
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{root}/optuna.db"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    results = {}
    for t in study.trials:
        path = (t.user_attrs.get("cvsweep.result") or {}).get("path")
        if path and Path(path).exists():
            results[t.number] = json.loads(Path(path).read_text())
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    tests = {n: r["metrics"].get("test_accuracy") for n, r in results.items() if r["status"] == "completed"}
    began = min(t.datetime_start for t in study.trials if t.datetime_start is not None)  # not the re-asked (WAITING)
    reached = sorted((t.datetime_complete - began).total_seconds() for t in complete
                     if (tests.get(t.number) or 0) >= GOAL)
    return {
        "completed": len(complete),
        "pruned": sum(1 for t in study.trials if t.state == TrialState.PRUNED),
        "stopped_at_the_limit": sum(1 for t in study.trials if t.state == TrialState.FAIL),
        "best_val_accuracy": best.value if best else None,
        "best_trial_test_accuracy": tests.get(best.number) if best else None,
        "best_trial_params": best.params if best else None,
        "max_test_accuracy": max((v for v in tests.values() if v is not None), default=None),
        "first_at_goal_s": round(reached[0], 1) if reached else None,
        "epochs_trained": sum(r["metrics"].get("epochs_run") or 0 for r in results.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--search", default="mnist_fast")
    parser.add_argument("--pruners", default="none,median_warmup")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pruning_mnist.json"))
    parser.add_argument("--keep", default=None, help="the sweeps' folder (default: a temporary one, removed)")
    args = parser.parse_args()
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "minutes": args.minutes,
              "search": args.search, "goal_test_accuracy": GOAL, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        for pruner in args.pruners.split(","):
            root = Path(tmp, pruner)
            root.mkdir(parents=True)
            report["runs"][pruner] = run_sweep(args.search, pruner, str(Path(args.data).resolve()),
                                               args.minutes * 60, root)
            print(f"{pruner}: {json.dumps(report['runs'][pruner])}", flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")  # after each: a later crash loses no run
    print(f"\n{'pruner':20} {'done':>5} {'pruned':>6} {'epochs':>6} {'best val':>9} {'its test':>9} "
          f"{'max test':>9} {'first >= goal':>14}")
    for pruner, run in report["runs"].items():
        def fmt(v):
            return "-" if v is None else f"{v:.4f}"
        first = "-" if run["first_at_goal_s"] is None else f"{run['first_at_goal_s'] / 60:.1f} min"
        print(f"{pruner:20} {run['completed'] + run['pruned']:>5} {run['pruned']:>6} {run['epochs_trained']:>6} "
              f"{fmt(run['best_val_accuracy']):>9} {fmt(run['best_trial_test_accuracy']):>9} "
              f"{fmt(run['max_test_accuracy']):>9} {first:>14}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
