"""Remote sweeps against the local RunPod emulator: an 8-trial sweep with 1, 2 and 4 jobs in
flight, each against as many emulated workers, several rounds.

    uv run python benchmarks/remote_sweep.py [--rounds 1] [--trials 8] [--queue-delay 6] [--epochs 1]

The emulated workers share this machine's 2 CPU cores, so real training cannot run 4 times
faster in parallel here; --queue-delay makes every job wait that long before a worker takes
it, standing in for the time a job spends on its own GPU in the cloud. Reports per setting
the median and spread of the sweep's wall time, and over all trials the input size per job
and the round-trip overhead (round trip minus the worker's execution and queue time).
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
KEY = "benchmark-key"


def start_emulator(workers: int, log_dir: Path, queue_delay_s: float):
    env = {**os.environ, "RUNPOD_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "remote" / "emulator.py"), "--port", "0", "--workers", str(workers),
         "--log-dir", str(log_dir), "--faults", json.dumps({"queue_delay_s": queue_delay_s})],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("emulator ready: "), line
    return process, line.split()[2]


def run_sweep(base_url: str, in_flight: int, trials: int, epochs: int, root: Path) -> tuple[float, list[dict]]:
    env = {**os.environ, "RUNPOD_API_KEY": KEY, "RUNPOD_ENDPOINT_ID": "bench", "RUNPOD_ENDPOINT_BASE_URL": base_url}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cvsweep", "-m", "executor=runpod", f"executor.max_in_flight={in_flight}",
         "executor.poll_interval_s=0.2", f"hydra.sweeper.n_trials={trials}", f"training.epochs={epochs}", "plots=none",
         # Short trials: a tenth of digits, one small conv layer; the emulated queue time dominates.
         "sampling=proxy", "sampling.fraction=0.1", "model.conv_layers=1", "model.filters=8",
         f"output_root={root}"], cwd=REPO, env=env, capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    sweep_dir = next((root / "sweeps").iterdir())
    results = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/result.json"))]
    return wall, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    # Seconds each job waits in the emulated queue, standing in for RunPod's queue and cold
    # starts; the workers themselves share this machine's CPUs, unlike GPUs in the cloud.
    parser.add_argument("--queue-delay", type=float, default=6.0)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/remote_sweep.json")
    args = parser.parse_args()
    settings = (1, 2, 4)
    walls: dict[int, list[float]] = {n: [] for n in settings}
    trials: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for in_flight in settings:  # as many workers as jobs in flight
                emulator, base_url = start_emulator(in_flight, Path(tmp) / f"logs-{round_}-{in_flight}", args.queue_delay)
                try:
                    wall, results = run_sweep(base_url, in_flight, args.trials, args.epochs,
                                              Path(tmp) / f"r{round_}-{in_flight}")
                finally:
                    emulator.terminate()
                    emulator.wait()
                walls[in_flight].append(wall)
                trials += [r for r in results if r["status"] == "completed"]
                print(f"round {round_ + 1}: {in_flight} in flight: {wall:.1f}s", flush=True)
    overheads = [r["remote"]["round_trip_s"] - (r["remote"]["execution_ms"] + r["remote"]["queue_ms"]) / 1000
                 for r in trials]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "trials_per_sweep": args.trials, "epochs": args.epochs, "rounds": args.rounds,
        "queue_delay_s": args.queue_delay,
        "sweep_wall_s": {str(n): {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                         for n, v in walls.items()},
        "input_bytes": {"median": statistics.median(r["remote"]["input_bytes"] for r in trials),
                        "max": max(r["remote"]["input_bytes"] for r in trials)},
        "round_trip_overhead_s": {"median": statistics.median(overheads), "min": min(overheads), "max": max(overheads)},
        "queue_ms_median": statistics.median(r["remote"]["queue_ms"] for r in trials),
        "execution_s_median": statistics.median(r["remote"]["execution_ms"] / 1000 for r in trials),
    }
    out = Path(args.out or REPO / "benchmarks" / "results" / "remote_sweep.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'in flight':>10} {'median s':>9} {'min s':>7} {'max s':>7}")
    for n in settings:
        w = report["sweep_wall_s"][str(n)]
        print(f"{n:>10} {w['median']:>9.1f} {w['min']:>7.1f} {w['max']:>7.1f}")
    print(f"4 in flight / 1 in flight: {report['sweep_wall_s']['4']['median'] / report['sweep_wall_s']['1']['median']:.2f} (goal <= 0.35)")
    print(f"input per job: {report['input_bytes']['median']} bytes; round-trip overhead per trial: "
          f"median {report['round_trip_overhead_s']['median']:.2f}s "
          f"(range {report['round_trip_overhead_s']['min']:.2f}-{report['round_trip_overhead_s']['max']:.2f}s)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
