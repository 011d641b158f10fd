"""Disjuncts of several output constraints (a conjunction: the outputs must satisfy all of them)
through every verifier: bab and milp via the wrapper ONNX (the conjunction's max of violations
written with ReLUs), Marabou on the VNNLIB itself. A conjunction that each of its constraints
alone would falsify must be unsat; a sat answer's point must satisfy every constraint of one
disjunct, replayed here in an independent onnxruntime session."""

from __future__ import annotations

import re
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from vfbench.properties import Property
from vfbench.verify.instance import verify_instance, wrapped_onnx
from vfbench.verify.onnx_import import OrtModel
from vfbench.vnnlib import read_vnnlib

METHODS = ("bab", "milp", "marabou")


def _export(net: nn.Module, n_inputs: int, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, n_inputs),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """y_0 = 0.1, y_1 = relu(x), y_2 = relu(-x) on x in [-1, 1]: y_1 >= y_0 needs x >= 0.1,
    y_2 >= y_0 needs x <= -0.1; each holds somewhere, both nowhere."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        net[2].bias.copy_(torch.tensor([0.1, 0.0, 0.0]))
    path = tmp_path_factory.mktemp("folded") / "net.onnx"
    _export(net, 1, path)
    return path


HEADER = ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
          "(declare-const Y_2 Real)\n(assert (>= X_0 -1))\n(assert (<= X_0 1))\n")
CASES = {
    # both constraints together: impossible, though each alone holds on part of the box
    "conjunction_unsat": ("(assert (or (and (>= Y_1 Y_0) (>= Y_2 Y_0))))", "unsat"),
    # the same two constraints as two disjuncts: sat
    "split_sat": ("(assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0))))", "sat"),
    # sat only in x in [0.1, 0.15], through the second conjunction; the first is impossible
    "conjunction_sat": ("(assert (or (and (>= Y_2 0.5) (>= Y_1 0.5))\n"
                        "            (and (>= Y_1 Y_0) (<= Y_1 0.15) (>= Y_0 0.05))))", "sat"),
}


def _write(folder, name: str) -> str:
    path = folder / f"{name}.vnnlib"
    path.write_text(HEADER + CASES[name][0] + "\n")
    return str(path)


def _replay(onnx_path, result, vnnlib) -> None:
    """The point lies in the box, and some disjunct's every constraint holds at onnxruntime's
    outputs there (checked row by row, independently of Property.is_unsafe)."""
    x = np.array([float(v) for v in re.findall(r"\(X_\d+ ([^)]+)\)", result.text())])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x.astype(np.float32).reshape(1, -1)})[0][0].astype(np.float64)
    (prop,) = read_vnnlib(vnnlib, (1,), 3)
    assert prop.contains(x)
    assert any(all(float(a @ y) <= float(c) for a, c in zip(A, b, strict=True))
               for A, b in prop.disjuncts), y


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", METHODS)
def test_conjunctions_bab_milp_and_marabou(folded, tmp_path, case, method):
    if method == "marabou":
        pytest.importorskip("maraboupy")
    vnnlib = _write(tmp_path, case)
    options = None if method == "marabou" else {"pgd_steps": 0}  # the verifier decides alone
    result = verify_instance(folded, vnnlib, method, options, timeout_s=30)
    assert result.result == CASES[case][1], result
    if result.result == "sat":
        _replay(folded, result, vnnlib)


def test_wrapper_outputs_the_conjunctions_violation(folded, tmp_path):
    """z_0 - z_k = max over the disjunct's rows of (a @ y - b), at many points of the box."""
    (prop,) = read_vnnlib(_write(tmp_path, "conjunction_sat"), (1,), 3)
    wrapped = tmp_path / "wrapped.onnx"
    wrapped_onnx(folded, prop, wrapped)
    t = np.linspace(0, 1, 101, dtype=np.float32)[:, None]
    wrapper, net = OrtModel(wrapped), OrtModel(folded)
    z = np.concatenate([wrapper(p[None]) for p in t])  # the wrapper's batch is 1
    y = np.concatenate([net(p[None]) for p in -1 + 2 * t])
    for k, (A, b) in enumerate(prop.disjuncts, start=1):
        violation = (y.astype(np.float64) @ A.T - b).max(axis=1)
        np.testing.assert_allclose(z[:, 0] - z[:, k], violation, atol=1e-6)


@pytest.fixture(scope="module")
def random_net(tmp_path_factory):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[4].bias[0] += 0.35  # y_0 - max(y_1, y_2) from about -0.07 to +0.1 over [-1, 1]^3
    path = tmp_path_factory.mktemp("random") / "net.onnx"
    _export(net, 3, path)
    return path


def test_random_conjunctions_agree(random_net, tmp_path):
    """"y_0 is the smallest output" (two constraints at once) around random points at several
    radii: bab, milp and Marabou agree wherever two decide, and both verdicts occur."""
    pytest.importorskip("maraboupy")
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (200, 3)).astype(np.float32)
    y = np.concatenate([OrtModel(random_net)(p[None]) for p in points])
    center = points[np.argmax(y[:, 0] - y[:, 1:].max(axis=1))]  # y_0 the largest by most
    verdicts = []
    for k, eps in enumerate((0.02, 0.1, 0.5, 2.0)):
        box = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} {c - eps:.6f}))\n"
                      f"(assert (<= X_{i} {c + eps:.6f}))\n" for i, c in enumerate(center))
        path = tmp_path / f"p{k}.vnnlib"
        path.write_text(box + "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
                        + "(assert (or (and (>= Y_1 Y_0) (>= Y_2 Y_0))))\n")
        results = {m: verify_instance(random_net, path, m, None, timeout_s=30) for m in METHODS}
        decided = {m: r.result for m, r in results.items() if r.result in ("sat", "unsat")}
        assert len(set(decided.values())) <= 1, (eps, results)
        assert len(decided) >= 2, (eps, results)
        verdicts.append(next(iter(decided.values())))
        for r in results.values():
            if r.result == "sat":
                (prop,) = read_vnnlib(path, (3,), 3)
                assert isinstance(prop, Property) and prop.contains(r.x)
                assert r.y[1] >= r.y[0] and r.y[2] >= r.y[0]
    assert set(verdicts) == {"sat", "unsat"}, verdicts


def test_a_one_channel_conv_net_in_patches_mode(cnn_onnx, tmp_path):
    """The box's per-pixel scale (1, 8, 8), stored without its leading 1, multiplies the
    first conv's patches (it was an AssertionError in auto_LiRPA 0.3): crown answers as in
    matrix mode."""
    x = torch.rand(64, generator=torch.Generator().manual_seed(0))
    label = int(OrtModel(cnn_onnx)(x.reshape(1, 1, 8, 8)).argmax())
    lines = [f"(declare-const X_{i} Real)" for i in range(64)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i, v in enumerate(x.tolist()):
        lines += [f"(assert (>= X_{i} {max(0.0, v - 0.01):.8f}))",
                  f"(assert (<= X_{i} {min(1.0, v + 0.01):.8f}))"]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(3)
                                          if j != label) + "))")
    (tmp_path / "p.vnnlib").write_text("\n".join(lines) + "\n")
    results = [verify_instance(cnn_onnx, tmp_path / "p.vnnlib", "crown",
                               {"conv_mode": mode, "pgd_steps": 0}, timeout_s=20)
               for mode in ("patches", "matrix")]
    assert results[0].error is None and results[0].result == results[1].result, results
