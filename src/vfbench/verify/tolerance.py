"""The one rule by which a floating-point bound decides anything: proven only beyond a margin.

Bounds come from auto_LiRPA in float32, big-M constants and domain bounds from them, and the
answer they must agree with is onnxruntime's float32 forward pass. Neither is exact: a margin
bound of +1e-5 on a 3072-input network can sit above a vertex where onnxruntime gives -1e-5. So
a margin counts as proven only when its lower bound exceeds

    tol = ATOL + RTOL * M,

where M bounds the sum of the absolute values of every term behind the two logits over the
box (``OnnxModel.magnitudes``: the graph run on |x| with every weight, bias and constant in
absolute value). Both the rounding error of a float evaluation of the margin (onnxruntime's, in
any summation order) and that of the bound's own terms scale with M, since CROWN's coefficients
are the weights times relaxation slopes in [0, 1].

Why this rule (measured; ``benchmarks/README.md``): on 40 constructed 3072-input networks whose
exact float64 minimum margin is within 3e-6 of 0, |float32 CROWN bound - exact| and
|onnxruntime at the minimising vertex - exact| reached 2.4e-8 * M and 1.9e-8 * M (M ~ 2.5e3,
so up to 6e-5 absolutely). RTOL = 1e-6 is 40x that worst case. On the verification benchmark's
trained models M is larger than that worst case's (the graph on |x| compounds |W| layer by layer):
tol is 3.6e-3 to 7.1e-3 on NET1 and 1.4e-2 to 3.0e-2 on M1, every CROWN-verified margin there is
at least 21x its tol, CROWN's verdicts did not change (bab's one timeout was the load: it verified
with a longer timeout), and milp lost 2 of 80 verdicts
(verified -> timeout) to the widened big-M bounds (benchmarks/README.md). The alternatives cost more
for nothing measured: an exact float64 LP of every near-zero margin still has to allow for
onnxruntime's own float32 error (the same M-scaled term), and outward rounding would mean
re-implementing auto_LiRPA's bound propagation. The worst-case a-priori bound (n * 2^-24 * M
for fan-in n) is 4 orders above anything measured and would discard real verdicts.

The same relative rule (RTOL * M, no absolute part: a neuron whose terms are all 0 is exactly 0),
per neuron with M of that neuron's input, widens intermediate bounds before they
become big-M constants or decide that a domain is infeasible (lower > upper). A non-finite bound
(NaN, inf) is never a decision: it is a VfbenchError naming where it came from, which the
verifier pipeline turns into an ``error`` record.
"""

from __future__ import annotations

import torch

from vfbench.errors import VfbenchError

RTOL = 1e-6
ATOL = 1e-6


def margin_slack(magnitude: torch.Tensor) -> torch.Tensor:
    """A margin's tolerance ATOL + RTOL * M for terms of magnitude M (elementwise)."""
    return ATOL + RTOL * magnitude


def bound_slack(magnitude: torch.Tensor) -> torch.Tensor:
    """An intermediate bound's tolerance RTOL * M: rounding is relative to the terms (a
    neuron whose terms are all 0, grafted or pruned, is exactly 0 and stays stable)."""
    return RTOL * magnitude


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
