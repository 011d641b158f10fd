#!/usr/bin/env python
"""Measurements behind the float tolerance of ``vfbench.verify.tolerance`` (tol = ATOL + RTOL * M).

1. ``--wide N``: N random 3072-input linear networks whose exact (float64) minimum margin over
   a ball is moved to ~0; prints |float32 CROWN bound - exact| / M and |onnxruntime at the
   minimising vertex - exact| / M, the rounding the relative tolerance must cover.
2. ``--results DIR``: the records ``benchmarks/verify.py --out DIR`` wrote (results.json and
   the models' ONNX files): for every verified record, its margin lower bound against its
   tolerance, i.e. how much room the rule leaves real verdicts.
3. ``--compare BEFORE AFTER``: two such folders (the same command on two versions of the code):
   per (model, eps, verifier) the verdict counts, the total seconds and their ratio, the
   instances whose verdict changed, and the domains bab bounded.
4. ``--bound-cost DIR``: the seconds of a float64 bound (what ``milp`` and bab's leaf LPs use)
   against float32, CROWN and alpha-CROWN, on the models and images of such a folder
   (interleaved, 1 thread; the ratio is what to read on a shared machine).
5. ``--binaries DIR``: per image of such a folder's NET1 (eps 0.05), the binary variables of
   milp's encoding, the solves stubbed out; run with ``PYTHONPATH`` at two versions' ``src`` to
   compare their big-M constants.
6. ``--margin-cost DIR IMAGE...``: milp on those images of such a folder's NET1 (eps 0.05, 60 s
   timeout), with the margin tolerance and with it set to 0 (unsound: for this measurement only),
   alternately: seconds and verdicts, what the margin tolerance costs the MILP.

    .venv/bin/python benchmarks/tolerance.py --wide 40 --results /tmp/bench-out
    .venv/bin/python benchmarks/tolerance.py --compare /tmp/bench-before /tmp/bench-after
    .venv/bin/python benchmarks/tolerance.py --bound-cost /tmp/bench-after
    PYTHONPATH=<tree>/src .venv/bin/python benchmarks/tolerance.py --binaries /tmp/bench-after
    .venv/bin/python benchmarks/tolerance.py --margin-cost /tmp/bench-after 3 0 11
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vfbench.runtime import set_threads
from vfbench.verify import lirpa
from vfbench.verify.onnx_import import OrtModel, load_onnx

WIDE, EPS = 3072, 2.0**-6


def _export(net: nn.Module, path: Path, x: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, x, str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"])


def wide(count: int) -> None:
    from vfbench.verify import tolerance  # (imported here: --binaries runs on older trees too)

    ratios_bound, ratios_ort, absolute = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(count):
            gen = torch.Generator().manual_seed(seed)
            net = nn.Sequential(nn.Flatten(), nn.Linear(WIDE, 2)).eval()
            x = torch.randint(0, 257, (1, WIDE), generator=gen).float() / 256
            with torch.no_grad():
                net[1].weight.copy_(torch.randn(2, WIDE, generator=gen))
                net[1].bias.zero_()
            w = net[1].weight.detach().double().numpy()
            lo, hi = np.clip(x[0].double().numpy() - EPS, 0, 1), np.clip(
                x[0].double().numpy() + EPS, 0, 1)
            d = w[0] - w[1]
            with torch.no_grad():
                net[1].bias[0] = -float(np.minimum(d * lo, d * hi).sum())
            b = net[1].bias.detach().double().numpy()
            exact = float(np.minimum(d * lo, d * hi).sum() + b[0] - b[1])
            path = Path(folder) / f"wide{seed}.onnx"
            _export(net, path, x)
            module = load_onnx(path)
            bm = lirpa.bounded_model(module, x)
            bound = float(lirpa.compute_margin_bounds(bm, x, EPS, [0], "crown").lower[0, 0])
            vertex = np.where(d > 0, lo, hi).astype(np.float32)[None]
            logits = OrtModel(path)(vertex)[0]
            magnitude = module.magnitudes(torch.as_tensor(hi, dtype=torch.float32)[None])[0]
            m = float(magnitude[0, 0] + magnitude[0, 1])
            ratios_bound.append(abs(bound - exact) / m)
            ratios_ort.append(abs(float(logits[0] - logits[1]) - exact) / m)
            absolute.append(max(abs(bound - exact), abs(float(logits[0] - logits[1]) - exact)))
    print(f"{count} networks of {WIDE} inputs, M {m:.3g} (last): max |bound - exact| / M "
          f"{max(ratios_bound):.2e}, max |onnxruntime - exact| / M {max(ratios_ort):.2e}, "
          f"max absolute {max(absolute):.2e}; RTOL = {tolerance.RTOL:g} is "
          f"{tolerance.RTOL / max(ratios_bound + ratios_ort):.0f}x the largest ratio")


def headroom(folder: Path, images: np.ndarray) -> None:
    """``images``: the test images (uint8) the records' indices point into."""
    from vfbench.verify import tolerance

    results = json.loads((folder / "results.json").read_text())
    for row in results:
        module = load_onnx(folder / f"{row['model']}.onnx")
        verified = [r for r in row["records"] if r["status"] == "verified"]
        if not verified:
            continue
        ratios, tols = [], []
        for r in verified:
            x = torch.as_tensor(images[r["image"]].astype(np.float32) / np.float32(255))[None]
            box_lo, box_hi = lirpa.input_box(x, r["eps"])
            logits, _ = module.magnitudes(torch.maximum(box_lo.abs(), box_hi.abs()))
            tol = tolerance.margin_slack(tolerance.margin_magnitudes(logits, [r["label"]]))
            tols.append(float(tol.max()))
            ratios.append(r["margin_lb"] / float(tol.max()))
        print(f"{row['model']:<11} eps {row['eps']:<5} {row['verifier']:<6} verified "
              f"{len(verified):>2}: tol {min(tols):.1e}..{max(tols):.1e}, smallest margin_lb / "
              f"tol {min(ratios):.3g}, margin_lb <= tol: {sum(v <= 1 for v in ratios)}")


