"""The one rule by which a floating-point bound decides anything: proven only beyond a margin.

Bounds come from auto_LiRPA in float32 (big-M constants in float64, below), and the
answer they must agree with is onnxruntime's float32 forward pass. Neither is exact: a margin
bound of +1e-5 on a 3072-input network can sit above a vertex where onnxruntime gives -1e-5. So
a margin counts as proven only when its lower bound exceeds

    tol = ATOL + RTOL * M,

where M bounds the sum of the absolute values of every term behind the two logits over the
box (``OnnxModel.magnitudes``: the graph run on |x| with every weight, bias and constant in
absolute value). Both the rounding error of a float evaluation of the margin (onnxruntime's, in
any summation order) and that of the bound's own terms scale with M, since CROWN's coefficients
are the weights times relaxation slopes in [0, 1].

Why this rule for margins (measured; ``benchmarks/README.md``): on 40 constructed 3072-input
networks whose exact float64 minimum margin is within 3e-6 of 0, |float32 CROWN bound - exact| and
|onnxruntime at the minimising vertex - exact| reached 2.4e-8 * M and 1.9e-8 * M (M ~ 2.5e3, so up
to 6e-5 absolutely). RTOL = 1e-6 is 40x that worst case. On the verification benchmark's trained
models M is larger than that worst case's (the graph on |x| compounds |W| layer by layer): tol is
3.6e-3 to 7.1e-3 on NET1 and 1.4e-2 to 3.0e-2 on M1, every CROWN-verified margin there is at least
21x its tol, and against the code before the tolerance (benchmarks/README.md, with the big-M
constants below) crown and bab changed no verdict; milp one of 80 in one of two runs (verified in
25 s before, timeout at 30 s, under load; both verified it in a rerun). The alternatives cost more
for nothing measured: an exact float64 LP of every near-zero margin still has to allow for
onnxruntime's own float32 error (the same M-scaled term), and outward rounding would mean
re-implementing auto_LiRPA's bound propagation. The worst-case a-priori bound (n * 2^-24 * M for
fan-in n) is 4 orders above anything measured and would discard real verdicts.

Intermediate bounds that become big-M constants or LP bounds (``milp``, bab's leaf LPs) must
contain the exact pre-activations over the box, else the encoding cuts off part of the box. Widened
by RTOL * M of their own neuron they would be safe, but M of a deep neuron compounds |W| layer by
layer (1.8e3 on a neuron whose bounds are exact at 5e-4 in ``tests/unit/verify/test_soundness.py``;
tol 3.6e-3 on NET1's logits), so a neuron whose bound lies that close to 0 becomes unstable: one
more binary and a looser LP (on NET1 at eps 0.05, one binary more on 1 of 20 images;
benchmarks/README.md). So they are computed in float64 instead (``Verifier.bounds(...,
dtype=torch.float64)``: auto_LiRPA on a float64 copy of the model, whose float32 weights are exact
in float64, over the exact float64 box the VNNLIB file states; by ``milp`` only for an image its
float32 bound leaves undecided, at 1.3-1.4x the time of a float32 alpha-CROWN bound) and widened by
RTOL_FLOAT64 * M. Why that is sound, with no measured constant: the bound is a sum of products of
weights, relaxation slopes in [0, 1] and intercepts (at most |l| of their neuron), each term at
most M of the neuron (the graph on |x| takes every weight in absolute value and every slope as 1),
at most 2(L+1) M in all over L layers; a relaxation built on an earlier bound off by d is off by at
most d times its coefficient, adding at most as much again. Float64 arithmetic errs on a sum of n
such terms by at most n * 2^-53 times their absolute sum (any summation order), so the bound errs
by at most about 3(L+1) n 2^-53 M, n the longest chain of sums (every layer's fan-in plus the input
size): 1.7e-12 M on M1 (cnn_4layer, L + 1 = 5, n ~ 2.7e3), 1.2e-11 M on ConvBig on CIFAR (7,
~1.1e4); RTOL_FLOAT64 = 1e-10 covers 3(L+1) n up to 9e5. (The same a-priori bound in float32 is
~1e-3 M: useless, hence the measured RTOL above for what must stay float32.) The widening is then
1e-4 of float32's: 1.8e-7 on that neuron, at most ~3e-6 on M1. A local M (sum_j |W_ij| max(|l_j|,
|u_j|) + |b_i| from the layer's own input bounds) would be smaller but is not a bound: a CROWN
bound's rounding scales with the products of the backward coefficients (|W_k|...|W_1| |x|), which
the compounded M bounds and the local one, where earlier layers cancel, does not (a neuron fed by
weight w from the 5e-4 one above: local M |w| * 5e-4, its CROWN bound's terms |w| * 1.8e3). The
margins are still decided against tol (ATOL + RTOL * M), which covers onnxruntime's own float32
rounding, whatever precision bounded them.

Compact loading (``vfbench.verify.onnx_compact``). A dense grafted site is bounded as
``scale * Conv(x) + bias`` where the file's Gemm holds the float32 products ``fl(scale * w)``,
checked bitwise. For a 0/1 scale (keep masks) those are exact: the same function. For a graft
slope each entry is the correctly rounded product, within u = 2^-24 of it, so the site's value
differs from the file's by at most u * sum |scale w x|, at most u times the magnitude of that
Mul's output (``magnitudes``: the compact graph on |x|), and after the layers behind it (|W|
each, ReLU 1-Lipschitz) by at most u * M on each logit, M the logit's magnitude. With k such
parts a margin differs by at most k u M (to first order in u). Every bound, float64 ones
included, is then of the compact network, consistently (an LP or MILP encodes that same
network), and only the final margin test has to cover the difference: a margin verified with
lower bound > ATOL + RTOL M on the compact network is > (RTOL - 2.4e-8 - k u) M > 0 exactly on
the file's network, and onnxruntime's float32 evaluation of the file (1.9e-8 M measured) stays
positive. COMPACT_INEXACT_PARTS = 4 keeps k u <= RTOL / 4 (RTOL still > 3.8x the worst case
measured plus k u); a model with more such parts is loaded dense.
The float certificate (below) covers compact loading within its own noise model: the rounded
products fl(scale * w) are one more rounding per term of the Mul that the compact graph has
(``float_certificate.rounding_depths`` charges it), and the dense Gemm's zero entries add
nothing (adding an exact 0 rounds nothing).

Where the rule fails, and the fallback: deep networks. M compounds |W| layer by layer, so on
benchmarks/deep_mlp's 784-256x6-10 MLP (eps 0.03) M is 4e6-6.6e6 and tol 5.5-12, above CROWN's
margin bounds of +2.5 to +9.4 on instances whose real float error is ~1e-4: every one was refused
(on 784-256x4-10, tol 0.05-0.18). A rigorous a-priori bound with interval magnitudes is worse
still. So a margin whose root lower bound is in (0, tol] goes to ``float_certificate``: it bounds
onnxruntime's float32 evaluation itself, as the exact network plus bounded noise at every ReLU
input and at the logits (|r_k| <= gamma_n S_k, S_k the local magnitude of the segment computing
the node from bounds on the previous ReLU outputs, not the compounded M), by a float64 CROWN /
alpha-CROWN bound of the noisy network (checked a posteriori to respect the ReLU bounds it
assumed), and proves the margin iff that bound exceeds ATOL + RTOL_FLOAT64 * M: the float64
argument below, with no measured constant. ``Verifier.margins_proven`` is the one place that
applies it: crown, alpha_crown, bab's root (those rows are not searched) and milp's bound
shortcut (plus milp's own tolerance). On deep_mlp's 256x6 net at eps 0.03 the certificate's
bound is within 0.06 of CROWN's float32 one and crown verifies 7 of 15 images instead of 1, at
0.3-0.5 CPU s per certified image (two float64 CROWN passes; benchmarks/README.md,
"float_certificate"). bab's domains keep the float32 rule (a float64 pass per domain would cost
more than the domain). Two cost gates (measured, benchmarks/README.md "deep_mlp"): no certificate
on a model with a ReLU node above ``float_certificate.MAX_NODE_NEURONS`` (conv_big's took 81-121 s
per image), and bab certifies only models whose nodes are all small (``refine_max_neurons``);
elsewhere its search closes rows in (0, tol] sooner (cnn_4layer: 3.3 s of certificate for a row
the search closed anyway).

What stays float32 with its RTOL * M widening: bab's domain bounds (beta-CROWN). A leaf LP
intersects them with the image's float64 CROWN bounds (both contain the exact values), so a
neuron float64 proves stable gets no binary; a domain is closed as infeasible only where
lower > upper + 2 RTOL * M (an inversion within it stays open and is bounded again: it costs
domains, never a verdict). A non-finite bound (NaN, inf) is never a decision: it is a
VfbenchError naming where it came from, which the verifier pipeline turns into an ``error``
record.
"""

