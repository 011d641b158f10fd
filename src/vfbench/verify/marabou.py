"""Marabou (maraboupy 2.0.0) as a vfbench verifier: it reads the exported ONNX file and a VNNLIB
file of the property, exactly as any user of Marabou would.

``unsat`` from Marabou becomes ``verified`` on Marabou's word (the record's ``external`` says
so); ``sat`` becomes ``falsified`` only once onnxruntime confirms its point, refined by a few PGD
steps when it lies on the decision boundary (``vfbench.verify.refine``), else ``unknown`` with
the reason. maraboupy is an optional dependency (``pip install 'vfbench[marabou]'``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfbench.errors import VfbenchError
from vfbench.properties import Property, robustness_property
from vfbench.verify.base import Decision, Verifier
from vfbench.verify.options import MARABOU_OPTIONS, defaults_of
from vfbench.verify.refine import external_counterexample
from vfbench.vnnlib import vnnlib_text

# Options and their defaults: vfbench.verify.options.MARABOU_OPTIONS (checked at start-up).
MARABOU_DEFAULTS: dict[str, Any] = defaults_of(MARABOU_OPTIONS)


def import_marabou():
    try:
        with _quiet_stdout():
            from maraboupy import Marabou
    except ImportError as exc:
        raise VfbenchError("verifier marabou needs maraboupy 2.0.0, which is not installed: "
                           "pip install 'maraboupy==2.0.0' (or the extra: vfbench[marabou])"
                           ) from exc
    return Marabou


@contextlib.contextmanager
def _quiet_stdout():
    """Marabou's native code prints on file descriptor 1, which belongs to the caller."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            with contextlib.redirect_stdout(null):
                yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class MarabouVerifier(Verifier):
    """Complete verification by Marabou on the ONNX file + a VNNLIB file (MARABOU_DEFAULTS)."""

    OPTIONS = MARABOU_OPTIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marabou = import_marabou()
        self.workdir = tempfile.TemporaryDirectory(prefix="vfbench-marabou-")

    def solve(self, props: list[Property], deadline: float) -> tuple[str, np.ndarray | None,
                                                                      str | None]:
        """Marabou on the properties (unsafe iff any is): (VNN-COMP word, its input point for
        sat, a message for error/unknown)."""
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return "timeout", None, None
        path = Path(self.workdir.name) / "property.vnnlib"
        path.write_text(vnnlib_text(props))
        options = self.marabou.createOptions(timeoutInSeconds=max(1, math.ceil(remaining)),
                                             verbosity=int(self.options["verbosity"]))
        try:
            with _quiet_stdout():
                network = self.marabou.read_onnx(self.model.onnx_path)
                answer, values, _ = network.solve(propertyFilename=str(path), options=options,
                                                  verbose=False)
        except Exception as exc:  # maraboupy raises assorted types on graphs it cannot read
            raise VfbenchError(f"Marabou failed on {self.model.onnx_path}: "
                               f"{type(exc).__name__}: {exc}") from exc
        if answer == "sat":
            inputs = np.asarray(network.inputVars[0]).reshape(-1)
            return "sat", np.array([values[int(v)] for v in inputs], dtype=np.float64), None
        if answer in ("unsat", "TIMEOUT"):
            return {"unsat": "unsat", "TIMEOUT": "timeout"}[answer], None, None
        return "unknown", None, f"Marabou answered {answer!r}"

    def decide_property(self, props: list[Property], deadline: float,
                        confirm) -> Decision:
        answer, point, message = self.solve(props, deadline)
        if answer == "unsat":
            return Decision("verified")
        if answer == "timeout":
            return Decision("timeout")
        if answer == "unknown":
            return Decision("unknown", reason=message)
        return external_counterexample(self.model, props, point, confirm,
                                       self.options["refine_steps"])

    def decide(self, x: torch.Tensor, label: int, eps: float, deadline: float) -> Decision:
        center = x.detach().cpu().numpy().reshape(self.model.input_shape)
        prop = robustness_property(center, label, eps, self.model.num_classes)
        return self.decide_property(
            [prop], deadline,
            lambda _, p: self.confirm_counterexample(torch.from_numpy(p), x, eps, label)
            is not None)

    def _record_fields(self, decision: Decision, x, eps, label) -> dict[str, Any]:
        out = super()._record_fields(decision, x, eps, label)
        if decision.status == "verified":
            out["external"] = "marabou"  # on Marabou's word, not a vfbench bound
        return out
