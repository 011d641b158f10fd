#!/usr/bin/env python
"""Reference verdicts of the deep-MLP benchmark, from every run given, checked and cross-checked.

Inputs: records of ``run.py`` (``<variant>.json`` or a folder of its journals: any verifier, any
timeout) and a strong PGD of our own on the instances none of them falsified (the verified ones
included: a counterexample there is a contradiction). A verdict enters ``reference.csv`` when at
least one source gives it and none contradicts it; every counterexample (the runs' and PGD's) is
re-checked here by onnxruntime on the stored ONNX file and against the VNNLIB ball (pixel/255
+- eps clipped to [0, 1]) before it counts. Two sources that disagree stop the script. An
instance no source decides gets, in ``open_after``, the longest time each verifier spent on it
without a verdict (e.g. ``bab 600 s;milp 600 s``).

    .venv/bin/python benchmarks/deep_mlp/reference.py /tmp/runs/*.json \\
        --pgd-steps 100 --pgd-restarts 20
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch

from vfbench.attacks import pgd_attack
from vfbench.data import MlxtendSource
from vfbench.errors import VfbenchError
from vfbench.export import onnxruntime_session
from vfbench.io import atomic_path
from vfbench.runtime import set_threads
from vfbench.verify.onnx_import import load_onnx

HERE = Path(__file__).resolve().parent
DECIDED = ("verified", "falsified")


def is_counterexample(session, point, x: np.ndarray, label: int, eps: float) -> bool:
    """``point`` inside the ball (float64 comparison) and onnxruntime's top class not ``label``
    (another logit strictly larger), as VNN-COMP grades it (input tolerance 0 here)."""
    point = np.asarray(point, dtype=np.float32).reshape(x.shape)
    lo = np.clip(x.astype(np.float64) - eps, 0, 1)
    hi = np.clip(x.astype(np.float64) + eps, 0, 1)
    if not (np.all(point >= lo) and np.all(point <= hi)):
        return False
    logits = session.run(None, {"input": point[None]})[0][0]
    return bool(np.delete(logits, label).max() > logits[label])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+", type=Path)
    p.add_argument("--pgd-steps", type=int, default=100)
    p.add_argument("--pgd-restarts", type=int, default=20)
    p.add_argument("--keep", action="store_true",
                   help="the verdicts of the present reference.csv count as sources too (their "
                        "counterexamples were checked when they were made)")
    args = p.parse_args()
    set_threads(1)
    import run  # the benchmark's instance list (same folder)

    with tempfile.TemporaryDirectory() as cache:
        x_test = (MlxtendSource().fetch("mnist5k", Path(cache)).arrays["x_test"]
                  .astype(np.float32) / np.float32(255))
    sessions = {net: onnxruntime_session(HERE / "onnx" / f"{net}.onnx")
                for net in {t[0] for t in run.instances()}}
    votes: dict[tuple[str, float, int], dict[str, set[str]]] = {}
    # Per open instance, the longest run of each verifier that left it open.
    longest_open: dict[tuple[str, float, int], dict[str, float]] = {}
    if args.keep:
        with open(HERE / "reference.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                key = (r["net"], float(r["eps"]), int(r["image"]))
                if r["verdict"] in DECIDED:
                    votes[key] = {r["verdict"]: set(r["sources"].split(";"))}
                for item in filter(None, (r.get("open_after") or "").split(";")):
                    verifier, seconds, _ = item.split(" ")
                    longest_open.setdefault(key, {})[verifier] = float(seconds)
    for path in args.records:
        for r in run.load_records(path):
            key = (r["net"], float(r["eps"]), int(r["image"]))
            if r["status"] not in DECIDED:
                tried = longest_open.setdefault(key, {})
                tried[r["verifier"]] = max(tried.get(r["verifier"], 0.0), r["time_s"])
                continue
            if r["status"] == "falsified" and not is_counterexample(
                    sessions[r["net"]], r["counterexample"], x_test[key[2]], r["label"], key[1]):
                raise VfbenchError(f"{path}: {key}: counterexample not confirmed by onnxruntime")
            votes.setdefault(key, {}).setdefault(r["status"], set()).add(
                f"{path.stem}:{r['verifier']}")
    rows, models = [], {}
    for net, eps, image, label in run.instances():
        key = (net, eps, image)
        # PGD on every instance no source falsified: it may falsify an open one, and must not
        # break a verified one (a contradiction: it stops the script below).
        if "falsified" not in votes.get(key, {}) and args.pgd_steps:
            if net not in models:
                models[net] = load_onnx(HERE / "onnx" / f"{net}.onnx")
            model = models[net]
            x = torch.from_numpy(x_test[image])[None]
            gen = torch.Generator().manual_seed(1000 + image)
            adv = pgd_attack(model, x.repeat(args.pgd_restarts, 1, 1, 1),
                             torch.full((args.pgd_restarts,), label), eps,
                             steps=args.pgd_steps, restarts=1, loss="margin", generator=gen)
            for point in adv.numpy():
                if is_counterexample(sessions[net], point, x_test[image], label, eps):
                    votes.setdefault(key, {}).setdefault("falsified", set()).add("strong-pgd")
                    break
        found = votes.get(key, {})
        if len(found) > 1:
            raise VfbenchError(f"{key}: sources disagree: {found}")
        verdict = next(iter(found), "none")
        left_open = "" if found else ";".join(
            f"{verifier} {seconds:.0f} s"
            for verifier, seconds in sorted(longest_open.get(key, {}).items()))
        rows.append({"net": net, "eps": eps, "image": image, "label": label,
                     "verdict": verdict, "sources": ";".join(sorted(found.get(verdict, ()))),
                     "open_after": left_open})
        print(rows[-1], flush=True)
    with atomic_path(HERE / "reference.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("verified", "falsified", "none")}
    print(f"reference.csv: {counts}")


if __name__ == "__main__":
    main()