from __future__ import annotations

import torch

from vfbench.errors import VfbenchError

RTOL = 1e-6
ATOL = 1e-6
# Intermediate bounds computed in float64 (the big-M constants): see the docstring.
RTOL_FLOAT64 = 1e-10
_BOUND_RTOL = {torch.float32: RTOL, torch.float64: RTOL_FLOAT64}
# Compact parts with inexact (rounded) per-neuron scales a model may have: see the docstring.
COMPACT_INEXACT_PARTS = int(RTOL / 4 / 2.0 ** -24)


def margin_slack(magnitude: torch.Tensor) -> torch.Tensor:
    """A margin's tolerance ATOL + RTOL * M for terms of magnitude M (elementwise)."""
    return ATOL + RTOL * magnitude


def bound_slack(magnitude: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The tolerance of an intermediate bound computed in ``dtype``: RTOL * M (float32) or
    RTOL_FLOAT64 * M (float64). Rounding is relative to the terms (a neuron whose terms are all
    0, grafted or pruned, is exactly 0 and stays stable)."""
    if dtype not in _BOUND_RTOL:
        raise VfbenchError(f"bounds computed in {dtype}: no tolerance is known for it")
    return _BOUND_RTOL[dtype] * magnitude


def margin_magnitudes(logit_magnitudes: torch.Tensor, labels) -> torch.Tensor:
    """M of each margin y_label - y_j, rows as ``lirpa.other_classes``: (B, K-1) from the
    logits' magnitudes (B, K)."""
    rows = []
    num_classes = logit_magnitudes.shape[1]
    for b, label in enumerate(torch.as_tensor(labels).reshape(-1).tolist()):
        others = [j for j in range(num_classes) if j != label]
        rows.append(logit_magnitudes[b, label] + logit_magnitudes[b, others])
    return torch.stack(rows)


def check_finite(values: torch.Tensor, where: str) -> None:
    """VfbenchError if any value is NaN or infinite, naming ``where`` and the first index."""
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise VfbenchError(f"{where}: non-finite bound {float(values[index])} at index {index}; "
                           "no verdict can rest on it")


def proven(lower: torch.Tensor, tol: torch.Tensor | float, where: str) -> torch.Tensor:
    """Which margins ``lower`` proves positive: lower > tol (elementwise). A non-finite lower
    bound is a VfbenchError (``where`` names it), never a decision."""
    check_finite(lower, where)
    return lower > tol


def widen(lower: torch.Tensor, upper: torch.Tensor, tol: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """[lower - tol, upper + tol]: float bounds made safe to encode (big-M, stable or not)."""
    return lower - tol, upper + tol


def infeasible(lower: torch.Tensor, upper: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """Where lower > upper + 2 tol: an empty interval beyond what rounding can explain."""
    return lower > upper + 2 * tol
