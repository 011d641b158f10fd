#!/usr/bin/env python
"""pyNeVer 1.3.2 on a VNN-COMP benchmark folder: does it read vfbench's exports, and does it
agree with vfbench?

Every row of ``--instances`` (onnx, vnnlib, timeout; paths relative to the folder) goes to
pyNeVer (``vfbench.verify.pynever``: SSBP, sequential refinement, the row's timeout); each of its
counterexamples is re-checked with onnxruntime on the ONNX file (in the box, unsafe condition
true). Its answers, as VNN-COMP words, are compared with a results CSV of the same instances
(``vfbench verify-benchmark --out``). Printed: per instance pyNeVer's answer, seconds and the
reference's; the counts; the instances both decide and how many agree (must be all).

    .venv/bin/vfbench verify-benchmark DIR --instances inst.csv --verifier bab --out bab.csv
    .venv/bin/python benchmarks/pynever_check.py DIR --instances inst.csv --reference bab.csv
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
import torch

from vfbench.verify.benchmark import read_instances, read_results
from vfbench.verify.onnx_import import OrtModel
from vfbench.verify.pynever import pynever_network, pynever_verdict
from vfbench.vnnlib import read_vnnlib

DECIDED = ("sat", "unsat")


def answer(status: str, cex, onnx: Path, vnnlib: Path) -> str:
    """pyNeVer's answer as a VNN-COMP word; a counterexample onnxruntime does not confirm is
    ``unknown``. pyNeVer's points can lie a float rounding outside the box (2e-8 seen): as
    VNN-COMP grades (input tolerance 1e-4), one within 1e-4 of the box is moved into it first."""
    if status == "verified":
        return "unsat"
    if status == "unknown":
        return "timeout"
    if status != "falsified":
        return "error"
    ort = OrtModel(onnx)
    shape = tuple(ort.session.get_inputs()[0].shape[1:])
    point = cex.reshape(shape)
    for prop in read_vnnlib(vnnlib, shape, ort.session.get_outputs()[0].shape[1]):
        moved = prop.clip_into_box(point)
        if np.abs(moved - point).max() <= 1e-4 and prop.is_unsafe(ort(moved[None])[0]):
            return "sat"
    return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--instances", type=Path, required=True)
    p.add_argument("--reference", type=Path, required=True,
                   help="VNN-COMP results CSV of the same instances (e.g. vfbench's bab)")
    args = p.parse_args()
    torch.set_num_threads(1)
    reference = {(r["onnx"], r["vnnlib"]): r["result"] for r in read_results(args.reference)}
    networks, counts, both, agree, total = {}, collections.Counter(), 0, 0, 0.0
    for onnx, vnnlib, timeout in read_instances(args.folder / args.instances):
        if onnx not in networks:
            networks[onnx] = pynever_network(args.folder / onnx)
        start = time.perf_counter()
        status, cex = pynever_verdict(networks[onnx], args.folder / vnnlib, timeout)
        seconds = time.perf_counter() - start
        word = answer(status, cex, args.folder / onnx, args.folder / vnnlib)
        want = reference.get((onnx, vnnlib), "-")
        counts[word] += 1
        total += seconds
        if word in DECIDED and want in DECIDED:
            both += 1
            agree += word == want
        note = "" if word == status or word in ("unsat", "sat") else f" ({status})"
        print(f"{onnx} {vnnlib}: pynever {word}{note} in {seconds:.2f} s; reference {want}")
    print(f"pynever: {dict(counts)}, {total:.1f} s; both decide {both}, agree {agree}")


if __name__ == "__main__":
    main()
