"""Soundness under floating point: constructed networks on which a verifier that decides with no
margin, drops a NaN, closes a one-ulp inversion, or bounds a non-zero Pad as zero says
``verified`` for a property that onnxruntime violates. Every verifier must answer right,
``unknown`` or ``error`` instead. PGD is off: the verifiers' own decisions are under test.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn
from verify_nets import export

from vfbench.errors import VfbenchError
from vfbench.verify import bab, lirpa, milp
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.shard import verify_shard
from vfbench.verify.verifiers import VERIFIERS

ALL = ("ibp", "crown", "alpha_crown", "bab", "milp")
NO_PGD = {"pgd_steps": 0}


def _verify(name, module, x, label, eps, options=None):
    verifier = VERIFIERS[name](module, {**NO_PGD, **(options or {})}, "cpu", name=name)
    return verifier.verify(x, label, eps, 60.0, image=0)


# --- a margin within float32 rounding of 0 ---------------------------------------------------

WIDE = 3072
# Centre and radius multiples of 2^-8: the ball's corners are exact in float32, so the bounded
# box is the VNNLIB box and only the bound's own rounding is at play.
WIDE_EPS = 2.0**-6


def _wide_net(seed: int, shift: float = 0.0) -> tuple[nn.Module, torch.Tensor]:
    """y0 - y1 = w . x + b over 3072 inputs, b set so that the exact minimum over the ball is
    ~0 (float64, with the float32 weights), then moved by ``shift``."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(WIDE, 2)).eval()
    x = torch.randint(0, 257, (1, WIDE), generator=gen).float() / 256
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, WIDE, generator=gen))
        net[1].bias.zero_()
        net[1].bias[0] = -_exact_minimum(net, x) + shift
    return net, x


