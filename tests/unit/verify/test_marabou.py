"""Marabou as a built-in verifier: it reads what the export step writes (plain, grafted in
either graft_form, neuron-pruned networks), agrees with branch and bound wherever both decide,
and a counterexample onnxruntime does not confirm becomes a refined one or ``unknown``, never a
crash."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from verify_nets import graft_first_site, mlp_variants, small_cnn

from vfbench.errors import VfbenchError
from vfbench.export import export_onnx
from vfbench.properties import robustness_property
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.refine import refine_counterexample
from vfbench.verify.verifiers import VERIFIERS

pytest.importorskip("maraboupy", reason="maraboupy not installed (pip install maraboupy==2.0.0)")

NO_PGD = {"pgd_steps": 0}
DECIDED = ("verified", "falsified")


def _export(model, path, x, graft_form="residual"):
    # the export step itself: folded masks, BN normalisation
    export_onnx(model, path, x, graft_form=graft_form)
    return str(path)


@pytest.fixture(scope="module")
def exports(trained_mlp, synthetic, tmp_path_factory):
    """name -> (ONNX path, instances [(x, label, eps)]) from the real export step."""
    x, y = synthetic
    folder = tmp_path_factory.mktemp("marabou")
    nets = mlp_variants(trained_mlp)
    plain, grafted, pruned = nets["mlp"], nets["grafted"], nets["neuron-pruned"]
    cnn = small_cnn(seed=1)
    graft_first_site(cnn)  # per-neuron conv mask: the dense form
    images = [(x[i], int(y[i]), eps) for eps in (0.04, 0.06) for i in range(226, 234)]
    cx = torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cnn_labels = cnn(cx).argmax(1).tolist()
    return {
        "mlp": (_export(plain, folder / "plain.onnx", x[:64]), images),
        "grafted": (_export(grafted, folder / "grafted.onnx", x[:64]), images),
        "grafted-sequential": (_export(grafted, folder / "sequential.onnx", x[:64],
                                       graft_form="sequential"), images[:8]),
        "neuron-pruned": (_export(pruned, folder / "pruned.onnx", x[:64]), images),
        "grafted-cnn": (_export(cnn, folder / "cnn.onnx", cx),
                        [(cx[i], cnn_labels[i], 0.05) for i in range(4)]),
    }


def _records(name, path, instances, options=None):
    verifier = VERIFIERS[name](load_onnx(path), {**NO_PGD, **(options or {})}, name=name)
    return [verifier.verify(x, label, eps, 30.0, image=i)
            for i, (x, label, eps) in enumerate(instances)]


@pytest.mark.parametrize("case", ["mlp", "grafted", "grafted-sequential", "neuron-pruned",
                                  "grafted-cnn"])
def test_marabou_agrees_with_bab(exports, case):
    path, instances = exports[case]
    bab, marabou = _records("bab", path, instances), _records("marabou", path, instances)
    ort = OrtModel(path)
    decided = 0
    for a, b in zip(bab, marabou, strict=True):
        assert b["status"] != "error", b["error"]
        if a["status"] in DECIDED and b["status"] in DECIDED:
            assert a["status"] == b["status"], (case, a["image"], a["status"], b["status"])
            decided += 1
        if b["status"] == "falsified":  # independent re-check of Marabou's point
            x, label, eps = instances[b["image"]]
            point = np.asarray(b["counterexample"], dtype=np.float32)
            assert np.abs(point - x.numpy()).max() <= eps + 1e-7
            logits = ort(point[None])[0]
            assert np.delete(logits, label).max() > logits[label]
    assert decided >= len(instances) - 1
    statuses = {b["status"] for b in marabou}
    if case != "grafted-cnn":
        assert statuses == {"verified", "falsified"}, statuses  # both kinds exercised
    assert all(b["external"] == "marabou" for b in marabou if b["status"] == "verified")


def test_boundary_counterexample_is_refined_or_unknown(exports, monkeypatch):
    path, instances = exports["mlp"]
    bab = _records("bab", path, instances)
    falsified = next(r for r in bab if r["status"] == "falsified")
    verified = next(r for r in bab if r["status"] == "verified")
    x, label, eps = instances[falsified["image"]]
    module, ort = load_onnx(path), OrtModel(path)
    prop = robustness_property(x.numpy(), label, eps, module.num_classes)

    def confirm(p):
        return prop.is_unsafe(ort(p[None])[0])

    # a point just on the safe side of the boundary, on the segment to the counterexample
    inside = np.asarray(falsified["counterexample"], dtype=np.float32)
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        point = (x.numpy() + mid * (inside - x.numpy())).astype(np.float32)
        low, high = (low, mid) if confirm(point) else (mid, high)
    boundary = (x.numpy() + low * (inside - x.numpy())).astype(np.float32)
    assert not confirm(boundary)
    found, why = refine_counterexample(module, prop, boundary, confirm)
    assert why is None and confirm(found) and prop.contains(found)

    # Marabou 'sat' with a point no refinement rescues: unknown with the reason, no crash
    verifier = VERIFIERS["marabou"](module, NO_PGD, name="marabou")
    x, label, eps = instances[verified["image"]]
    monkeypatch.setattr(verifier, "solve", lambda props, deadline: (
        "sat", x.numpy().astype(np.float64).reshape(-1), None))
    record = verifier.verify(x, label, eps, 30.0, image=0)
    assert record["status"] == "unknown" and "PGD steps" in record["error"]


def test_missing_maraboupy_is_a_clear_error(mlp_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "maraboupy", None)
    with pytest.raises(VfbenchError, match="needs maraboupy 2.0.0"):
        VERIFIERS["marabou"](load_onnx(mlp_onnx), NO_PGD)
