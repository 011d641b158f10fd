"""The exact MILP verifier: the network as affine maps, the encoding, and the solver traps."""

from __future__ import annotations

import numpy as np
import onnx
import pulp
import pytest
import torch
from onnx import TensorProto, helper

from vfbench.errors import VfbenchError
from vfbench.verify import milp
from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.verifiers import VERIFIERS

NO_PGD = {"pgd_steps": 0}
EPS = 0.05  # on the MLP's test images: some verified, some falsified, most need the MILP


@pytest.fixture(scope="module")
def mlp(mlp_onnx):
    return load_onnx(mlp_onnx)


def _relu_inputs(module, x):
    captured = []
    handles = [r.register_forward_hook(lambda m, i, o: captured.append(i[0].reshape(-1)))
               for r in milp.relu_modules(module)]
    with torch.no_grad():
        logits = module(x)
    for h in handles:
        h.remove()
    return captured, logits[0]


@pytest.mark.parametrize("fixture", ["mlp_onnx", "cnn_onnx", "grafted_cnn"])
def test_affine_form_reproduces_the_model(fixture, request):
    path = request.getfixturevalue(fixture)
    module = load_onnx(path if isinstance(path, str) else path[2])
    form = milp.piecewise_linear_form(module)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.rand((1, *module.input_shape), generator=gen)
        pre, logits = form.evaluate(x.numpy())
        want_pre, want_logits = _relu_inputs(module, x)
        np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4)
        for got, want in zip(pre, want_pre, strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_a_non_affine_op_is_refused(tmp_path):
    """y = relu(x) * x: the Mul of two variable tensors has no affine form."""
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["r"], name="relu"),
                               helper.make_node("Mul", ["r", "input"], ["output"], name="mul")],
                              "square", [inp], [out])
    path = tmp_path / "square.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(VfbenchError, match="not affine"):
        milp.piecewise_linear_form(load_onnx(path))


def test_stable_neurons_get_no_binary(mlp, synthetic):
    form = milp.piecewise_linear_form(mlp)
    x = synthetic[0][200].numpy().reshape(-1).astype(np.float64)
    verifier = VERIFIERS["milp"](mlp, NO_PGD, "cpu")
    bounds = verifier.bounds(torch.from_numpy(x).float().view(1, *mlp.input_shape),
                             [int(synthetic[1][200])], EPS, "crown")
    pre = [(lo[0].numpy(), up[0].numpy()) for lo, up in bounds.pre_activation]
    tol = [t[0].numpy() for t in bounds.pre_tol]
    # unstable once widened by the tolerance (the big-M constants are)
    unstable = sum(int(((lo < t) & (up > -t)).sum()) for (lo, up), t in zip(pre, tol, strict=True))
    encoded = milp.encode_ball(form, np.clip(x - EPS, 0, 1), np.clip(x + EPS, 0, 1), pre, tol)
    assert 0 < encoded.binaries == unstable
    exact = [(p, p) for p in form.evaluate(x)[0]]  # a single point: every neuron is stable
    zero = [np.zeros_like(p) for p, _ in exact]
    assert milp.encode_ball(form, x, x, exact, zero).binaries == 0


def _records(module, synthetic, options=None, images=range(200, 208)):
    x, y = synthetic
    verifier = VERIFIERS["milp"](module, {**NO_PGD, **(options or {})}, "cpu", name="milp")
    return [verifier.verify(x[i], int(y[i]), EPS, 30, image=i) for i in images]


def test_cbc_and_highs_agree(mlp, synthetic):
    cbc = _records(mlp, synthetic)
    highs = _records(mlp, synthetic, {"solver": "highs"})
    assert [r["status"] for r in cbc] == [r["status"] for r in highs]
    assert {"verified", "falsified"} <= {r["status"] for r in cbc}


def test_an_optimal_status_without_proof_decides_nothing(mlp, synthetic, monkeypatch):
    """With a time limit PuLP can report 'Optimal' for a solve that stopped early; only a
    proven optimum (sol_status 1) may verify or falsify."""
    original = pulp.LpProblem.solve

    def stopped_early(self, solver=None, **kwargs):
        status = original(self, solver, **kwargs)
        if status == pulp.LpStatusOptimal:
            self.sol_status = pulp.LpSolutionIntegerFeasible
        return status

    decided_normally = [r["status"] for r in _records(mlp, synthetic)]
    monkeypatch.setattr(pulp.LpProblem, "solve", stopped_early)
    records = _records(mlp, synthetic)
    needed_milp = [r for r, normal in zip(records, decided_normally, strict=True)
                   if normal == "falsified" or r["margin_lb"] <= 0]
    assert needed_milp
    for r in needed_milp:
        assert r["status"] in ("unknown", "timeout"), r


def test_a_wrong_encoding_is_an_error_not_a_verdict(mlp, synthetic):
    """An infeasibility proof rests on the encoding alone: a wrong one must be caught."""
    x, y = synthetic
    verifier = VERIFIERS["milp"](mlp, NO_PGD, "cpu", name="milp")
    matrix, offset = verifier.form.output
    verifier.form.output = (matrix, offset + np.array([0.0, 3.0, -3.0]))
    records = [verifier.verify(x[i], int(y[i]), EPS, 30, image=i) for i in range(200, 212)]
    errors = [r for r in records if r["status"] == "error"]
    assert errors and all("encoding is wrong" in r["error"] for r in errors)
    assert all(r["status"] in ("error", "verified") for r in records)
    assert all(r["margin_lb"] > 0 for r in records if r["status"] == "verified")  # by bounds


def test_an_optimum_off_the_model_is_refused(mlp, synthetic):
    x = synthetic[0][200].numpy().reshape(-1).astype(np.float64)
    margins = milp.model_margins(mlp, x, 0, mlp.input_shape)
    honest = milp.Solved("optimal", float(margins[1]), x)
    assert milp.check_optimum(mlp, honest, 0, 1, mlp.input_shape, "test")[1] == margins[1]
    with pytest.raises(VfbenchError, match="not the model's margin"):
        milp.check_optimum(mlp, milp.Solved("optimal", float(margins[1]) - 0.5, x), 0, 1,
                           mlp.input_shape, "test")


def test_options_are_checked(mlp):
    with pytest.raises(VfbenchError, match="solver"):
        VERIFIERS["milp"](mlp, {"solver": "gurobi"}, "cpu")
    with pytest.raises(VfbenchError, match="bounds"):
        VERIFIERS["milp"](mlp, {"bounds": "ibp"}, "cpu")