def _box(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    center = x.reshape(-1).double().numpy()
    return np.clip(center - WIDE_EPS, 0, 1), np.clip(center + WIDE_EPS, 0, 1)


def _exact_minimum(net, x) -> float:
    w = net[1].weight.detach().double().numpy()
    b = net[1].bias.detach().double().numpy()
    lo, hi = _box(x)
    d = w[0] - w[1]
    return float(np.minimum(d * lo, d * hi).sum() + b[0] - b[1])


def _worst_vertex(net, x) -> np.ndarray:
    """The vertex minimising the margin, as float32 inside the float64 box."""
    lo, hi = _box(x)
    d = (net[1].weight[0] - net[1].weight[1]).detach().double().numpy()
    vertex = np.where(d > 0, lo, hi)
    point = vertex.astype(np.float32)
    point = np.where(point < lo, np.nextafter(point, np.float32(1)), point)
    point = np.where(point > hi, np.nextafter(point, np.float32(0)), point)
    return point.astype(np.float32)[None]


def _crown_and_onnxruntime(path, net, x) -> tuple[float, float]:
    """(CROWN's float32 margin lower bound, onnxruntime's margin at the worst vertex)."""
    module = load_onnx(path)
    bm = lirpa.bounded_model(module, x)
    lower = float(lirpa.compute_margin_bounds(bm, x, WIDE_EPS, [0], "crown").lower[0, 0])
    logits = OrtModel(path)(_worst_vertex(net, x))[0]
    return lower, float(logits[0] - logits[1])


@pytest.fixture(scope="module")
def near_zero(tmp_path_factory):
    """A network whose float32 CROWN bound is > 0 while onnxruntime gives a negative margin at
    a vertex of the ball: the bias is moved between the two (they differ by float32 rounding
    of sums of 3072 terms)."""
    folder = tmp_path_factory.mktemp("near_zero")
    for seed in range(10):
        net, x = _wide_net(seed)
        path = export(net, folder / f"probe{seed}.onnx", x)
        lower, at_vertex = _crown_and_onnxruntime(path, net, x)
        if lower - at_vertex < 4e-6:
            continue
        net, x = _wide_net(seed, shift=-(lower + at_vertex) / 2)
        path = export(net, folder / "near_zero.onnx", x)
        lower, at_vertex = _crown_and_onnxruntime(path, net, x)
        if lower > 0 > at_vertex:
            return load_onnx(path), x[0], net
    pytest.fail("no seed gives a float32 bound above an onnxruntime violation")


def test_near_zero_network_fools_a_bound_without_margin(near_zero):
    module, x, net = near_zero
    lower, at_vertex = _crown_and_onnxruntime(module.onnx_path, net, x[None])
    assert lower > 0 > at_vertex
    assert abs(_exact_minimum(net, x[None])) < 1e-4


@pytest.mark.parametrize("name", ALL)
def test_near_zero_margin_is_not_verified(name, near_zero):
    module, x, _ = near_zero
    record = _verify(name, module, x, 0, WIDE_EPS)
    assert record["status"] in ("unknown", "falsified"), record["status"]


# --- a NaN bound -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_nan_bound_is_an_error_naming_it(name, tmp_path, monkeypatch):
    """NaN in the bound of the one falsifiable margin (class 1); class 2's needs branching."""
    module, x, label, eps = _tent_net(tmp_path, safe_tent=True)
    original = lirpa.BoundedModule.compute_bounds

    def nan_margins(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if kwargs.get("C") is None or out[0] is None:
            return out
        lower = out[0].clone()
        lower[:, 0] = float("nan")
        return (lower, *out[1:])

    monkeypatch.setattr(lirpa.BoundedModule, "compute_bounds", nan_margins)
    record = _verify(name, module, x, label, eps)
    assert record["status"] == "error", record["status"]
    assert "non-finite bound nan" in record["error"] and "margin lower bound" in record["error"]


# --- a one-ulp inversion in a root bound -----------------------------------------------------

def _tent_net(tmp_path, safe_tent: bool = False) -> tuple:
    """Hidden neuron 0 is constant (no input weights, bias 1): logit 0 = 1. Logit 1 is a tent
    in z = x_0 - 0.5, 100 (relu(z - 0.1) - 2 relu(z - 0.2) + relu(z - 0.3)), 10 at z = 0.2 and 0
    outside [0.1, 0.3]: over the 0.4-ball around 0.5 the margin is 1 at the centre and at every
    vertex (where linear bounds put their minimisers), and -9 at z = 0.2. ``safe_tent`` adds
    logit 2, the same tent in x_1 scaled to peak at 0.9: a margin no root bound proves, but
    branching does."""
    tents = 2 if safe_tent else 1
    hidden, out = nn.Linear(4, 1 + 3 * tents), nn.Linear(1 + 3 * tents, 1 + tents)
    with torch.no_grad():
        hidden.weight.zero_()
        hidden.bias.zero_()
        hidden.bias[0] = 1.0
        out.weight.zero_()
        out.weight[0, 0] = 1.0
        out.bias.zero_()
        for t, peak in enumerate((10.0, 0.9)[:tents]):
            rows = slice(1 + 3 * t, 4 + 3 * t)
            hidden.weight[rows, t] = 1.0
            hidden.bias[rows] = torch.tensor([-0.6, -0.7, -0.8])
            out.weight[1 + t, rows] = torch.tensor([1.0, -2.0, 1.0]) * peak * 10
    net = nn.Sequential(hidden, nn.ReLU(), out).eval()
    x = torch.full((4,), 0.5)
    return load_onnx(export(net, tmp_path / "tent.onnx", x[None])), x, 0, 0.4


@pytest.mark.parametrize("name", ALL)
def test_one_ulp_inverted_root_bound_closes_nothing(name, tmp_path, monkeypatch):
    module, x, label, eps = _tent_net(tmp_path)
    peak = np.array([[0.7, 0.5, 0.5, 0.5]], np.float32)
    logits = OrtModel(module.onnx_path)(peak)[0]
    assert logits[1] > logits[0]  # falsifiable
    original = lirpa.pre_activation_bounds

    def inverted(*args, **kwargs):
        bounds = [(lo.clone(), up.clone()) for lo, up in original(*args, **kwargs)]
        lower, upper = bounds[0]
        upper[:, 0] = torch.nextafter(lower[:, 0], torch.tensor(-np.inf))  # true value: 1
        return bounds

    monkeypatch.setattr(lirpa, "pre_activation_bounds", inverted)
    record = _verify(name, module, x, label, eps)
    assert record["status"] in ("falsified", "unknown"), record["status"]


# --- Pad with a non-zero constant ------------------------------------------------------------

class _PadNet(nn.Module):
    """Pads a 4x4 image with 1s; logit 0 = sum(inner) - 0.5 * sum(border) + 3.1, logit 1 = 0:
    the true margin at the centre 0.5 is 1.1 and -0.5 at the ball's low corner (eps 0.1); a
    bound that takes the border as 0 sees 9.5 there."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(36, 2)
        inner = torch.zeros(6, 6)
        inner[1:5, 1:5] = 1.0
        with torch.no_grad():
            self.out.weight.copy_(torch.stack([torch.where(inner > 0, 1.0, -0.5).reshape(-1),
                                               torch.zeros(36)]))
            self.out.bias.copy_(torch.tensor([3.1, 0.0]))

    def forward(self, x):
        return self.out(torch.flatten(torch.nn.functional.pad(x, (1, 1, 1, 1), value=1.0), 1))


@pytest.fixture(scope="module")
def pad_onnx(tmp_path_factory):
    x = torch.full((1, 1, 4, 4), 0.5)
    return export(_PadNet().eval(), tmp_path_factory.mktemp("pad") / "pad.onnx", x), x[0]


def test_nonzero_pad_is_refused_at_load(pad_onnx):
    path, x = pad_onnx
    logits = OrtModel(path)(np.full((1, 1, 4, 4), 0.4, np.float32))[0]
    assert logits[1] > logits[0]  # a point of the 0.1-ball is misclassified
    with pytest.raises(VfbenchError, match="Pad with constant value 1.0 is not supported"):
        load_onnx(path)


@pytest.mark.parametrize("name", ALL)
def test_nonzero_pad_is_never_verified(name, pad_onnx, tmp_path):
    path, x = pad_onnx
    with pytest.raises(VfbenchError, match="Pad with constant value"):
        verify_shard(path, [(0, x.numpy(), 0)], 0.1, name, NO_PGD, 30.0,
                     tmp_path / "journal.jsonl")
    assert not (tmp_path / "journal.jsonl").exists() or not (
        tmp_path / "journal.jsonl").read_text()


# --- the input box -----------------------------------------------------------------------------

def test_bounded_box_contains_the_vnnlib_box():
    """The float32 box handed to auto_LiRPA contains the float64 box the VNNLIB file states."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (1, 3, 32, 32), generator=gen).float() / 255)
    for eps in (1 / 255, 2 / 255, 0.01, 0.03, 0.1):
        ptb = lirpa.ball(x, eps).ptb
        center = x.double()
        assert (ptb.x_L.double() <= (center - eps).clamp(0, 1)).all()
        assert (ptb.x_U.double() >= (center + eps).clamp(0, 1)).all()
        assert (ptb.x_U - ptb.x_L).max() <= 2 * eps + 1e-6  # outward by one float32 step


# --- the big-M constants' safety margin ---------------------------------------------------------

class _Spy:
    """Records the binaries of every MILP/LP ``milp.encode_ball`` builds."""

    def __init__(self, monkeypatch):
        self.binaries: list[int] = []
        original = milp.encode_ball

        def encode_ball(*args, **kwargs):
            encoded = original(*args, **kwargs)
            self.binaries.append(encoded.binaries)
            return encoded

        monkeypatch.setattr(milp, "encode_ball", encode_ball)


def _cancelling_net(tmp_path) -> tuple:
    """A stable neuron with a large magnitude: g0 = relu(h1 - h2 - 5e-4), h1 = relu(1000 x0),
    h2 = relu(1000 x0 - 1e-3), is 5e-4 everywhere on the 0.4-ball around 0.5 (CROWN's bounds
    are exact: h1, h2 are stably active), while the sum of its terms is ~1800, so float32's
    1e-6 * M (1.8e-3) would widen it across 0. Margin y0 - y1 = 1 + g0 - tent(x1), the tent
    (g1 - 2 g2 + g3, peak 0.9 at x1 = 0.7) over 3 unstable neurons: >= 0.1 everywhere, which
    no root bound proves (the MILP must decide it, with 3 binaries)."""
    first, second, out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
    with torch.no_grad():
        for layer in (first, second, out):
            layer.weight.zero_()
            layer.bias.zero_()
        first.bias[0] = 1.0
        first.weight[1, 0] = first.weight[2, 0] = 1000.0
        first.bias[2] = -1e-3
        first.weight[3, 1] = 1.0
        second.weight[0, 1], second.weight[0, 2], second.bias[0] = 1.0, -1.0, -5e-4
        second.weight[1:, 3] = 1.0
        second.bias[1:] = torch.tensor([-0.6, -0.7, -0.8])
        out.weight[0, 0], out.bias[0] = 1.0, 1.0
        out.weight[1, 1:] = torch.tensor([1.0, -2.0, 1.0]) * 9
    net = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), out).eval()
    x = torch.full((4,), 0.5)
    return load_onnx(export(net, tmp_path / "cancelling.onnx", x[None])), x, 0, 0.4


