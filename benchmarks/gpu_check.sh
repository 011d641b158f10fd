#!/usr/bin/env bash
# GPU readiness of vfbench in one call on a GPU machine (written for one H200, 16 cores, no
# network): the tests marked `gpu`, the verification benchmark on CUDA, the branch-and-bound
# batch sweep on CUDA, and a tiny campaign end to end with `device: cuda`. Figures and logs go
# to $OUT/gpu_check/ (or benchmarks/gpu_check/ without $OUT): report.md is the summary.
#
#   bash benchmarks/gpu_check.sh                  # the venv's python: $VFBENCH_PYTHON, .venv, python3
#   VFBENCH_PYTHON=/opt/venv/bin/python bash benchmarks/gpu_check.sh
#
# It installs nothing (the machine may have no network): where torch has no CUDA it writes the
# pip command that would install the pinned CUDA build into the report, and exits 77 (skipped).
# Exit status: 0 every step passed; 1 a step failed (see its log); 77 no CUDA here.
# Each step has its own time limit (all together at most 11 minutes; typically a few): a step
# over its limit is reported as failed and the next one runs; report.md grows as steps finish.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
DEST=${OUT:-$REPO/benchmarks}/gpu_check
mkdir -p "$DEST"
REPORT=$DEST/report.md
TORCH_VERSION=$(sed -n 's/.*"torch==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
CUDA_INDEX=${VFBENCH_TORCH_INDEX:-https://download.pytorch.org/whl/cu126}

if [[ -n ${VFBENCH_PYTHON:-} ]]; then PY=$VFBENCH_PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=$(command -v python3 || true)
fi
export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

report() { echo "$*" | tee -a "$REPORT"; }
: >"$REPORT"
report "# vfbench GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname)"
report ""

install_hint() {
    report "Install the pinned CUDA build into this environment (needs network), then rerun:"
    report ""
    report "    $PY -m pip install torch==$TORCH_VERSION --index-url $CUDA_INDEX"
    report ""
    report "(or build the venv with: make venv TORCH_INDEX=$CUDA_INDEX)"
}

# torch build, CUDA runtime, device: one line of key=value (empty: no python with torch)
PROBE=""
if [[ -n $PY ]]; then
    PROBE=$("$PY" - 2>/dev/null <<'EOF'
import torch
ok = torch.version.cuda is not None and torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if ok else "-"
mem = f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f}" if ok else "-"
print(f"torch={torch.__version__} cuda={torch.version.cuda} available={ok} "
      f"device={name.replace(' ', '_')} memory_gib={mem}")
EOF
)
fi
if [[ $PROBE != torch=* ]]; then
    report "SKIPPED: no python with torch (tried \$VFBENCH_PYTHON, .venv/bin/python, python3: ${PY:-none})."
    install_hint
    exit 77
fi
report "environment: python $PY; $PROBE; $(nproc) CPUs"
if command -v nvidia-smi >/dev/null; then
    report "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
else
    report "nvidia-smi: not found"
fi
report ""
if [[ $PROBE != *"available=True"* ]]; then
    if [[ $PROBE == *"cuda=None"* ]]; then
        report "SKIPPED: torch is a CPU-only build."
        install_hint
    else
        report "SKIPPED: torch has CUDA but sees no device (driver? CUDA_VISIBLE_DEVICES?)."
    fi
    exit 77
fi

FAILED=()
# step NAME LIMIT_S CMD...: runs CMD with a time limit, its output in $DEST/NAME.log
step() {
    local name=$1 limit=$2 start end rc
    shift 2
    start=$(date +%s.%N)
    timeout "$limit" "$@" >"$DEST/$name.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", b - a}')
    if [[ $rc -eq 0 ]]; then
        report "- $name: passed in $secs s"
    else
        report "- $name: FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", over ${limit} s")) in $secs s; log: $name.log"
        FAILED+=("$name")
    fi
    return $rc
}

report "## Steps"
report ""
step gpu_tests 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs tests/unit
tail -3 "$DEST/gpu_tests.log" | sed 's/^/    /' | tee -a "$REPORT"

step verify_cuda 180 "$PY" benchmarks/verify.py --device cuda --threads 4 \
    --models net1 cnn_4layer --eps 0.02 0.05 --images 10 --timeout 30 --verifiers bab crown \
    --out "$DEST/verify_cuda"
grep -E "^\s+eps|^[a-z_0-9]+: trained" "$DEST/verify_cuda.log" | sed 's/^/    /' | tee -a "$REPORT"

step bab_batch_cuda 150 "$PY" benchmarks/bab_batch.py --device cuda --threads 4 \
    --batch-sizes 64 256 1024 4096 --images 4 --timeout 8
grep "^|" "$DEST/bab_batch_cuda.log" | tee -a "$REPORT"

# A tiny campaign through the real Snakefile with device: cuda, one verification shard per verifier.
CAMPAIGN=$DEST/campaign
rm -rf "$CAMPAIGN"; mkdir -p "$CAMPAIGN"
"$PY" - "$CAMPAIGN/c.yaml" <<'EOF'
import sys
import yaml
sys.path.insert(0, "tests")
from tiny_campaign import tiny_campaign
config = tiny_campaign(images=10, shard_size=5)
config["device"] = "cuda"
config["verify"]["verifiers"] = {"crown": {"method": "crown"}, "bab": {"method": "bab"}}
open(sys.argv[1], "w").write(yaml.safe_dump(config))
EOF
step campaign_cuda 150 "$PY" -m snakemake -s Snakefile --profile profiles/local --cores 4 \
    --directory "$CAMPAIGN" --configfile="$CAMPAIGN/c.yaml"
if [[ -f $CAMPAIGN/results/tiny/tables/summary.md ]]; then
    "$PY" - "$CAMPAIGN/results/tiny" <<'EOF' | tee -a "$REPORT"
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
base = json.loads(next(root.glob("models/**/base.json")).read_text())
print(f"    training device: {base.get('metrics', base).get('device', '?')}")
for path in sorted(root.glob("verify/**/*.parquet")):
    import pandas as pd
    frame = pd.read_parquet(path)
    print(f"    {path.relative_to(root)}: {frame['status'].value_counts().to_dict()}, "
          f"mean {frame['time_s'].mean():.3f} s/image")
EOF
    sed 's/^/    /' "$CAMPAIGN/results/tiny/tables/summary.md" | tee -a "$REPORT"
fi

report ""
if [[ ${#FAILED[@]} -gt 0 ]]; then
    report "FAILED steps: ${FAILED[*]} (logs in $DEST)"
    exit 1
fi
report "All steps passed. Figures: $REPORT"
