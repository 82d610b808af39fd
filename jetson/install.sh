#!/usr/bin/env bash
# Install the orin-unlearn runtime on a Jetson (JetPack 6.x, Python 3.10) from this repository.
#
#   jetson/install.sh [--venv DIR] [--python PATH] [--ort-gpu-index URL] [--no-pycuda] [--dry-run]
#
# Steps (--dry-run prints them and changes nothing):
#   1. a venv at DIR (default /opt/orin-unlearn/venv) made by JetPack's /usr/bin/python3 with
#      --system-site-packages: JetPack installs TensorRT's Python bindings (python3-libnvinfer)
#      into the system Python 3.10, and no pip wheel replaces them on a Jetson;
#   2. this repository with the [serve,bench] extras: the runtime (numpy, tokenizers, onnxruntime,
#      onnx, pyyaml, rich, safetensors), fastapi / uvicorn for the kiosk and matplotlib for the
#      benchmark plots. No torch, no training stack;
#   3. with --ort-gpu-index URL: onnxruntime-gpu in place of the CPU onnxruntime from PyPI. PyPI has
#      no onnxruntime-gpu wheels for the Jetson (aarch64 + CUDA 12.6); NVIDIA's Jetson AI Lab index
#      has them, e.g. --ort-gpu-index https://pypi.jetson-ai-lab.io/jp6/cu126 (see jetson/README.md);
#   4. pycuda (the TensorRT backend's CUDA calls), which JetPack does not ship: pip builds it from
#      source against /usr/local/cuda, so nvcc and the Python headers (python3-dev) must be there;
#      skipped when it already imports, or with --no-pycuda (onnxruntime-only installs);
#   5. `orin-unlearn jetson preflight`, which says what is still missing.
#
# DIR's parent must be writable: sudo mkdir -p /opt/orin-unlearn && sudo chown "$USER" /opt/orin-unlearn
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=/opt/orin-unlearn/venv
PYTHON=/usr/bin/python3
ORT_GPU_INDEX=""
PYCUDA=1
DRY_RUN=0
CUDA_HOME=/usr/local/cuda

usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

# Print a command, then run it unless this is a dry run.
run() {
    echo "+ $*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
        --ort-gpu-index) ORT_GPU_INDEX="${2:?--ort-gpu-index needs a URL}"; shift 2 ;;
        --no-pycuda) PYCUDA=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

[ -f "$REPO/setup.py" ] || die "$REPO is not the orin-unlearn repository (no setup.py)"
command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter at $PYTHON"
version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$version" != "3.10" ]; then
    echo "warning: $PYTHON is Python $version; JetPack 6's TensorRT bindings are built for 3.10" >&2
fi
if [ "$DRY_RUN" -eq 0 ]; then
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "venv is missing: sudo apt install python3-venv"
    parent="$(dirname "$VENV")"
    mkdir -p "$parent" 2>/dev/null || true
    [ -w "$parent" ] || die "$parent is not writable: sudo mkdir -p $parent && sudo chown $USER $parent"
fi

echo "# 1. venv at $VENV (sees the system site-packages: TensorRT from JetPack)"
run "$PYTHON" -m venv --system-site-packages "$VENV"
run "$VENV/bin/python" -m pip install --upgrade pip

echo "# 2. orin-unlearn with the [serve,bench] extras"
run "$VENV/bin/python" -m pip install "${REPO}[serve,bench]"

if [ -n "$ORT_GPU_INDEX" ]; then
    echo "# 3. onnxruntime-gpu from $ORT_GPU_INDEX"
    run "$VENV/bin/python" -m pip uninstall --yes onnxruntime
    run "$VENV/bin/python" -m pip install --extra-index-url "$ORT_GPU_INDEX" onnxruntime-gpu
else
    echo "# 3. onnxruntime: the CPU build from PyPI (--ort-gpu-index URL for the GPU build)"
fi

if [ "$PYCUDA" -eq 1 ]; then
    echo "# 4. pycuda, built against $CUDA_HOME"
    if [ "$DRY_RUN" -eq 0 ] && "$VENV/bin/python" -c 'import pycuda' 2>/dev/null; then
        echo "pycuda already imports"
    else
        run env PATH="$CUDA_HOME/bin:$PATH" CUDA_ROOT="$CUDA_HOME" "$VENV/bin/python" -m pip install pycuda
    fi
else
    echo "# 4. pycuda skipped (--no-pycuda): the TensorRT backend will not load"
fi

echo "# 5. preflight"
status=0
run "$VENV/bin/orin-unlearn" jetson preflight --path "$(dirname "$VENV")" || status=$?
if [ "$DRY_RUN" -eq 1 ]; then
    echo "dry run: nothing was changed"
    exit 0
fi
case "$status" in
    0) echo "installed; this Jetson is ready" ;;
    5) echo "installed, but this machine is not a Jetson (preflight exit status 5)" ;;
    *) echo "installed; preflight lists what is still missing (exit status $status)" ;;
esac