def test_big_m_tolerance_turns_no_stable_neuron_unstable(tmp_path, monkeypatch):
    module, x, label, eps = _cancelling_net(tmp_path)
    spy = _Spy(monkeypatch)
    record = _verify("milp", module, x, label, eps)
    assert record["status"] == "verified"
    assert spy.binaries == [3]  # the tent's neurons; g0 stays stable


def test_leaf_lp_tolerance_turns_no_stable_neuron_unstable(tmp_path, monkeypatch):
    """A fully split domain (the tent's 3 neurons fixed) is an LP: g0, stable by the domain's
    float32 bound 5e-4 but within its float32 tolerance of 0, needs no binary."""
    module, x, label, eps = _cancelling_net(tmp_path)
    verifier = VERIFIERS["bab"](module, NO_PGD, "cpu")
    bounds = verifier.bounds(x[None], [label], eps, "crown")
    search = bab._Search(verifier, x[None], label, eps, time.perf_counter() + 30,
                         bounds.pre_activation, bounds.tol[0], bounds.pre_tol)
    assert float(search.lower0[1][0]) > 0 and search.pre_tol[1][0] > search.lower0[1][0]
    splits = ((1, 1, 1), (1, 2, -1), (1, 3, -1))  # x1 in [0.6, 0.7]: the tent's rising side
    spy = _Spy(monkeypatch)
    search._leaf(bab.Domain(lower=-1.0, order=0, spec=0, splits=splits, betas=(0.0,) * 3,
                            alphas=[], refined={}))
    assert spy.binaries == [0]
    assert not search.undecided_leaf and search.counterexample is None and search.proven > 0
