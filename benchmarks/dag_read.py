"""Time `snakemake -n` (reading the DAG: what every dry run and every cluster job's start pays) on
the default campaign, for one or more checkouts, runs interleaved so that load changes hit each
alike. Prints each run, then the median per checkout.

    .venv/bin/python benchmarks/dag_read.py --trees /path/to/old/checkout . --runs 3
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def dry_run_seconds(tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(tree / "Snakefile"), "-n",
                    "--cores", "1", "--quiet", "all"], cwd=tree, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trees", nargs="+", type=Path, default=[Path(".")],
                   help="checkouts to time (each with its Snakefile and src/)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    seconds: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    for run in range(args.runs):
        for tree in args.trees:
            seconds[tree].append(dry_run_seconds(tree.resolve()))
            load = os.getloadavg()[0]
            print(f"run {run + 1} {tree}: {seconds[tree][-1]:.2f} s (load {load:.1f})",
                  flush=True)
    for tree, values in seconds.items():
        print(f"median {tree}: {statistics.median(values):.2f} s over {len(values)} runs")


if __name__ == "__main__":
    main()
