"""pyNeVer 1.3.2 (NeVer 2) run on an ONNX file and a VNNLIB file, as its own command line runs
them: the cross-check that its users can read vfbench's exports (tests/unit/verify/
test_pynever.py, benchmarks/pynever_check.py). Not a campaign verifier.

Its complete search is SSBP (star sets with symbolic bounds, splitting ReLUs until none is left
unstable) with the SEQUENTIAL refinement: 1.3.2's default heuristic (INPUT_BOUNDS_CHANGE) reads
``BoundsStats.overapprox_area``, which 1.3.2 never sets (AttributeError at the first split).
pyNeVer is installed without its dependencies (requirements/pynever.txt: it declares
torchvision, which would pull another torch) plus the ``pynever`` extra.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from vfbench.errors import VfbenchError


def pynever_network(onnx_path: str | os.PathLike):
    """pyNeVer's network read from the ONNX file (a SequentialNetwork; a graph with a branch,
    like the residual graft form, raises in pyNeVer's converter)."""
    try:
        from pynever.strategies.conversion.converters.onnx import ONNXConverter
        from pynever.strategies.conversion.representation import load_network_path
    except ImportError as exc:
        raise VfbenchError("pyNeVer is not installed: pip install --no-deps pynever==1.3.2 "
                           "and the extra vfbench[pynever] (make venv does both)") from exc
    return ONNXConverter().to_neural_network(load_network_path(str(onnx_path)))


def pynever_verdict(network, vnnlib_path: str | os.PathLike, timeout_s: float
                    ) -> tuple[str, np.ndarray | None]:
    """(status, counterexample): ``verified`` (pyNeVer: no input of the box meets the VNNLIB's
    unsafe condition), ``falsified`` with pyNeVer's point (flat, float64: re-check it),
    ``unknown`` (its timeout) or ``error: <pyNeVer's message>``."""
    from pynever.strategies.verification.algorithms import SSBPVerification
    from pynever.strategies.verification.parameters import SSBPVerificationParameters
    from pynever.strategies.verification.properties import VnnLibProperty
    from pynever.strategies.verification.ssbp.constants import RefinementStrategy

    logging.getLogger("pynever").setLevel(logging.WARNING)
    search = SSBPVerification(SSBPVerificationParameters(
        heuristic=RefinementStrategy.SEQUENTIAL, timeout=timeout_s))
    try:
        safe, cex = search.verify(network, VnnLibProperty(str(vnnlib_path)))
    except Exception as exc:  # pyNeVer's own, e.g. "This point should not be reachable"
        first = (str(exc).splitlines() or [""])[0]
        return f"error: {type(exc).__name__}: {first}", None
    if safe:
        return "verified", None
    if cex is None:
        return "unknown", None
    return "falsified", np.asarray(cex, dtype=np.float64).reshape(-1)
