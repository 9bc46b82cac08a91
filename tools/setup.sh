#!/usr/bin/env bash
# Idempotent setup: .venv with pinned torch, the project (editable) and its extras.
# Run by `make demo` and `make test`; safe to run again (a stamp skips finished work).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do command -v "$c" >/dev/null 2>&1 && { PY=$c; break; }; done
fi
[ -n "$PY" ] || { echo "[setup] error: python3 not found; install Python 3.11" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python

stamp_input=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
stamp=.venv/.selfsup-setup
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_input" ] && "$VPY" -c "import selfsup, torch, timm, faiss" 2>/dev/null; then
  say "up to date"
  exit 0
fi

"$VPY" -m pip install -q --upgrade pip setuptools wheel

# torch: the pinned release (local wheels on the project's machines). A compatible torch already
# in the venv is kept; a bare `torch` requirement would pull a multi-GB build instead.
if "$VPY" -c "import torch, torchvision, sys; v=tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(0 if v >= (2, 1) else 1)" 2>/dev/null; then
  say "torch $("$VPY" -c 'import torch; print(torch.__version__)') already installed"
else
  say "installing torch==2.14.1 torchvision==0.29.1"
  "$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi

# FFCV needs Debian's headers to build; install them as root, otherwise carry on without FFCV.
debs="pkg-config libturbojpeg0-dev libopencv-dev"
missing=""
for d in $debs; do dpkg -s "$d" >/dev/null 2>&1 || missing="$missing $d"; done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian packages for FFCV:$missing"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
    || say "warning: apt-get failed; continuing without FFCV"
fi
missing=""
for d in $debs; do dpkg -s "$d" >/dev/null 2>&1 || missing="$missing $d"; done

say "installing selfsup (editable) with dev extras"
"$VPY" -m pip install -q -e ".[dev]"

if [ -z "$missing" ]; then
  if "$VPY" -c "import ffcv" 2>/dev/null; then
    say "ffcv already installed"
  else
    say "building ffcv 1.0.2 (a few minutes the first time)"
    "$VPY" -m pip install -q -e ".[dev,ffcv]" || say "warning: ffcv failed to build; the torchvision loader will be used"
  fi
else
  say "ffcv skipped: missing Debian packages:$missing (run as root: apt-get install$missing); the torchvision loader will be used"
fi

# GPU extra: faiss-gpu for the CUDA major version torch was built with, only where a GPU answers.
# Without one (CI, this project's CPU machines) nothing changes: faiss-cpu stays.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  cuda_major=$("$VPY" -c "import torch; v = torch.version.cuda; print(v.split('.')[0] if v else '')" 2>/dev/null || true)
  case "$cuda_major" in
    11 | 12) wheel="faiss-gpu-cu${cuda_major}>=1.8" ;;  # = the gpu / gpu-cu11 extras of pyproject.toml
    *) wheel="" ;;
  esac
  if [ -z "$cuda_major" ]; then
    say "warning: nvidia-smi works but torch is a CPU build; gpu extra skipped (faiss and torch stay on the CPU)"
  elif [ -z "$wheel" ]; then
    say "warning: no faiss-gpu wheel for CUDA $cuda_major; gpu extra skipped (exact search runs in torch on the GPU)"
  elif "$VPY" -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)" 2>/dev/null; then
    say "faiss-gpu already installed"
  else
    # faiss-cpu and faiss-gpu both provide the `faiss` module: swap one for the other, and reinstall
    # the GPU wheel's files last (pip may have rewritten them with faiss-cpu's above).
    say "GPU found (torch CUDA $cuda_major): installing the gpu extra ($wheel)"
    if "$VPY" -m pip install -q "$wheel" && "$VPY" -m pip uninstall -q -y faiss-cpu \
      && "$VPY" -m pip install -q --force-reinstall --no-deps "$wheel"; then
      "$VPY" -c "import faiss; print('[setup] faiss sees', faiss.get_num_gpus(), 'GPU(s)')" || true
    else
      say "warning: $wheel failed to install; keeping faiss-cpu (exact search runs in torch on the GPU)"
      "$VPY" -m pip install -q --force-reinstall --no-deps faiss-cpu >/dev/null 2>&1 || true
    fi
  fi
fi

echo "$stamp_input" > "$stamp"
say "done: $("$VPY" -c 'import torch, selfsup; print("selfsup", selfsup.__version__, "torch", torch.__version__)')"
