#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1 -- create vfbench's environment (.venv at the repository root).
set -euo pipefail
if [ "${1:-}" != "v1" ]; then echo "expected first argument 'v1', got '${1:-}'" >&2; exit 1; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
make -C "$ROOT" venv
