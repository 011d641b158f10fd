#!/usr/bin/env python
"""Branch and bound: domains bounded per call (``domain_batch``: domains split per round; their
children, twice as many, are bounded in one beta-CROWN call) against domains per second and
seconds per instance.

A model trained 2 epochs on MNIST-5k (benchmarks/verify.py's recipe), the first ``--images``
test images at ``--eps``, bab with PGD off (so branch and bound decides every instance), one
``verify_shard`` per batch size. Printed as a markdown table; rows over instances that branched.

    .venv/bin/python benchmarks/bab_batch.py --model cnn_4layer --eps 0.05 --images 10 \\
        --batch-sizes 8 32 128 512
    .venv/bin/python benchmarks/bab_batch.py --device cuda --batch-sizes 64 256 1024 4096
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify import mnist5k, train  # noqa: E402  (benchmarks/verify.py)

from vfbench.export import export_onnx  # noqa: E402
from vfbench.runtime import describe_device, resolve_device, set_threads  # noqa: E402
from vfbench.verify.shard import verify_shard  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn_4layer")
    p.add_argument("--eps", type=float, default=0.05)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128, 512])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    set_threads(args.threads)
    device = resolve_device(args.device)
    data = mnist5k()
    model, accuracy = train(args.model, data, args.epochs, seed=0)
    out = Path(tempfile.mkdtemp(prefix="vfbench-bab-batch-"))
    onnx = out / "model.onnx"
    export_onnx(model, onnx, torch.from_numpy(data["x_test"][:8]).float() / 255)
    instances = [(i, data["x_test"][i].astype(np.float32) / np.float32(255),
                  int(data["y_test"][i])) for i in range(args.images)]
    print(f"{args.model} (test accuracy {accuracy:.3f}), eps {args.eps}, {args.images} images, "
          f"timeout {args.timeout:g} s, {describe_device(device)}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| domain_batch | decided | timeout/unknown | branched | domains | domains/s "
          "| mean s per instance | median s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        journal = out / f"b{batch}.jsonl"
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = verify_shard(onnx, instances, args.eps, "bab",
                                   {"domain_batch": batch, "pgd_steps": 0}, args.timeout,
                                   journal, device)
        wall = time.perf_counter() - began
        tried = [r for r in records if r["status"] != "misclassified"]
        branched = [r for r in tried if (r["domains"] or 0) > 0]
        domains = sum(r["domains"] for r in branched)
        seconds = sum(r["time_s"] for r in branched)
        times = [r["time_s"] for r in tried]
        decided = sum(r["status"] in ("verified", "falsified") for r in tried)
        print(f"| {batch} | {decided} | {len(tried) - decided} | {len(branched)} | {domains} | "
              f"{domains / seconds if seconds else 0:.0f} | {statistics.fmean(times):.2f} | "
              f"{statistics.median(times):.2f} | {wall:.0f} |", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = (f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
             if device.type == "cuda" else "")
    print(f"\npeak RSS {peak:.0f} MiB{extra}")


if __name__ == "__main__":
    main()
