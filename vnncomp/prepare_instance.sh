#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 <category> <onnx> <vnnlib>. vfbench keeps nothing between
# instances and kills no process; this only checks the arguments and that the files exist.
set -euo pipefail
if [ "${1:-}" != "v1" ]; then echo "expected first argument 'v1', got '${1:-}'" >&2; exit 1; fi
if [ "$#" -ne 4 ]; then echo "usage: $0 v1 <category> <onnx> <vnnlib>" >&2; exit 1; fi
for f in "$3" "$4"; do
  if [ ! -f "$f" ]; then echo "$f: not found" >&2; exit 1; fi
done
