#!/usr/bin/env bash
# The GPU check of issue 12: one JSON of GPU numbers, in under 8 minutes on one modern GPU.
#   tools/gpu_check.sh [OUT.json]        (default gpu_check.json; needs tools/setup.sh done)
# Steps (each bounded, each timed; a failing step records its error and the others still run):
#   1. training step img/s, ResNet-50, batch 256, 224 px, bf16 autocast + channels_last: MoCo v2
#      and SimCLR for selfsup and for lightly's model and loss (dev dependency), interleaved;
#      selfsup also in fp32, without channels_last, and compiled, so each option is measured;
#   2. the same selfsup steps with the Hallucinator and FT (overhead);
#   3. the FFCV loader at 224 px (synthetic 256 px JPEGs, all CPU cores) against the decode ceiling;
#   4. exact search at 1M x 128: faiss-gpu against a torch matmul + top-k on the GPU, IVF recall@10.
# Nothing is downloaded: data are synthetic, models are initialised randomly.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
out=${1:-gpu_check.json}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: no GPU answers nvidia-smi; run this on a machine with a CUDA GPU" >&2
  exit 2
fi
exec timeout 900 "$PY" tools/gpu_check.py --out "$out"
