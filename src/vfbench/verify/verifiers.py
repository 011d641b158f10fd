"""The verifier registry: ``VERIFIERS`` maps a config ``method`` name to a Verifier class.

The incomplete verifiers live here: ``ibp``, ``crown``, ``alpha_crown`` (auto_LiRPA bounds on a
batch of images; verified iff every margin's lower bound is above its tolerance
(``vfbench.verify.tolerance``) or, for crown and alpha_crown, the margins in (0, tol] are proven
by the float certificate (``Verifier.margins_proven``), else unknown, unless PGD found a
counterexample). Complete
verifiers (branch and bound, MILP, external VNN-COMP tools) subclass
``vfbench.verify.base.Verifier`` in their own modules (which must not import this one) and are
imported and listed in ``VERIFIERS`` below.

A config entry is ``{method: <VERIFIERS key>, only_arch: [...], timeout: s, ...options}``;
``resolve_verifier_entry`` checks it against the light declarations of
``vfbench.verify.options`` (unknown method, option or value -> VfbenchError).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from vfbench.verify import lirpa
from vfbench.verify import options as options_module
from vfbench.verify.bab import BabVerifier
from vfbench.verify.base import Decision, Verifier
from vfbench.verify.marabou import MarabouVerifier
from vfbench.verify.milp import MilpVerifier
from vfbench.verify.options import ALPHA_CROWN_OPTIONS
from vfbench.verify.vnncomp import VnnCompVerifier


class BoundVerifier(Verifier):
    """Incomplete verification by one auto_LiRPA bound method (``BOUND_METHOD``)."""

    BOUND_METHOD = "crown"

    def bound_options(self) -> dict | None:
        return None

    def decide_batch(self, x: torch.Tensor, labels: list[int], eps: float,
                     timeout_s: float) -> list[tuple[Decision, float]]:
        """One bound call for the whole batch; its time is shared equally. alpha-CROWN stops
        optimising when the batch's time (timeout per image x images) is up."""
        start = time.perf_counter()
        bounds = self.bounds(x, labels, eps, self.BOUND_METHOD, self.bound_options(),
                             deadline=start + timeout_s * len(labels))
        seconds = (time.perf_counter() - start) / len(labels)
        decisions = []
        proven = self.margins_proven(x, labels, eps, bounds.lower, bounds.tol, bounds,
                                     self.BOUND_METHOD, f"verifier {self.name}",
                                     self.bound_options(), whole_image=True,
                                     deadline=start + timeout_s * len(labels))
        for k in range(len(labels)):
            lower = bounds.lower[k]
            decisions.append((Decision(
                status="verified" if bool(proven[k].all()) else "unknown",
                margin_lb=float(lower.min()),
                bound_method=self.BOUND_METHOD,
                pre_activation=[(lo[k:k + 1], up[k:k + 1]) for lo, up in bounds.pre_activation],
            ), seconds))
        return decisions


class IbpVerifier(BoundVerifier):
    BOUND_METHOD = "ibp"


class CrownVerifier(BoundVerifier):
    BOUND_METHOD = "crown"


class AlphaCrownVerifier(BoundVerifier):
    """alpha-CROWN; options as ``lirpa.ALPHA_DEFAULTS`` (iterations, lr_alpha, early_stop,
    optimize_intermediate)."""

    BOUND_METHOD = "alpha_crown"
    OPTIONS = ALPHA_CROWN_OPTIONS

    def bound_options(self) -> dict:
        return {k: self.options[k] for k in lirpa.ALPHA_DEFAULTS}


VERIFIERS: dict[str, type[Verifier]] = {
    "ibp": IbpVerifier,
    "crown": CrownVerifier,
    "alpha_crown": AlphaCrownVerifier,
    "bab": BabVerifier,
    "milp": MilpVerifier,
    "vnncomp": VnnCompVerifier,
    "marabou": MarabouVerifier,
}



def resolve_verifier_entry(entry: dict) -> tuple[type[Verifier], dict[str, Any]]:
    """A config entry -> (class, options with defaults filled in)."""
    method, options = options_module.resolve_verifier_entry(entry)
    return VERIFIERS[method], options
