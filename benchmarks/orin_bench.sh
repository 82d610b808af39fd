#!/usr/bin/env bash
# The on-device benchmark: run it on the Jetson after unpacking a run's bundle.
#
#   benchmarks/orin_bench.sh RUN_DIR [--stage export/onnx-fp16] [--quick] [--no-engine] [--dry-run]
#
# Steps (each an `orin-unlearn` command; --dry-run prints them and runs nothing):
#   1. preflight: module, JetPack, CUDA, TensorRT, memory, power mode. On a machine that is not a
#      Jetson (exit 5) the script goes on with onnxruntime only and says so; on a Jetson with
#      something missing (exit 1) it stops, since the figures would not be the device's;
#   2. the TensorRT engine, built from STAGE's graph into RUN_DIR/engine when there is none yet and
#      TensorRT is there (the timing cache is kept between builds);
#   3. quality of every stage found in RUN_DIR (forget leak, retain, neighbour, perplexity), the
#      engine included: the quantised or compiled artifact must still forget on the device;
#   4. latency over prompt x output lengths on the engine (else STAGE), with tegrastats power and
#      tokens per joule where tegrastats is;
#   5. report: RUN_DIR/report.md and the plots, rebuilt from the saved JSON.
#
# Pack the run on the workstation with its adapter (it names the concept and the held-out prompts):
#   orin-unlearn bundle runs/demo --out kiosk.tar     (default stages: adapter, export/onnx-fp16)
set -euo pipefail

STAGE=export/onnx-fp16
QUICK=0
ENGINE=1
DRY_RUN=0
RUN_DIR=""

usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

step() {
    echo "+ $*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) STAGE="${2:?--stage needs a stage folder, e.g. export/onnx-fp16}"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-engine) ENGINE=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; echo "unknown option: $1" >&2; exit 2 ;;
        *) RUN_DIR="$1"; shift ;;
    esac
done

[ -n "$RUN_DIR" ] || { usage >&2; exit 2; }
[ -f "$RUN_DIR/$STAGE/model.onnx" ] || { echo "orin_bench.sh: no $RUN_DIR/$STAGE/model.onnx" >&2; exit 2; }
command -v orin-unlearn >/dev/null || { echo "orin_bench.sh: orin-unlearn is not on PATH (activate the venv)" >&2; exit 2; }

preflight=0
step orin-unlearn jetson preflight || preflight=$?
case "$preflight" in
    0) ;;
    5) echo "orin_bench.sh: not a Jetson: no engine build and no power figures; measuring with onnxruntime" ;;
    *) echo "orin_bench.sh: preflight found problems (above); fix them, then run again" >&2; exit 1 ;;
esac

if [ "$ENGINE" -eq 1 ] && [ "$preflight" -eq 0 ] && [ ! -f "$RUN_DIR/engine/manifest.json" ]; then
    step orin-unlearn export engine --onnx "$RUN_DIR/$STAGE/model.onnx" --out "$RUN_DIR/engine"
fi

quality_args=()
latency_args=(--prompts "32,128,384" --outputs "16,64" --repeats 5)
if [ "$QUICK" -eq 1 ]; then
    quality_args=(--max-prompts 40)
    latency_args=(--prompts 32 --outputs 16 --repeats 2 --warmup 1)
fi
step orin-unlearn bench quality --run "$RUN_DIR" "${quality_args[@]}"

model="$RUN_DIR/$STAGE"
if [ -f "$RUN_DIR/engine/manifest.json" ]; then
    model="$RUN_DIR/engine"
fi
step orin-unlearn bench latency --model "$model" --out "$RUN_DIR/bench" "${latency_args[@]}"
step orin-unlearn report "$RUN_DIR"
