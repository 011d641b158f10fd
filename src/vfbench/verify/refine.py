"""Counterexamples from other tools, confirmed by onnxruntime or refined until they are.

External solvers (Marabou, VNN-COMP tools) work in floating point of their own: about half of
Marabou's ``sat`` points lie exactly on the decision boundary, where onnxruntime's float32 pass
may put the label's score a hair above the others. Such a point is not thrown away and not
trusted: a few PGD steps from it, inside the box, look for a nearby point that onnxruntime
confirms; if none is found, the verdict is ``unknown`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vfbench.properties import Property
from vfbench.verify.base import Decision
from vfbench.verify.options import REFINE_STEPS


def _slack(prop: Property, y: torch.Tensor) -> torch.Tensor:
    """Property.unsafe_slack for a batch of outputs y (B, K), differentiable."""
    per = []
    for A, b in prop.disjuncts:
        A_t = torch.as_tensor(A, dtype=y.dtype, device=y.device)
        b_t = torch.as_tensor(b, dtype=y.dtype, device=y.device)
        per.append((b_t - y @ A_t.T).min(dim=1).values)
    return torch.stack(per, dim=1).max(dim=1).values


def refine_counterexample(model: torch.nn.Module, prop: Property, point: np.ndarray,
                          confirm: Callable[[np.ndarray], bool], steps: int = REFINE_STEPS
                          ) -> tuple[np.ndarray | None, str | None]:
    """(a point of the box that ``confirm`` accepts, None) or (None, why not).

    ``point``: the tool's counterexample, clipped into the box first; then up to ``steps``
    signed-gradient steps on the unsafe slack (``model`` is the ONNX model as torch), each of
    a shrinking fraction of the box's width, every iterate clipped into the box and offered to
    ``confirm`` (the onnxruntime check).
    """
    current = prop.clip_into_box(point)
    if confirm(current):
        return current, None
    device = next(iter(model.parameters()), torch.empty(0)).device
    width = torch.as_tensor(prop.upper - prop.lower, dtype=torch.float32, device=device)
    x = torch.as_tensor(current, device=device)[None]
    for step in range(steps):
        x = x.detach().requires_grad_(True)
        slack = _slack(prop, model(x).double()).sum()
        (grad,) = torch.autograd.grad(slack, x)
        size = width * (0.05 * 0.7 ** step)
        candidate = prop.clip_into_box((x + size * grad.sign()).detach().cpu().numpy()[0])
        if confirm(candidate):
            return candidate, None
        x = torch.as_tensor(candidate, device=device)[None]
    return None, (f"the tool's counterexample is not one in onnxruntime and {steps} PGD steps "
                  "from it found none (a point on the decision boundary)")


def external_counterexample(model: torch.nn.Module, props: list[Property], point: np.ndarray,
                            confirm: Callable[[Property, np.ndarray], bool],
                            steps: int = REFINE_STEPS) -> Decision:
    """The decision for a tool's ``sat`` with input ``point``: ``falsified`` with a point that
    ``confirm`` accepts for one of the properties (the tool's, or refined), else ``unknown``
    with the reason."""
    why = None
    for prop in props:
        if point.size != prop.lower.size:
            return Decision("unknown", reason=f"the tool's counterexample has {point.size} "
                                              f"inputs, the property {prop.lower.size}")
        found, why = refine_counterexample(model, prop, point, lambda p, prop=prop:
                                           confirm(prop, p), steps)
        if found is not None:
            return Decision("falsified", counterexample=torch.from_numpy(found))
    return Decision("unknown", reason=why)
