#!/usr/bin/env python
"""The float certificate (``vfbench.verify.float_certificate``) on the deep MLPs of
``benchmarks/deep_mlp``: per image, CROWN's float32 margin lower bound (the row closest to 0) and
the old rule's tol there, the certificate's bound and threshold on that row, the crown verdict by
the old rule (lower > tol on every row) and with the certificate (``Verifier.margins_proven``),
and the seconds of the float32 CROWN bound and of the certificate (1 thread).

    PYTHONPATH=src .venv/bin/python benchmarks/float_certificate.py \
        --nets mnist_256x6 mnist_256x4 --eps 0.03 --images 15
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vfbench.data import MlxtendSource
from vfbench.verify.float_certificate import FloatCertifier, assumed_upper_bounds
from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.verifiers import VERIFIERS

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["mnist_256x6", "mnist_256x4"])
    parser.add_argument("--eps", type=float, default=0.03)
    parser.add_argument("--images", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as cache:
        data = MlxtendSource().fetch("mnist5k", Path(cache)).arrays
    print("| net | image | CROWN lower | old tol | certificate | threshold | old | new "
          "| CROWN s | certificate s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for net in args.nets:
        model = load_onnx(HERE / "deep_mlp" / "onnx" / f"{net}.onnx")
        verifier = VERIFIERS["crown"](model, {"pgd_steps": 0}, "cpu")
        certifier = FloatCertifier(model, "cpu")
        for image in range(args.images):
            x = torch.tensor(data["x_test"][image].astype(np.float32) / 255).reshape(
                1, *model.input_shape)
            label = int(data["y_test"][image])
            start = time.process_time()
            bounds = verifier.bounds(x, [label], args.eps, "crown")
            crown_s = time.process_time() - start
            lower, tol = bounds.lower[0], bounds.tol[0]
            row = int(lower.argmin())
            old = bool((lower > tol).all())
            cert, cert_s, new = None, 0.0, old
            if bool(((lower > 0) & (lower <= tol)).any()):
                start = time.process_time()
                cert = certifier.certify(x, label, args.eps, assumed_upper_bounds(bounds, 0))
                cert_s = time.process_time() - start
                new = bool(((lower > tol) | cert.proven).all())
            verdict = {True: "verified", False: "unknown"}
            print(f"| {net} | {image} | {float(lower[row]):.4g} | {float(tol[row]):.3g} | "
                  + (f"{float(cert.lower[row]):.4g} | {float(cert.threshold[row]):.2g}"
                     + ("" if cert.consistent else " (inconsistent)") if cert else "- | -")
                  + f" | {verdict[old]} | {verdict[new]} | {crown_s:.2f} | "
                  + (f"{cert_s:.2f} ({cert.rounds} passes)" if cert else "-") + " |")


if __name__ == "__main__":
    main()
