#!/usr/bin/env python
"""How verification cost grows with the model: seconds per image and peak memory of crown,
alpha_crown and bab on NET1, M1 (cnn_4layer), conv_big (MNIST), CNN-B and ResNet-4B (CIFAR).

MNIST models are trained ``--epochs`` on MNIST-5k (benchmarks/verify.py's recipe), BN folded;
the CIFAR models are **untrained** (random initialisation, no CIFAR download here), verified on
random images in [0, 1] labelled with the model's own prediction: their timings show the cost
of the bound computations, not verified accuracy. Each (model, verifier) runs in a fresh
process, so its peak RSS is its own (it includes ~0.4 GB of torch + auto_LiRPA + onnxruntime;
the `import only` row gives that baseline).

    .venv/bin/python benchmarks/model_size.py --images 3 --timeout 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

MNIST_MODELS = ("net1", "cnn_4layer", "conv_big")
CIFAR_MODELS = ("cnn_b", "resnet4b")
CIFAR = {"input_shape": (3, 32, 32), "num_classes": 10, "mean": (0.4914, 0.4822, 0.4465),
         "std": (0.2471, 0.2435, 0.2616)}
VERIFIERS = ("crown", "alpha_crown", "bab")


def prepare(arch: str, folder: Path, epochs: int, images: int) -> tuple[Path, Path]:
    """The model's ONNX file and an .npz of (x, labels) to verify."""
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from verify import mnist5k, train

    from vfbench.export import export_onnx
    from vfbench.fold import fold_batchnorm
    from vfbench.models import build_model

    if arch in MNIST_MODELS:
        data = mnist5k()
        model, _ = train(arch, data, epochs, seed=0)
        x = data["x_test"][:images].astype(np.float32) / np.float32(255)
        labels = data["y_test"][:images].astype(np.int64)
    else:
        torch.manual_seed(0)
        model, _ = fold_batchnorm(build_model(arch, **CIFAR).eval())
        x = torch.rand((images, *CIFAR["input_shape"]), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            labels = model(x).argmax(1).numpy()
        x = x.numpy()
    onnx = folder / f"{arch}.onnx"
    export_onnx(model, onnx, torch.from_numpy(x[:2]))
    points = folder / f"{arch}.npz"
    np.savez(points, x=x, labels=labels)
    return onnx, points


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not carried over from the
    process that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(onnx: str, points: str, verifier: str, eps: float, timeout: float) -> dict:
    """In this (fresh) process: verify the points, return timings and peak RSS."""
    import numpy as np

    from vfbench.runtime import set_threads
    from vfbench.verify.shard import verify_shard

    set_threads(1)
    rss_import = peak_rss_mb()
    data = np.load(points)
    instances = [(i, data["x"][i], int(data["labels"][i])) for i in range(len(data["x"]))]
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = verify_shard(onnx, instances, eps, verifier, {}, timeout,
                               Path(tempfile.mkdtemp()) / "j.jsonl")
    times = [r["time_s"] for r in records if r["status"] != "misclassified"]
    statuses = [r["status"] for r in records]
    return {"mean_s": statistics.fmean(times) if times else None,
            "max_s": max(times) if times else None,
            "wall_s": time.perf_counter() - began,
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
            "peak_rss_mb": peak_rss_mb(),
            "import_rss_mb": rss_import,
            "n_relu": records[0].get("n_relu")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[*MNIST_MODELS, *CIFAR_MODELS])
    p.add_argument("--verifiers", nargs="+", default=list(VERIFIERS))
    p.add_argument("--mnist-eps", type=float, nargs="+", default=[0.02])
    p.add_argument("--cifar-eps", type=float, nargs="+", default=[2 / 255])
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--one", nargs=5, metavar=("ONNX", "POINTS", "VERIFIER", "EPS", "TIMEOUT"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        onnx, points, verifier, eps, timeout = args.one
        print(json.dumps(run_one(onnx, points, verifier, float(eps), float(timeout))))
        return

    from vfbench.runtime import set_threads

    set_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="vfbench-model-size-"))
    print(f"{args.images} images per (model, eps, verifier), timeout {args.timeout:g} s, 1 thread, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| model | eps | verifier | ReLUs | mean s/image | max s | verdicts | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in args.models:
        onnx, points = prepare(arch, folder, args.epochs, args.images)
        for eps in args.mnist_eps if arch in MNIST_MODELS else args.cifar_eps:
            for verifier in args.verifiers:
                result = subprocess.run(
                    [sys.executable, __file__, "--one", str(onnx), str(points), verifier,
                     str(eps), str(args.timeout)],
                    capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                if result.returncode != 0:
                    print(f"| {arch} | {eps:.4g} | {verifier} | failed: "
                          f"{result.stderr.strip().splitlines()[-1][:120]} |||||", flush=True)
                    continue
                row = json.loads(result.stdout.strip().splitlines()[-1])
                mean = "-" if row["mean_s"] is None else f"{row['mean_s']:.2f}"
                top = "-" if row["max_s"] is None else f"{row['max_s']:.2f}"
                print(f"| {arch} | {eps:.4g} | {verifier} | {row['n_relu']} | {mean} | {top} | "
                      f"{row['statuses']} | {row['peak_rss_mb']:.0f} "
                      f"(import {row['import_rss_mb']:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
