#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout_s>
# Runs `vfbench verify` with the verifier $VFBENCH_VERIFIER (default bab) and the Python
# $VFBENCH_PYTHON (default: the repository's .venv). On failure the result file says `error`
# and the exit status is non-zero.
set -uo pipefail
if [ "${1:-}" != "v1" ]; then echo "expected first argument 'v1', got '${1:-}'" >&2; exit 1; fi
if [ "$#" -ne 6 ]; then
  echo "usage: $0 v1 <category> <onnx> <vnnlib> <result_file> <timeout_s>" >&2; exit 1
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${VFBENCH_PYTHON:-$ROOT/.venv/bin/python}"
"$PYTHON" -m vfbench.cli verify --onnx "$3" --vnnlib "$4" --timeout "$6" \
  --verifier "${VFBENCH_VERIFIER:-bab}" --result "$5"
status=$?
if [ "$status" -ne 0 ]; then echo error > "$5"; fi
exit "$status"