def _counts(records: list[dict]) -> str:
    status = [r["status"] for r in records]
    return (f"{status.count('verified')} / {status.count('falsified')} / "
            f"{status.count('timeout') + status.count('unknown')}")


def compare(before: Path, after: Path) -> None:
    """A markdown table of the two runs' rows, matched by (model, eps, verifier)."""
    rows = {}
    for side, folder in (("before", before), ("after", after)):
        for row in json.loads((folder / "results.json").read_text()):
            rows.setdefault((row["model"], row["eps"], row["verifier"]), {})[side] = row
    print("| model | eps | verifier | before: verified / falsified / timeout+unknown | after "
          "| before s (total) | after s (total) | after / before | bab domains before / after "
          "| verdicts changed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (model, eps, verifier), pair in rows.items():
        if set(pair) != {"before", "after"}:
            continue
        old, new = pair["before"]["records"], pair["after"]["records"]
        t_old, t_new = (sum(r["time_s"] for r in rs) for rs in (old, new))
        changed = [f"image {a['image']}: {a['status']} -> {b['status']}"
                   for a, b in zip(old, new, strict=True) if a["status"] != b["status"]]
        domains = (f"{sum(r.get('domains') or 0 for r in old)} / "
                   f"{sum(r.get('domains') or 0 for r in new)}" if verifier == "bab" else "-")
        print(f"| {model} | {eps} | {verifier} | {_counts(old)} | {_counts(new)} | {t_old:.1f} | "
              f"{t_new:.1f} | {t_new / t_old:.2f} | {domains} | {'; '.join(changed) or '-'} |")


def bound_cost(folder: Path, images: np.ndarray, labels: np.ndarray, eps: float = 0.05) -> None:
    """Per model: total seconds of float32 and float64 bounds over the first 20 images, and
    the largest |float64 - float32| of a pre-activation bound."""
    from vfbench.verify.verifiers import VERIFIERS

    for onnx in sorted(folder.glob("*.onnx")):
        verifier = VERIFIERS["milp"](load_onnx(onnx), {"pgd_steps": 0}, "cpu")
        for method in ("crown", "alpha_crown"):
            seconds = {torch.float32: 0.0, torch.float64: 0.0}
            gap = 0.0
            for i in range(20):
                x = torch.as_tensor(images[i].astype(np.float32) / np.float32(255))[None]
                got = {}
                for dtype in (torch.float32, torch.float64) if i % 2 else (torch.float64,
                                                                          torch.float32):
                    start = time.perf_counter()
                    got[dtype] = verifier.bounds(x.view(1, *verifier.model.input_shape),
                                                 [int(labels[i])], eps, method, dtype=dtype)
                    seconds[dtype] += time.perf_counter() - start
                gap = max(gap, max(float((a.double() - b).abs().max()) for (a, _), (b, _) in zip(
                    got[torch.float32].pre_activation, got[torch.float64].pre_activation,
                    strict=True)))
            s32, s64 = seconds[torch.float32], seconds[torch.float64]
            print(f"{onnx.stem:<11} eps {eps} {method:<11} float32 {s32:.2f} s, float64 "
                  f"{s64:.2f} s (x{s64 / s32:.2f}) for 20 images; max |lower64 - lower32| "
                  f"{gap:.1e}")


def binaries(folder: Path, images: np.ndarray, labels: np.ndarray, eps: float = 0.05) -> None:
    from vfbench.verify import milp
    from vfbench.verify.verifiers import VERIFIERS

    counts: list[int] = []
    encode = milp.encode_ball

    def counting(*args, **kwargs):
        encoded = encode(*args, **kwargs)
        counts.append(encoded.binaries)
        return encoded

    milp.encode_ball = counting
    milp.minimise = lambda *args, **kwargs: milp.Solved("undecided")
    verifier = VERIFIERS["milp"](load_onnx(folder / "net1.onnx"), {"pgd_steps": 0}, "cpu")
    out = []
    for i in range(20):
        counts.clear()
        x = torch.as_tensor(images[i].astype(np.float32) / np.float32(255))
        verifier.verify(x.view(verifier.model.input_shape), int(labels[i]), eps, 30, image=i)
        out.append(f"{i}:{counts[0] if counts else '-'}")
    print(f"net1 eps {eps} binaries per image ('-': no MILP needed): {' '.join(out)}")


def margin_cost(folder: Path, indices: list[int], images: np.ndarray, labels: np.ndarray,
                eps: float = 0.05) -> None:
    from vfbench.verify import tolerance
    from vfbench.verify.verifiers import VERIFIERS

    verifier = VERIFIERS["milp"](load_onnx(folder / "net1.onnx"), {"pgd_steps": 0}, "cpu")
    slack = tolerance.margin_slack
    for i in indices:
        x = torch.as_tensor(images[i].astype(np.float32) / np.float32(255))
        for name, rule in (("with tol", slack), ("tol = 0", lambda m: 0.0 * m)):
            tolerance.margin_slack = rule
            start = time.perf_counter()
            record = verifier.verify(x.view(verifier.model.input_shape), int(labels[i]), eps, 60,
                                     image=i)
            print(f"net1 eps {eps} image {i} {name:<8}: {record['status']} in "
                  f"{time.perf_counter() - start:.1f} s")
    tolerance.margin_slack = slack


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wide", type=int, default=0)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--compare", type=Path, nargs=2, default=None, metavar=("BEFORE", "AFTER"))
    p.add_argument("--bound-cost", type=Path, default=None)
    p.add_argument("--binaries", type=Path, default=None)
    p.add_argument("--margin-cost", nargs="+", default=None, metavar="DIR IMAGE")
    args = p.parse_args()
    set_threads(1)
    if args.wide:
        wide(args.wide)
    if args.results:
        from verify import mnist5k  # benchmarks/verify.py: the images it verified

        headroom(args.results, mnist5k()["x_test"])
    if args.compare:
        compare(*args.compare)
    if args.bound_cost:
        from verify import mnist5k

        data = mnist5k()
        bound_cost(args.bound_cost, data["x_test"], data["y_test"])
    if args.binaries:
        from verify import mnist5k

        data = mnist5k()
        binaries(args.binaries, data["x_test"], data["y_test"])
    if args.margin_cost:
        from verify import mnist5k

        data = mnist5k()
        margin_cost(Path(args.margin_cost[0]), [int(i) for i in args.margin_cost[1:]],
                    data["x_test"], data["y_test"])


if __name__ == "__main__":
    main()
