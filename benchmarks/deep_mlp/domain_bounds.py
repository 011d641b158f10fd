#!/usr/bin/env python
"""bab's ``domain_refine`` choices bounding the same open domains of a deep_mlp instance.

A ``crown`` search runs ``--branches`` branches from the root (as ``BabVerifier.decide`` starts
it); its open domains (the ``--domains`` lowest) are then bounded once by each choice, in one
batch, each on a fresh search from the same root. Printed per choice: CPU seconds of that batch,
the mean margin lower bound and the domains it closes, the per-domain difference to ``crown``,
and per refined ReLU node the mean width of the domains' bounds.

    PYTHONPATH=src .venv/bin/python benchmarks/deep_mlp/domain_bounds.py mnist_256x4 0.03 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vfbench.data import MlxtendSource
from vfbench.runtime import set_threads
from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.verifiers import VERIFIERS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import instances  # noqa: E402  (benchmarks/deep_mlp/run.py)

CHOICES = ("crown", "alpha")


def search_from_root(model, x, label, eps, options, budget=None):
    verifier = VERIFIERS["bab"](model, {"pgd_steps": 0, **options}, "cpu", name="bab")
    return verifier.root_search(x, label, eps, time.perf_counter() + 3600, budget)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("net")
    p.add_argument("eps", type=float)
    p.add_argument("image", type=int)
    p.add_argument("--branches", type=int, default=100)
    p.add_argument("--domains", type=int, default=64)
    args = p.parse_args()
    set_threads(1)
    (label,) = [int(t[3]) for t in instances() if t[:3] == (args.net, args.eps, args.image)]
    with tempfile.TemporaryDirectory() as cache:
        x_test = (MlxtendSource().fetch("mnist5k", Path(cache)).arrays["x_test"]
                  .astype(np.float32) / np.float32(255))
    model = load_onnx(HERE / "onnx" / f"{args.net}.onnx")
    x = torch.as_tensor(x_test[args.image]).reshape(1, *model.input_shape)
    search, roots = search_from_root(model, x, label, args.eps, {}, args.branches)
    status = search.run(roots)
    pool = sorted(search.pool)[:args.domains]
    print(f"{args.net} eps {args.eps} image {args.image}: crown search '{status}' after "
          f"{search.domains} branches, {len(pool)} open domains bounded")
    results = {}
    for choice in CHOICES:
        other, _ = search_from_root(model, x, label, args.eps, {"domain_refine": choice})
        other.bound(pool[:1], optimise=True)  # 0.3's first-call set-up, not timed
        start = time.process_time()
        lower, domains = other.bound(pool, optimise=True)
        cpu = time.process_time() - start
        closed = sum(float(v) > other.tol[d.spec] for v, d in zip(lower, pool, strict=True))
        results[choice] = (lower, domains)
        print(f"{choice}: {cpu:.2f} CPU s, batch of {other.domain_batch} parents per round, "
              f"mean lower bound {float(lower.mean()):.4f}, closed {closed}/{len(pool)}")
    base_lower, base_domains = results["crown"]
    for choice in CHOICES[1:]:
        lower, domains = results[choice]
        diff = lower - base_lower
        print(f"{choice} - crown per domain: min {float(diff.min()):.4f} mean "
              f"{float(diff.mean()):.4f} max {float(diff.max()):.4f}")
        for k in sorted({k for d in base_domains for k in d.refined}):
            widths = [np.mean([float((d.refined[k][1] - d.refined[k][0]).mean())
                               for d in ds if k in d.refined])
                      for ds in (base_domains, domains)]
            print(f"  ReLU node {k}: mean width crown {widths[0]:.4f}, {choice} {widths[1]:.4f}")


if __name__ == "__main__":
    main()
