"""Runner overhead of a local sweep of very short trials, in the default configuration
(plots=all, artifacts=all): the wall time that is not fit or evaluate. Two sweep sizes
alternate, several rounds; the per-trial (marginal) overhead is the difference between them,
free of the costs paid once per sweep (imports, TensorFlow, the summary, the sweep plots and
the top trials' plots drawn when the sweep ends), which the amortised figure includes.

    uv run python benchmarks/runner_overhead.py [--small 5] [--large 25] [--rounds 1] [--plots all]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["search=base", "model.conv_layers=1", "model.filters=8", "model.dense_layers=0", "training.epochs=1",
        "training.batch_size=64"]


def sweep(n_trials: int, plots: str, root: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cvsweep", "-m", *TINY, f"hydra.sweeper.n_trials={n_trials}", f"plots={plots}",
         f"output_root={root}"], cwd=REPO, capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    results = [json.loads(p.read_text()) for p in next((root / "sweeps").iterdir()).glob("*/result.json")]
    inside = sum(r["metrics"]["train_seconds"] + r["metrics"]["evaluate_seconds"] for r in results)
    return {"trials": n_trials, "wall_s": wall, "fit_evaluate_s": inside, "outside_s": wall - inside}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=5)
    parser.add_argument("--large", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--plots", default="all", help="all (the default config), summary or none")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "runner_overhead.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for n in (args.small, args.large):
                run = sweep(n, args.plots, Path(tmp) / f"{round_}-{n}")
                runs.append(run)
                print(f"round {round_ + 1}: {n} trials: wall {run['wall_s']:.1f}s, fit+evaluate "
                      f"{run['fit_evaluate_s']:.1f}s, outside {run['outside_s']:.1f}s", flush=True)
    marginal = [
        (large["outside_s"] - small["outside_s"]) / (args.large - args.small)
        for small, large in zip(runs[0::2], runs[1::2])
    ]
    amortised = [r["outside_s"] / r["trials"] for r in runs if r["trials"] == args.large]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "plots": args.plots,
        "runs": runs,
        "per_trial_overhead_s": {"median": statistics.median(marginal), "runs": marginal},
        "amortised_overhead_s_at_large": {"median": statistics.median(amortised), "runs": amortised},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"per-trial overhead (marginal, {args.large} vs {args.small} trials): {report['per_trial_overhead_s']['median']:.3f}s "
          f"(goal < 0.2s); amortised over {args.large} trials with start-up: {report['amortised_overhead_s_at_large']['median']:.3f}s")


if __name__ == "__main__":
    main()
