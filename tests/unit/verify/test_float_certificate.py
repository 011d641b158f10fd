"""The float certificate (``vfbench.verify.float_certificate``): margins the float32 rule leaves in
(0, tol] proven by bounding onnxruntime's float32 evaluation itself.

- a deep narrow MLP whose compounded magnitude M makes tol (ATOL + RTOL * M) larger than a
  clearly positive margin: the old rule refuses, the certificate proves it; crown and bab verify;
- never a false proof: the networks of test_soundness.py / test_soundness_stress.py whose exact
  float64 minimum margin is within ~1e-7 of 0, and negative margins, are refused, and the
  certificate never exceeds the exact minimum; at points of the ball, onnxruntime's float32
  margin lies within the noise-propagated bounds (and without the noise it would not);
- an inconsistent noise model (assumed ReLU bounds too small) proves nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_onnx_compact import masked_cnn  # noqa: F401  (fixture)
from test_soundness import WIDE_EPS, _exact_minimum, _wide_net, _worst_vertex
from test_soundness_stress import _network, _witness_margins
from torch import nn
from verify_nets import export

from vfbench.verify import float_certificate
from vfbench.verify.base import clip_into_ball
from vfbench.verify.float_certificate import FloatCertifier, assumed_upper_bounds
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.verifiers import VERIFIERS

NO_PGD = {"pgd_steps": 0}
DEEP_EPS = 0.001


def _deep_net(tmp_path, seed: int = 2, depth: int = 8, width: int = 16, inputs: int = 8):
    """784-free stand-in for the deep MNIST MLPs: 8 hidden ReLU layers of 16 with weights
    1.5 / sqrt(fan-in), where |W| compounds (tol ~ 1.3) but the network does not."""
    gen = torch.Generator().manual_seed(seed)
    dims = [inputs] + [width] * depth + [3]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        linear = nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(b, a, generator=gen) * 1.5 / a ** 0.5)
            linear.bias.copy_(torch.randn(b, generator=gen) * 0.1)
        layers += [linear, nn.ReLU()]
    net = nn.Sequential(*layers[:-1]).eval()
    x = torch.rand(1, inputs, generator=gen)
    return load_onnx(export(net, tmp_path / "deep.onnx", x)), x[0], int(net(x).argmax())


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    return _deep_net(tmp_path_factory.mktemp("deep"))


def test_deep_net_margin_refused_by_tol_is_certified(deep):
    module, x, label = deep
    verifier = VERIFIERS["crown"](module, NO_PGD, "cpu")
    bounds = verifier.bounds(x[None], [label], DEEP_EPS, "crown")
    lower, tol = bounds.lower[0], bounds.tol[0]
    refused = (lower > 0) & (lower <= tol)
    assert bool(refused.any()) and float(lower[refused].min()) > 0.1  # clearly positive
    certificate = FloatCertifier(module, "cpu").certify(
        x[None], label, DEEP_EPS, assumed_upper_bounds(bounds, 0))
    assert certificate.consistent
    assert bool(certificate.proven.all())
    # The certificate costs the noise only: far below the old tolerance.
    assert float((lower - certificate.lower).max()) < 1e-2 * float(tol.min())


@pytest.mark.parametrize("name", ["crown", "alpha_crown", "bab", "milp"])
def test_deep_net_is_verified(name, deep):
    module, x, label = deep
    options = {**NO_PGD, **({"solver": "highs"} if name == "milp" else {})}
    record = VERIFIERS[name](module, options, "cpu", name=name).verify(x, label, DEEP_EPS,
                                                                       60.0, image=0)
    assert record["status"] == "verified", record
    if name == "bab":
        assert record["domains"] == 0  # proven at the root, nothing searched


def test_bab_leaves_the_certificate_to_small_node_models(deep):
    """With a ReLU node above refine_max_neurons (a CNN's, where the certificate's float64
    matrix-mode pass is dear and the search closes rows in (0, tol] anyway), bab searches the
    rows the float32 rule refuses instead of certifying them."""
    module, x, label = deep
    record = VERIFIERS["bab"](module, {**NO_PGD, "refine_max_neurons": 8}, "cpu").verify(
        x, label, DEEP_EPS, 3.0, image=0)
    assert record["status"] != "verified" or record["domains"] > 0, record


def test_no_certificate_beyond_the_node_size_cap(deep, monkeypatch):
    """A ReLU node above MAX_NODE_NEURONS (conv_big's 25,088: minutes per image in float64
    matrix mode) leaves the margin to the float32 rule: crown no longer verifies the deep net."""
    module, x, label = deep
    monkeypatch.setattr(float_certificate, "MAX_NODE_NEURONS", 8)
    record = VERIFIERS["crown"](module, NO_PGD, "cpu").verify(x, label, DEEP_EPS, 60.0, image=0)
    assert record["status"] == "unknown", record


def _ort_margin(ort: OrtModel, point: np.ndarray, label: int, other: int) -> float:
    logits = ort(point.astype(np.float32))[0]
    return float(logits[label]) - float(logits[other])


def test_near_zero_wide_net_is_refused(tmp_path):
    """test_soundness's 3072-input margin with exact minimum ~0: CROWN's float32 bound and
    onnxruntime's vertex differ by ~1e-5; the certificate stays below both."""
    net, x = _wide_net(0)
    module = load_onnx(export(net, tmp_path / "wide.onnx", x))
    verifier = VERIFIERS["crown"](module, NO_PGD, "cpu")
    bounds = verifier.bounds(x, [0], WIDE_EPS, "crown")
    certificate = FloatCertifier(module, "cpu").certify(x, 0, WIDE_EPS,
                                                       assumed_upper_bounds(bounds, 0))
    exact = _exact_minimum(net, x)
    at_vertex = _ort_margin(OrtModel(module.onnx_path), _worst_vertex(net, x), 0, 1)
    assert abs(exact) < 1e-4
    assert not bool(certificate.proven.any())
    assert float(certificate.lower[0]) <= min(exact, at_vertex)


