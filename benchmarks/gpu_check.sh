#!/usr/bin/env bash
# GPU readiness, on a machine with an NVIDIA GPU, from the repository (any folder):
#   benchmarks/gpu_check.sh [--cpu-only] [OUT_DIR]        (default OUT_DIR: /tmp/cvsweep-gpu-check)
# 1. prints nvidia-smi's line for each GPU (name, compute capability, driver, memory);
# 2. installs the project with uv (the `gpu` extra: TensorFlow's CUDA and cuDNN wheels);
# 3. trains the parity configs (tests/integration/execution/test_remote.py) on the GPU and on the CPU
#    (CUDA_VISIBLE_DEVICES=-1) and runs `cvsweep compare` between them, which names
#    every difference (device, TF32, metrics: the first epoch each history diverges);
# 4. trains the default CNN under float32, mixed_float16 and mixed_bfloat16 on the GPU and prints
#    each one's accuracy and fit time (MNIST from $CVSWEEP_MNIST, a Keras-layout .npz, else
#    ../shared/data/mnist.npz, else the bundled digits).
# Exits 2, saying so, on a machine without an NVIDIA GPU. --cpu-only runs the CPU half (the CPU
# parity runs and the precision runs without a GPU) anywhere, to check the script itself.
# Exit status: 0 when every run completed (the compare may report differences: expected across
# devices), 1 when a run failed.
set -euo pipefail

cpu_only=0
if [[ "${1:-}" == "--cpu-only" ]]; then cpu_only=1; shift; fi
out="${1:-/tmp/cvsweep-gpu-check}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf '\n== %s\n' "$*"; }

if [[ $cpu_only -eq 0 ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or finds no GPU); run on a GPU machine," \
         "or use --cpu-only for the CPU half" >&2
    exit 2
  fi
  say "GPU (nvidia-smi)"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader
fi

say "install (uv)"
command -v uv >/dev/null 2>&1 || pip install -q uv==0.13.8
extra=()
[[ $cpu_only -eq 0 ]] && extra=(--extra gpu)
uv sync --frozen "${extra[@]}"
run=(uv run --frozen "${extra[@]}" python)  # every run with the same extra, as installed
"${run[@]}" -c "import tensorflow as tf; print('tensorflow', tf.__version__, 'sees', tf.config.list_physical_devices('GPU') or 'no GPU')" 2>/dev/null

mnist="${CVSWEEP_MNIST:-$repo/../shared/data/mnist.npz}"
data=()
[[ -f "$mnist" ]] && data=(--data "$mnist")
rm -rf "$out" && mkdir -p "$out"
status=0

if [[ $cpu_only -eq 0 ]]; then
  say "parity configs on the GPU"
  "${run[@]}" benchmarks/gpu_check.py parity "$out/gpu" || status=1
fi
say "parity configs on the CPU (CUDA_VISIBLE_DEVICES=-1)"
CUDA_VISIBLE_DEVICES=-1 "${run[@]}" benchmarks/gpu_check.py parity "$out/cpu" || status=1

if [[ $cpu_only -eq 0 ]]; then
  for config in full proxy; do
    say "compare $config: GPU -> CPU"
    # Exit 1 means the metrics differ: expected across devices; the lines say where and why.
    "${run[@]}" -m cvsweep compare "$out/gpu/$config/result.json" "$out/cpu/$config/result.json" || true
  done
  say "precision policies on the GPU (${data[*]:-digits})"
  "${run[@]}" benchmarks/gpu_check.py precision "$out/precision-gpu" "${data[@]}" || status=1
else
  say "precision policies on the CPU (${data[*]:-digits}; refused ones say why)"
  CUDA_VISIBLE_DEVICES=-1 "${run[@]}" benchmarks/gpu_check.py precision "$out/precision-cpu" "${data[@]}" \
    || status=1
fi

say "results in $out"
exit $status
