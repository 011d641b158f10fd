#!/usr/bin/env python
"""Run verifiers on the deep-MLP benchmark: decided %, agreement with the references, cactus PNG.

Each variant is a verifier with options (JSON); the variants run back to back in one process, on
the same instances, so their times compare as ratios on a loaded machine. Per variant: verified /
falsified / open counts, decided %, disagreements with ``reference.csv`` (must be 0), and the
records in ``--out``/``<variant>.json``; one cactus plot (instances decided vs seconds) for all.

    .venv/bin/python benchmarks/deep_mlp/run.py --timeout 30 \\
        --variant before=bab --variant 'after=bab:{"branching": "fsb"}' --plot cactus.png

``--only`` restricts to instances named ``net:eps:image`` (e.g. ``mnist_256x6:0.05:3``).

``--clock cpu``: every timeout and time in the run is this process's CPU seconds
(``benchmarks/variants.py``; CBC's CPU seconds included).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from vfbench.data import MlxtendSource
from vfbench.io import atomic_path
from vfbench.runtime import set_threads
from vfbench.specs import read_images_csv
from vfbench.verify.records import read_jsonl
from vfbench.verify.shard import verify_shard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from variants import parse_variant, use_cpu_clock  # noqa: E402  (benchmarks/variants.py)

DECIDED = ("verified", "falsified")


def instances() -> list[tuple[str, float, int, int]]:
    """(net, eps, image, label) of instances.csv, in its order."""
    out = []
    with open(HERE / "instances.csv", newline="") as fh:
        for onnx, vnnlib, _ in csv.reader(fh):
            net = Path(onnx).stem
            folder = Path(vnnlib).parent.parent
            eps = float(folder.name.removeprefix("eps"))
            labels = {r["vnnlib"]: r["label"] for r in read_images_csv(HERE / folder /
                                                                        "images.csv")}
            image = int(Path(vnnlib).stem.removeprefix("img"))
            out.append((net, eps, image, labels[Path(vnnlib).name]))
    return out


def references() -> dict[tuple[str, float, int], str]:
    path = HERE / "reference.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {(r["net"], float(r["eps"]), int(r["image"])): r["verdict"]
                for r in csv.DictReader(fh) if r["verdict"] in DECIDED}


def run_variant(method: str, options: dict, todo, x_test, timeout: float, out: Path,
                name: str) -> list[dict]:
    records = []
    groups: dict[tuple[str, float], list] = {}
    for net, eps, image, label in todo:
        groups.setdefault((net, eps), []).append((image, x_test[image], label))
    for (net, eps), items in groups.items():
        journal = out / f"{name}-{net}-eps{eps}.jsonl"
        journal.unlink(missing_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = verify_shard(HERE / "onnx" / f"{net}.onnx", items, eps, method, options,
                               timeout, journal)
        records += [{**r, "net": net} for r in got]
    return records


def load_records(path: Path) -> list[dict]:
    """Records of one variant: its ``<variant>.json``, or a folder of its shard journals
    (``<variant>-<net>-eps<eps>.jsonl``, as far as a run got)."""
    if path.is_file():
        return json.loads(path.read_text())
    records = []
    for journal in sorted(path.glob("*.jsonl")):
        net = journal.stem.split("-")[1]
        records += [{**r, "net": net} for r in read_jsonl(journal)]
    return records


def summarise(name: str, records: list[dict], refs: dict) -> str:
    counts = {s: sum(r["status"] == s for r in records) for s in
              sorted({r["status"] for r in records})}
    decided = sum(r["status"] in DECIDED for r in records)
    wrong = [f"{r['net']}:{r['eps']}:{r['image']}" for r in records
             if r["status"] in DECIDED
             and refs.get((r["net"], r["eps"], r["image"]), r["status"]) != r["status"]]
    return (f"{name}: {counts} decided {decided}/{len(records)} "
            f"({100 * decided / max(1, len(records)):.1f}%)  "
            f"sum {sum(r['time_s'] for r in records):.0f} s  "
            f"disagreements with reference: {len(wrong)} {wrong}")


def cactus(results: dict[str, list[dict]], total: int, timeout: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, records in results.items():
        times = sorted(r["time_s"] for r in records if r["status"] in DECIDED)
        ax.step(range(1, len(times) + 1), times, where="post", label=f"{name} ({len(times)})")
    ax.set_xlabel(f"instances decided (of {total})")
    ax.set_ylabel("seconds per instance")
    ax.set_xlim(0, total)
    ax.set_ylim(0, timeout)
    ax.axvline(0.65 * total, color="grey", linestyle=":", label="65%")
    ax.legend()
    ax.set_title("deep_mlp: 784-256x4/x6-10, eps 0.03/0.05, 1 thread")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[],
                   help="NAME=METHOD[:JSON options], repeatable")
    p.add_argument("--summarise", nargs="+", default=None, metavar="NAME=PATH",
                   help="no run: summarise records (a variant's .json or journal folders; "
                        "NAME=PATH1,PATH2 joins several) on the instances all of them hold")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--only", nargs="*", default=None, help="net:eps:image instances")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = p.parse_args()
    if args.summarise:
        summarise_only(args)
        return
    if not args.variant:
        p.error("give --variant or --summarise")
    if args.clock == "cpu":
        use_cpu_clock()
    set_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        x_test = (MlxtendSource().fetch("mnist5k", Path(cache)).arrays["x_test"]
                  .astype(np.float32) / np.float32(255))
    todo = instances()
    if args.only:
        wanted = {(n, float(e), int(i)) for n, e, i in (s.split(":") for s in args.only)}
        todo = [t for t in todo if t[:3] in wanted]
    out = args.out or Path(tempfile.mkdtemp(prefix="deep_mlp-"))
    out.mkdir(parents=True, exist_ok=True)
    refs = references()
    results = {}
    for text in args.variant:
        name, method, options = parse_variant(text)
        start = time.time()
        records = run_variant(method, options, todo, x_test, args.timeout, out, name)
        wall = time.time() - start
        results[name] = records
        with atomic_path(out / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(records, default=str))
        print(f"{summarise(name, records, refs)}  wall {wall:.0f} s ({args.clock} clock; "
              f"load {os.getloadavg()[0]:.1f})", flush=True)
    if args.plot:
        cactus(results, len(todo), args.timeout, args.plot)
    print(f"records: {out}")


def summarise_only(args) -> None:
    variants = {}
    for text in args.summarise:
        name, _, paths = text.partition("=")
        variants[name] = [r for path in paths.split(",") for r in load_records(Path(path))]
    keys = [{(r["net"], float(r["eps"]), int(r["image"])) for r in records}
            for records in variants.values()]
    common = set.intersection(*keys)
    refs = references()
    results = {}
    for name, records in variants.items():
        results[name] = [r for r in records
                         if (r["net"], float(r["eps"]), int(r["image"])) in common]
        print(summarise(name, results[name], refs))
    print(f"{len(common)} instances held by every variant")
    if args.plot:
        cactus(results, len(common), args.timeout, args.plot)


if __name__ == "__main__":
    main()
