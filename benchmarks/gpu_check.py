"""The Python half of benchmarks/gpu_check.sh: trains on whatever device this process sees (the
script hides the GPU with CUDA_VISIBLE_DEVICES=-1 for the CPU half) and writes each result.

    uv run python benchmarks/gpu_check.py parity OUT_DIR
    uv run python benchmarks/gpu_check.py precision OUT_DIR [--data mnist.npz] [--precisions float32 mixed_bfloat16]

parity: the two configs of the local/remote parity test (tests/integration/execution/test_remote.py: TINY_RUN and
PROXY_RUN), written as OUT_DIR/full/result.json and OUT_DIR/proxy/result.json for
``cvsweep compare``. precision: the default CNN on MNIST (--data, a Keras-layout .npz;
else the bundled digits) under each training.precision, one after another in this process
(each run sets its own policy), written as OUT_DIR/<precision>/result.json; prints accuracy
and fit time. A precision this hardware cannot run is printed with its reason, not trained.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the parity configs: one definition, the test's
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DIGITS = {"name": "digits", "num_classes": 10, "pixel_scale": 16.0, "test_fraction": 0.2}


def parity_configs() -> dict:
    from conftest import TINY_RUN
    from test_remote import PROXY_RUN

    return {"full": TINY_RUN, "proxy": PROXY_RUN}


def precision_config(data: str | None, policy: str) -> dict:
    dataset = {"name": "mnist", "path": data, "num_classes": 10} if data else DIGITS
    return {"dataset": dataset, "model": {}, "sampling": {}, "health": {},
            "training": {"epochs": 3, "batch_size": 256, "precision": policy}}


def train_to(out: Path, run_config: dict) -> dict:
    from cvsweep.jsonio import write_json_atomic
    from cvsweep.training.train import train

    result = train(copy.deepcopy(run_config))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "result.json", result)
    return result


def describe(name: str, result: dict) -> str:
    metrics, device = result["metrics"], result["executed_on"].get("device", {})
    if result["status"] != "completed":
        return f"{name:<15} {result['status']}: {result['reason']}"
    return (f"{name:<15} val_accuracy={metrics['val_accuracy']:.4f} test_accuracy={metrics['test_accuracy']:.4f} "
            f"fit={metrics['train_seconds']:.1f}s ({metrics['epochs_run']} epochs) on {device.get('type')} "
            f"{device.get('name')} tf32={device.get('tf32')} policy={device.get('precision')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["parity", "precision"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", help="MNIST as a Keras-layout .npz (precision only); default: digits")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_float16", "mixed_bfloat16"])
    args = parser.parse_args()
    if args.what == "parity":
        runs = parity_configs()
    else:
        runs = {policy: precision_config(args.data, policy) for policy in args.precisions}
    failed = 0
    for name, run_config in runs.items():
        result = train_to(args.out / name, run_config)
        print(describe(name, result), flush=True)
        refused = result.get("failure", {}).get("code") == "invalid_config"  # hardware that cannot run it
        failed += result["status"] != "completed" and not (args.what == "precision" and refused)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
