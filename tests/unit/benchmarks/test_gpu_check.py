"""benchmarks/gpu_check.sh where it cannot run (no CUDA, no torch): a clear report with the
install command it would need, exit status 77 (skipped), nothing else attempted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def run_check(tmp_path: Path, python: str) -> tuple[subprocess.CompletedProcess, str]:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OUT": str(tmp_path), "VFBENCH_PYTHON": python})
    return result, (tmp_path / "gpu_check" / "report.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the script would run")
def test_without_cuda_it_reports_the_install_command_and_exits_77(tmp_path):
    result, report = run_check(tmp_path, sys.executable)
    assert result.returncode == 77, result.stdout + result.stderr
    assert "SKIPPED" in report and f"torch={torch.__version__}" in report
    if torch.version.cuda is None:
        assert "torch is a CPU-only build" in report
        assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu" in report
    assert "## Steps" not in report  # no step started
    assert report in result.stdout  # the report is also what it prints


def test_without_torch_it_says_so(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    result, report = run_check(tmp_path, str(fake))
    assert result.returncode == 77
    assert "no python with torch" in report and "pip install torch==" in report


FAKE_CUDA_PYTHON = """#!/bin/sh
# A python that claims CUDA: answers the probe, logs every other call; {fail} fails.
if [ "$1" = "-" ]; then
    cat >/dev/null
    echo "torch=2.13.0+cu126 cuda=12.6 available=True device=FAKE_GPU memory_gib=139"
    exit 0
fi
echo "$@" >> "{log}"
case "$*" in *{fail}*) exit 3 ;; esac
exit 0
"""


@pytest.mark.parametrize("fail", ["nothing-fails", "benchmarks/verify.py"])
def test_with_cuda_every_step_runs_and_is_reported(tmp_path, fail):
    """The steps' wiring, with a stand-in python (nothing real runs): each step is called with
    CUDA, reported, and a failing one makes the script fail and name it."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(FAKE_CUDA_PYTHON.format(log=log, fail=fail))
    fake.chmod(0o755)
    result, report = run_check(tmp_path, str(fake))
    calls = log.read_text()
    assert "-m pytest -m gpu" in calls
    assert "benchmarks/verify.py --device cuda" in calls
    assert "benchmarks/bab_batch.py --device cuda" in calls
    assert "-m snakemake -s Snakefile --profile profiles/local" in calls
    steps = ("gpu_tests", "verify_cuda", "bab_batch_cuda", "campaign_cuda")
    if fail == "nothing-fails":
        assert result.returncode == 0, report
        assert all(f"- {step}: passed" in report for step in steps), report
        assert "All steps passed" in report
    else:
        assert result.returncode == 1, report
        assert "- verify_cuda: FAILED (exit 3)" in report
        assert "FAILED steps: verify_cuda" in report
