"""What bringing a remote trial's model home costs: the default CNN on digits, trained by the
RunPod emulator's worker, with no model asked for (``artifacts=none``), inline in the job's
output, and through an S3 store (moto's server on 127.0.0.1).

    uv run python benchmarks/model_transport.py [--rounds 5] [--epochs 20]

The three modes take turns, ``--rounds`` times, so that drift on a shared machine hits them
alike. Reports the model's size (the file and its inline text) and, per mode, the medians of
the trial's round trip, the worker's execution time, the worker's packing and upload, and the
client's decoding or download and write, and the median time of saving the model (train()
does it on the worker before packing). "added" is a mode's median trial time (the executor's
run, from sending the job to model.keras written) minus that of no model; on a shared machine
training time varies more than that, so "added_from_parts" sums the parts measured directly
(save + pack or upload + decode or download).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KEY = "benchmark-key"
STORE_ENV = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "cvsweep-benchmark"
MODES = ("none", "inline", "store")


def start_emulator(log_dir: Path):
    env = {**os.environ, **STORE_ENV, "RUNPOD_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(REPO / "remote" / "emulator.py"), "--port", "0", "--workers", "1",
                                "--log-dir", str(log_dir)], env=env, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("emulator ready: "), line
    return process, line.split()[2]


def time_save(path: Path, repeats: int = 5) -> float:
    """Median seconds of train()'s save (cvsweep/training/artifact.py) of this model, the part
    of a trial's model cost inside the worker's execution time: once per trial in every mode
    but none."""
    import keras

    from cvsweep.training import artifact

    model = keras.models.load_model(path)  # compiled, with its optimizer state, as trained
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            started = time.perf_counter()
            artifact.save(model, folder)
            times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's (20)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "model_transport.json"))
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer
    from omegaconf import OmegaConf

    from cvsweep.compose import compose
    from cvsweep.config.schema import RunpodExecutorConfig, run_config_of
    from cvsweep.execution.runpod import RunpodExecutor

    os.environ.update(STORE_ENV, RUNPOD_API_KEY=KEY)
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    s3_url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=BUCKET)
    overrides = [f"training.epochs={args.epochs}"] if args.epochs else []
    run_config = run_config_of(compose(*overrides))  # the default CNN on digits

    def executor(mode: str) -> RunpodExecutor:
        cfg = OmegaConf.structured(RunpodExecutorConfig)
        store = {"artifact_store": {"url": f"s3://{BUCKET}/bench", "endpoint_url": s3_url},
                 "max_inline_model_mb": 0} if mode == "store" else {}
        cfg.merge_with({"endpoint_id": "bench", "base_url": base_url, "poll_interval_s": 0.1, **store})
        return RunpodExecutor(cfg)

    rows: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        emulator, base_url = start_emulator(Path(tmp) / "logs")
        try:
            for round_ in range(args.rounds + 1):  # round 0 warms the worker's traced functions
                for mode in MODES:
                    model_dir = None if mode == "none" else Path(tmp) / f"{mode}-{round_}"
                    started = time.perf_counter()
                    result = executor(mode).run(copy.deepcopy(run_config), model_dir=str(model_dir) if model_dir else None)
                    wall = time.perf_counter() - started
                    assert result["status"] == "completed", result.get("reason")
                    how = result["remote"].get("model_transport") or {}
                    if mode != "none":
                        assert how.get("via") == mode, result.get("model")
                    if round_:
                        rows[mode].append({
                            "wall_s": wall, "round_trip_s": result["remote"]["round_trip_s"],
                            "execution_s": result["remote"]["execution_ms"] / 1000,
                            "queue_s": result["remote"]["queue_ms"] / 1000,
                            "worker_s": how.get("worker_seconds"), "client_s": how.get("seconds"),
                            "model_bytes": (result.get("model") or {}).get("bytes"),
                            "encoded_bytes": how.get("encoded_bytes")})
                    print(f"round {round_} {mode:6} {wall:6.2f} s", flush=True)
        finally:
            emulator.terminate()
            emulator.wait()
            s3.stop()
        save_s = time_save(Path(tmp) / f"inline-{args.rounds}" / "model.keras")

    med = lambda mode, key: round(statistics.median(r[key] for r in rows[mode]), 3)  # noqa: E731
    spread = lambda mode, key: [round(min(r[key] for r in rows[mode]), 3), round(max(r[key] for r in rows[mode]), 3)]  # noqa: E731
    report = {
        "setup": {"model": "default CNN on digits (the default config)", "epochs": run_config["training"]["epochs"],
                  "rounds": args.rounds, "workers": 1, "store": "moto server on 127.0.0.1",
                  "machine": f"{os.cpu_count()} CPUs, shared"},
        "model_bytes": rows["inline"][0]["model_bytes"], "save_s": save_s, "inline_text_bytes": rows["inline"][0]["encoded_bytes"],
        "modes": {mode: {"round_trip_s": med(mode, "round_trip_s"), "round_trip_range_s": spread(mode, "round_trip_s"),
                         "queue_s": med(mode, "queue_s"), "execution_s": med(mode, "execution_s"),
                         "trial_s": med(mode, "wall_s"),
                         **({"worker_pack_s": med(mode, "worker_s"), "client_write_s": med(mode, "client_s")}
                            if mode != "none" else {})}
                  for mode in MODES},
    }
    for mode in ("inline", "store"):
        row = report["modes"][mode]
        row["added_s"] = round(med(mode, "wall_s") - med("none", "wall_s"), 3)
        # The same, from its parts: within the trial-to-trial spread of the line above.
        row["added_from_parts_s"] = round(save_s + row["worker_pack_s"] + row["client_write_s"], 3)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
