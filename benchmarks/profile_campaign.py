#!/usr/bin/env python
"""Where a campaign's time goes: per rule, jobs, wall and CPU seconds, and how much of it is
interpreter start-up + imports.

Runs the campaign (default: config/config.yaml, the demo campaign of `make run`) through the real
Snakefile with profiles/local in a fresh folder, with a `sitecustomize` on PYTHONPATH that makes
every Python process of the run (Snakemake itself and each job's script) append one JSON line
when it exits: its script, wall seconds, CPU seconds (user + sys, threads included) and seconds
(wall and CPU) spent in top-level `import` statements (torch, auto_LiRPA, onnxruntime, ... and
vfbench's own modules). Interpreter start-up before site-packages load is measured apart
(`python -c pass`).

    .venv/bin/python benchmarks/profile_campaign.py --cores 2
    .venv/bin/python benchmarks/profile_campaign.py --cores 2 --set verify.images=40 \\
        --set verify.shard_size=10        # a smaller variant of the same campaign

Prints a markdown table (rule, jobs, wall s, CPU s, import s, import share) and the whole run's
wall and CPU seconds; the raw lines stay in ``--workdir``/profile.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = '''
import atexit, builtins, json, os, sys, time
_start = time.perf_counter()
_import_s = 0.0
_import_cpu_s = 0.0
_depth = 0
_import = builtins.__import__


def _timed_import(*args, **kwargs):
    global _import_s, _import_cpu_s, _depth
    if _depth:
        return _import(*args, **kwargs)
    _depth = 1
    began, began_cpu = time.perf_counter(), time.process_time()
    try:
        return _import(*args, **kwargs)
    finally:
        _import_s += time.perf_counter() - began
        _import_cpu_s += time.process_time() - began_cpu
        _depth = 0


builtins.__import__ = _timed_import


def _report():
    t = os.times()
    line = json.dumps({"argv": sys.argv[:2], "wall_s": time.perf_counter() - _start,
                       "cpu_s": t.user + t.system, "import_s": _import_s,
                       "import_cpu_s": _import_cpu_s}) + "\\n"
    fd = os.open(os.environ["VFBENCH_PROFILE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, line.encode())
    os.close(fd)


atexit.register(_report)
'''


def set_key(config: dict, assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the nested config."""
    key, _, value = assignment.partition("=")
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = yaml.safe_load(value)


def rule_of(argv: list[str]) -> str:
    first = Path(argv[0]).name if argv else "?"
    if first.endswith(".py") and Path(argv[0]).parent.name == "scripts":
        return first.removesuffix(".py")
    if "snakemake" in " ".join(argv):
        return "(snakemake main process)"
    return f"(other: {first})"


def startup_seconds(python: str, code: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([python, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        best = min(best, time.perf_counter() - began)
    return best


def summarise(log: Path) -> dict[str, dict[str, float]]:
    """Per rule (script) of the processes that finished: jobs, wall, CPU and import seconds."""
    rows: dict[str, dict[str, float]] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        row = rows.setdefault(rule_of(record["argv"]),
                              {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "import_s": 0.0,
                               "import_cpu_s": 0.0})
        row["jobs"] += 1
        for key in ("wall_s", "cpu_s", "import_s", "import_cpu_s"):
            row[key] += record.get(key, float("nan"))
    return rows


def print_table(rows: dict[str, dict[str, float]]) -> None:
    print("| rule | jobs | wall s | CPU s | imports wall s | imports CPU s | imports / wall |")
    print("|---|---|---|---|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["wall_s"]):
        print(f"| {name} | {row['jobs']} | {row['wall_s']:.0f} | {row['cpu_s']:.0f} | "
              f"{row['import_s']:.0f} | {row['import_cpu_s']:.0f} | "
              f"{row['import_s'] / max(row['wall_s'], 1e-9):.0%} |")
    jobs = [r for name, r in rows.items() if not name.startswith("(")]
    print(f"| all job scripts | {sum(r['jobs'] for r in jobs)} | "
          f"{sum(r['wall_s'] for r in jobs):.0f} | {sum(r['cpu_s'] for r in jobs):.0f} | "
          f"{sum(r['import_s'] for r in jobs):.0f} | "
          f"{sum(r['import_cpu_s'] for r in jobs):.0f} | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config key, e.g. verify.images=40 (repeatable)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--report-only", action="store_true",
                   help="only summarise --workdir's profile.jsonl (e.g. of a run still going)")
    args = p.parse_args()
    if args.report_only:
        print_table(summarise(args.workdir / "profile.jsonl"))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vfbench-profile-"))
    hook = workdir / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    config = yaml.safe_load(args.config.read_text())
    for assignment in args.set:
        set_key(config, assignment)
    (workdir / "c.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = workdir / "profile.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "VFBENCH_PROFILE_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(hook), str(REPO / "src")])}
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    before = os.times()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                    "--profile", str(REPO / "profiles/local"), "--cores", str(args.cores),
                    "--directory", str(workdir), f"--configfile={workdir / 'c.yaml'}"],
                   env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=open(workdir / "snakemake.log", "w"))
    wall = time.perf_counter() - began
    after = os.times()
    cpu = (after.children_user + after.children_system
           - before.children_user - before.children_system)
    bare = startup_seconds(sys.executable, "pass")
    heavy = startup_seconds(sys.executable, "import torch, vfbench.verify.verifiers")
    print(f"campaign {config['campaign']} ({args.config.name}"
          f"{', ' + ', '.join(args.set) if args.set else ''}), --cores {args.cores}")
    print(f"whole run: {wall:.0f} s wall, {cpu:.0f} s CPU (all processes); load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print_table(summarise(log))
    print(f"\ninterpreter start-up: `python -c pass` {bare:.2f} s; "
          f"`python -c 'import torch, vfbench.verify.verifiers'` {heavy:.2f} s "
          f"(best of 3, this machine now)")
    print(f"raw: {log}")


if __name__ == "__main__":
    main()
