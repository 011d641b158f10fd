#!/usr/bin/env python
"""Submission and status-check cost of a campaign of several hundred verification shards on a
SLURM cluster, through profiles/slurm with and without job arrays.

The campaign: NET1 (one epoch on MNIST-5k), CROWN, ``--shards`` test images, one image per shard.
Everything up to the shards runs first on this machine (profiles/local). Then, per mode, the
shards are submitted through profiles/slurm **held** (`sbatch --hold`, via the rule's
`slurm_extra`), so that no shard runs: what is measured is the executor's and slurmctld's own
cost, not the verification work (on the shared 2-core test machine the work of hundreds of jobs
would drown it). After ``--watch`` seconds of status checks Snakemake gets Ctrl-C and cancels
its jobs. Every sbatch / squeue / sacct / scancel call goes through a timing shim on PATH.

    sudo bash scripts/cluster/up.sh
    VFBENCH_SLURM_ACCOUNT=vfbench .venv/bin/python benchmarks/slurm_arrays.py --shards 300

Modes: ``array`` (the profile as it is: verify_shard as job arrays), ``individual`` (the same
profile with --slurm-array-jobs off: one sbatch per shard), ``individual-20/s`` (one sbatch per
shard at the profile's former rate limit of 20 submissions per second).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from tiny_campaign import tiny_campaign  # noqa: E402

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
MODEL = "mnist5k/net1/natural/none"
EPS = "0.01"
MODES = {
    "array": [],
    "individual": ["--slurm-array-jobs", ""],
    "individual-20/s": ["--slurm-array-jobs", "", "--max-jobs-per-timespan", "20/1s"],
}
SHIM = """#!/bin/bash
start=$EPOCHREALTIME
{real} "$@"
rc=$?
echo "{name} $start $EPOCHREALTIME $rc" >> {log}
exit $rc
"""


def make_shims(folder: Path, log: Path) -> None:
    """sbatch, squeue, sacct, scancel that log each call's start, end and exit status."""
    folder.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    for name in ("sbatch", "squeue", "sacct", "scancel"):
        real = shutil.which(name)
        if real is None:
            sys.exit(f"{name} not found: start a cluster (sudo bash scripts/cluster/up.sh)")
        shim = folder / name
        shim.write_text(SHIM.format(real=real, name=name, log=log))
        shim.chmod(0o755)


def calls(log: Path) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            name, start, end, _ = line.split()
            out.setdefault(name, []).append((float(start), float(end)))
    return out


def queued(run_name_hint: str) -> int:
    """Jobs (array tasks counted one by one) of this user in the queue."""
    out = subprocess.run(["squeue", "-h", "-r", "-u", os.environ.get("USER", "root"), "-o",
                          "%k"], capture_output=True, text=True, check=True).stdout
    return sum(run_name_hint in line for line in out.splitlines())


def measure(workdir: Path, mode: str, shards: int, watch_s: float) -> dict:
    log = workdir / f"calls-{mode.replace('/', '_')}.log"
    shims = workdir / f"shims-{mode.replace('/', '_')}"
    make_shims(shims, log)
    shutil.rmtree(workdir / "results/tiny/verify", ignore_errors=True)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}",
           "VFBENCH_SLURM_ACCOUNT": os.environ.get("VFBENCH_SLURM_ACCOUNT", "vfbench")}
    target = f"results/tiny/verify/{MODEL}/crown/eps{EPS}.parquet"
    cmd = [*SNAKEMAKE, "--profile", str(REPO / "profiles/slurm"), "--directory", str(workdir),
           f"--configfile={workdir / 'c.yaml'}", target, "--retries", "0",
           "--slurm-init-seconds-before-status-checks", "5",
           "--seconds-between-status-checks", "5",
           "--set-resources", "verify_shard:slurm_extra='--hold'", *MODES[mode]]
    output = open(workdir / f"snakemake-{mode.replace('/', '_')}.out", "w")
    start = time.time()
    # SIGINT as on a terminal, also when this script runs in the background (where the shell
    # starts it with SIGINT ignored, and Snakemake would then ignore the Ctrl-C below)
    run = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    hint = f"rule_verify_shard_wildcards_{MODEL.replace('/', '_')}"
    all_queued = None
    while time.time() - start < 600 and run.poll() is None:
        if all_queued is None and queued(hint) >= shards:
            all_queued = time.time()
        if all_queued is not None and time.time() - all_queued >= watch_s:
            break
        time.sleep(0.5)
    run.send_signal(signal.SIGINT)  # Snakemake cancels its SLURM jobs
    try:
        run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()
    end = time.time()
    left = queued(hint)
    by_name = calls(log)
    sbatch = by_name.get("sbatch", [])
    status = by_name.get("squeue", []) + by_name.get("sacct", [])
    scancel = by_name.get("scancel", [])
    return {
        "mode": mode,
        "all queued after s": None if all_queued is None else all_queued - start,
        "sbatch calls": len(sbatch),
        "sbatch s (sum)": sum(e - s for s, e in sbatch),
        "submission span s": (max(e for _, e in sbatch) - min(s for s, _ in sbatch))
        if sbatch else None,
        "status calls": len(status),
        "status s (mean per call)": statistics.fmean(e - s for s, e in status) if status else None,
        "scancel s (sum)": sum(e - s for s, e in scancel),
        "cancel to exit s": end - (all_queued or start) - watch_s if all_queued else None,
        "jobs left in queue": left,
    }


def prepare(workdir: Path, shards: int) -> None:
    """The campaign up to its shards (ONNX, specs), on this machine."""
    config = tiny_campaign(images=shards, shard_size=1, eps=float(EPS))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/tiny/onnx/{MODEL}.onnx", f"results/tiny/specs/mnist5k/eps{EPS}/images.csv"]
    subprocess.run([*SNAKEMAKE, *targets, "--profile", str(REPO / "profiles/local"), "--cores",
                    "1", "--directory", str(workdir), f"--configfile={workdir / 'c.yaml'}"],
                   check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=300)
    p.add_argument("--watch", type=float, default=30.0,
                   help="seconds of status checks after every shard is queued")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vfbench-arrays-"))
    prepare(workdir, args.shards)
    load = os.getloadavg()
    print(f"{args.shards} shards, workdir {workdir}, load average {load[0]:.1f}")
    rows = [measure(workdir, mode, args.shards, args.watch) for mode in args.modes]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v)
                                for v in row.values()) + " |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
