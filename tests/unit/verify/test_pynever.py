"""pyNeVer 1.3.2 (NeVer 2, the pruning paper's authors' tool) reads what the export step writes:
plain, neuron-pruned and grafted MLPs (the grafted one with ``export.graft_form: sequential``;
the default residual form has an Add, which its sequential-only ONNX reader rejects) with their
VNNLIB files, and its complete search (SSBP) agrees with branch and bound wherever both decide.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from verify_nets import mlp_variants

from vfbench.export import export_onnx
from vfbench.properties import robustness_property
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.pynever import pynever_network, pynever_verdict
from vfbench.verify.verifiers import VERIFIERS
from vfbench.vnnlib import vnnlib_text

pytest.importorskip("pynever", reason="pynever not installed (make venv: pip install --no-deps "
                                      "pynever==1.3.2, plus the pynever extra)")

DECIDED = ("verified", "falsified")
PYNEVER_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def exports(trained_mlp, synthetic, tmp_path_factory):
    """name -> (ONNX path, instances [(x, label, eps)]) from the real export step."""
    x, y = synthetic
    folder = tmp_path_factory.mktemp("pynever")
    nets = mlp_variants(trained_mlp)
    plain, grafted, pruned = nets["mlp"], nets["grafted"], nets["neuron-pruned"]
    images = [(x[i], int(y[i]), 0.04) for i in range(226, 234)]
    paths = {}
    for name, model, form in [("mlp", plain, "residual"), ("neuron-pruned", pruned, "residual"),
                              ("grafted", grafted, "sequential"),
                              ("grafted-residual", grafted, "residual")]:
        paths[name] = str(folder / f"{name}.onnx")
        export_onnx(model, paths[name], x[:64], graft_form=form)
    return {name: (path, images) for name, path in paths.items()}


def _pynever(path, instances, folder):
    """pyNeVer's (status, counterexample) per instance, from the ONNX file and a VNNLIB file of
    the property."""
    network = pynever_network(path)
    out = []
    for k, (x, label, eps) in enumerate(instances):
        spec = folder / f"{k}.vnnlib"
        spec.write_text(vnnlib_text(robustness_property(x.numpy(), label, eps, 3)))
        out.append(pynever_verdict(network, spec, PYNEVER_TIMEOUT_S))
    return out


def _bab(path, instances):
    bab = VERIFIERS["bab"](load_onnx(path), {"pgd_steps": 0}, name="bab")
    return [bab.verify(x, label, eps, 30.0, image=k)["status"]
            for k, (x, label, eps) in enumerate(instances)]


@pytest.mark.parametrize("case", ["mlp", "neuron-pruned", "grafted"])
def test_pynever_agrees_with_bab(exports, case, tmp_path):
    path, instances = exports[case]
    want = _bab(path, instances)
    if case == "grafted":  # the sequential form is the same network as the residual one
        assert want == _bab(exports["grafted-residual"][0], instances)
    got = _pynever(path, instances, tmp_path)
    ort = OrtModel(path)
    decided = 0
    for k, (a, (b, cex)) in enumerate(zip(want, got, strict=True)):
        if a in DECIDED and b in DECIDED:
            assert a == b, (case, k, a, b)
            decided += 1
        if b == "falsified":  # pyNeVer's point, re-checked by onnxruntime as VNN-COMP does
            x, label, eps = instances[k]
            prop = robustness_property(x.numpy(), label, eps, 3)
            point = cex.reshape(x.shape)
            moved = prop.clip_into_box(point)  # its LP's float rounding (input tolerance 1e-4)
            assert np.abs(moved - point).max() <= 1e-4
            assert prop.is_unsafe(ort(moved[None])[0])
    assert decided >= len(instances) - 2, (want, got)
    assert {b for b, _ in got} >= {"verified", "falsified"}, got  # both kinds exercised


def test_pynever_sees_grafted_neurons_stable_and_rejects_the_residual_form(exports, tmp_path):
    """On the sequential export, pyNeVer's own symbolic bounds put every grafted neuron's Relu
    input above 0 (stable); the residual export (Gemm + Add) is refused, not misread."""
    from pynever.strategies.abstraction.bounds_propagation.manager import BoundsManager
    from pynever.strategies.verification.properties import VnnLibProperty

    path, instances = exports["grafted"]
    x, label, _ = instances[0]
    spec = tmp_path / "box.vnnlib"  # the whole input box [0, 1]^n
    spec.write_text(vnnlib_text(robustness_property(np.full_like(x.numpy(), 0.5), label, 0.5,
                                                    3)))
    bounds = BoundsManager(pynever_network(path), VnnLibProperty(str(spec))).compute_bounds()
    lower = bounds.numeric_pre_bounds["/body/body.3/Relu_output_0"].get_lower()
    grafted = torch.arange(lower.numel()) % 3 == 0
    assert (lower[grafted] > 0).all() and (lower[~grafted] < 0).any()
    with pytest.raises(Exception, match="[Dd]imension"):
        pynever_network(exports["grafted-residual"][0])


def test_missing_pynever_is_a_clear_error(monkeypatch):
    import sys

    from vfbench.errors import VfbenchError

    monkeypatch.setitem(sys.modules, "pynever.strategies.conversion.converters.onnx", None)
    with pytest.raises(VfbenchError, match="pip install --no-deps pynever==1.3.2"):
        pynever_network("any.onnx")