def _mlp(layers) -> nn.Sequential:
    """The ReLU MLP of float64 (W, b) pairs (float32 values)."""
    modules: list[nn.Module] = []
    for w, b in layers:
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(w))
            linear.bias.copy_(torch.as_tensor(b))
        modules += [linear, nn.ReLU()]
    return nn.Sequential(*modules[:-1]).eval()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("shift", [0.0, -1e-3])
def test_never_proves_a_margin_at_or_below_zero(seed, shift, tmp_path):
    """test_soundness_stress's networks, property 0 at exact minimum margin ~0 +- 1e-7 (and
    moved 1e-3 below): never proven; the certificate stays below the exact minimum margin and
    onnxruntime's at its minimiser."""
    path, layers, properties = _network(seed, tmp_path)
    x, eps, label = properties[0]
    if shift:
        layers[-1][1][label] += shift
        path = export(_mlp(layers), tmp_path / "shifted.onnx", x[None])
    module, ort = load_onnx(path), OrtModel(path)
    witness = _witness_margins(layers, ort, x, eps, label)
    assert witness is not None
    exact, in_ort = witness
    assert exact < 1e-6
    bounds = VERIFIERS["crown"](module, NO_PGD, "cpu").bounds(x[None], [label], eps, "crown")
    certificate = FloatCertifier(module, "cpu").certify(x[None], label, eps,
                                                       assumed_upper_bounds(bounds, 0))
    assert float(certificate.lower.min()) <= min(exact, in_ort)
    assert not bool(certificate.proven.all())
    for name in ("crown", "bab"):
        record = VERIFIERS[name](module, NO_PGD, "cpu").verify(x, label, eps, 20.0)
        assert record["status"] != "verified", (name, record)


def _gemms(module) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of each Gemm of a loaded MLP, as exported (transB = 1), in float64."""
    return [tuple(module.constant(n).detach().double().numpy() for n in step.inputs[1:3])
            for step in module.steps if step.module.op_type == "Gemm"]


def _point_interval(certifier: FloatCertifier, module, point: torch.Tensor, label: int):
    """The certificate at one point (eps 0: only the noise is bounded): (lower, upper, slack)
    of the margins there."""
    bounds = VERIFIERS["crown"](module, NO_PGD, "cpu").bounds(point[None], [label], 0.0, "crown")
    certificate = certifier.certify(point[None], label, 0.0, assumed_upper_bounds(bounds, 0),
                                    bound_upper=True)
    assert certificate.consistent
    return certificate.lower, certificate.upper, certificate.threshold


def _vertices_and_samples(x: torch.Tensor, eps: float, count: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (count, *x.shape), generator=gen) * 2 - 1
    samples = x + eps * (2 * torch.rand((count, *x.shape), generator=gen) - 1)
    return [torch.as_tensor(clip_into_ball(p, x, eps)) for p in (*(x + eps * signs), *samples)]


def test_onnxruntime_margin_lies_within_the_noise_bounds(deep, tmp_path):
    """At vertices and samples of the ball: onnxruntime's float32 margins and the exact float64
    ones both lie in the certificate's [lower, upper] at the point, whose width is the noise's
    effect (small against the old tolerance)."""
    module, x, label = deep
    ort, certifier = OrtModel(module.onnx_path), FloatCertifier(module, "cpu")
    net64 = _mlp(_gemms(module)).double()
    others = [j for j in range(module.num_classes) if j != label]
    for point in _vertices_and_samples(x, DEEP_EPS, 4):
        lower, upper, slack = _point_interval(certifier, module, point, label)
        logits = ort(point[None].numpy())[0]
        with torch.no_grad():
            exact = net64(point[None].double())[0]
        for row, j in enumerate(others):
            for margin in (float(logits[label]) - float(logits[j]),
                           float(exact[label] - exact[j])):
                assert lower[row] - slack[row] <= margin <= upper[row] + slack[row]
        assert float((upper - lower).max()) < 1e-2


def test_without_the_noise_onnxruntime_falls_outside(tmp_path, monkeypatch):
    """The noise is what covers onnxruntime: on the 3072-input net, with gamma forced to 0 the
    interval at the worst vertex misses onnxruntime's margin; with it, contains it."""
    net, x = _wide_net(0)
    module = load_onnx(export(net, tmp_path / "wide.onnx", x))
    vertex = torch.as_tensor(_worst_vertex(net, x))[0]
    at_vertex = _ort_margin(OrtModel(module.onnx_path), vertex[None].numpy(), 0, 1)
    lower, upper, slack = _point_interval(FloatCertifier(module, "cpu"), module, vertex, 0)
    assert lower[0] - slack[0] <= at_vertex <= upper[0] + slack[0]
    monkeypatch.setattr(float_certificate, "gamma", lambda n: 0.0)
    lower, upper, slack = _point_interval(FloatCertifier(module, "cpu"), module, vertex, 0)
    assert not lower[0] - slack[0] <= at_vertex <= upper[0] + slack[0]


def test_inconsistent_noise_model_proves_nothing(deep):
    """ReLU bounds assumed too small (0: every S_k of the hidden layers from |b| only): the
    noisy bounds break them, so no proof, although the bound itself would pass; a second round
    (assuming what the first reached) restores the proof."""
    module, x, label = deep
    bounds = VERIFIERS["crown"](module, NO_PGD, "cpu").bounds(x[None], [label], DEEP_EPS,
                                                              "crown")
    too_small = [torch.zeros_like(up, dtype=torch.float64) for _, up in bounds.pre_activation]
    certifier = FloatCertifier(module, "cpu")
    certificate = certifier.certify(x[None], label, DEEP_EPS, too_small, rounds=1)
    assert not certificate.consistent
    assert bool((certificate.lower > certificate.threshold).all())
    assert not bool(certificate.proven.any())
    assert bool(certifier.certify(x[None], label, DEEP_EPS, too_small, rounds=2).proven.all())


def test_rounding_depths_count_fan_in_and_bias(deep):
    module, _, _ = deep
    assert float_certificate.rounding_depths(module) == [9] + [17] * 8


@pytest.mark.parametrize("fixture", ["mlp_onnx", "cnn_onnx", "grafted_cnn"])
def test_certificate_runs_on_the_campaign_shapes(fixture, synthetic, request):
    """BatchNorm MLP, conv net, grafted conv net (Mul by a mask): the certificate is
    consistent and within its noise of CROWN's float32 bound (its own CROWN, in float64)."""
    path = request.getfixturevalue(fixture)
    module = load_onnx(path[2] if fixture == "grafted_cnn" else path)
    x = (synthetic[0][:1] if fixture == "mlp_onnx"
         else torch.rand((1, *module.input_shape), generator=torch.Generator().manual_seed(0)))
    label = int(module(x).argmax())
    bounds = VERIFIERS["crown"](module, NO_PGD, "cpu").bounds(x, [label], 0.01, "crown")
    certificate = FloatCertifier(module, "cpu").certify(x, label, 0.01,
                                                       assumed_upper_bounds(bounds, 0))
    assert certificate.consistent
    assert torch.allclose(certificate.lower, bounds.lower[0].double(), atol=1e-3)


def test_compact_loaded_model_covers_onnxruntime_on_the_dense_file(masked_cnn):  # noqa: F811
    """A masked CNN loaded compact (Conv * scale + bias for the file's dense Gemms, one part
    with rounded slopes): onnxruntime's margins on the file lie within the certificate of the
    compact model at points of a ball (the rounded products are a rounding the Mul's depth
    charges)."""
    _, path, xs = masked_cnn
    module, ort = load_onnx(path), OrtModel(path)
    assert "Mul" in [s.module.op_type for s in module.steps]  # loaded compact
    certifier = FloatCertifier(module, "cpu")
    x = xs[0]
    label = int(module(x[None]).argmax())
    others = [j for j in range(module.num_classes) if j != label]
    for point in _vertices_and_samples(x, 0.05, 3):
        lower, upper, slack = _point_interval(certifier, module, point, label)
        logits = ort(point[None].numpy())[0]
        for row, j in enumerate(others):
            margin = float(logits[label]) - float(logits[j])
            assert lower[row] - slack[row] <= margin <= upper[row] + slack[row]
