"""Any external verifier that speaks the VNN-COMP interface, as a vfbench verifier.

A tool is a folder with ``prepare_instance.sh`` and ``run_instance.sh`` (executable), called as
VNN-COMP does::

    prepare_instance.sh v1 <category> <onnx> <vnnlib>
    run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout_s>

on the exported ONNX file and the image's VNNLIB property (written exactly as the export step
writes it). The result file's first line is sat, unsat, timeout, error or unknown; after sat comes
the counterexample ``((X_0 v) ... (Y_0 v) ...)``. unsat becomes ``verified`` on the tool's word
(the record's ``external`` names the tool); sat becomes ``falsified`` only once onnxruntime confirms
the X values inside the ball (the base re-checks every counterexample; a wrong one is an error).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfbench.errors import VfbenchError
from vfbench.export import vnnlib_text
from vfbench.verify.base import Decision, Verifier
from vfbench.verify.options import VNNCOMP_OPTIONS, defaults_of

SCRIPTS = ("prepare_instance.sh", "run_instance.sh")
RESULTS = {"unsat": "verified", "sat": "falsified", "timeout": "timeout", "unknown": "unknown"}
# Options and their defaults: vfbench.verify.options.VNNCOMP_OPTIONS (checked at start-up).
VNNCOMP_DEFAULTS: dict[str, Any] = defaults_of(VNNCOMP_OPTIONS)

_ASSIGNMENT = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


@dataclass
class ToolResult:
    """A parsed result file: the verdict word and, for sat, the input and output values."""

    verdict: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None


def parse_result(text: str, input_size: int, where: str = "result file") -> ToolResult:
    """Parse a VNN-COMP result file; VfbenchError on anything malformed."""
    lines = text.strip().splitlines()
    if not lines:
        raise VfbenchError(f"{where}: empty")
    verdict = lines[0].strip().lower()
    if verdict not in (*RESULTS, "error"):
        raise VfbenchError(f"{where}: first line {lines[0].strip()!r} is not one of "
                           f"{sorted((*RESULTS, 'error'))}")
    if verdict != "sat":
        return ToolResult(verdict)
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for kind, index, value in _ASSIGNMENT.findall("\n".join(lines[1:])):
        try:
            values[kind][int(index)] = float(value)
        except ValueError as exc:
            raise VfbenchError(f"{where}: {kind}_{index} = {value!r} is not a number") from exc
    missing = sorted(set(range(input_size)) - set(values["X"]))
    if missing:
        raise VfbenchError(f"{where}: sat, but the counterexample lacks X_{missing[0]} "
                           f"({len(missing)} of {input_size} inputs missing)")
    x = np.array([values["X"][i] for i in range(input_size)], dtype=np.float32)
    y = (np.array([values["Y"][j] for j in sorted(values["Y"])], dtype=np.float32)
         if values["Y"] else None)
    return ToolResult("sat", x, y)


class VnnCompVerifier(Verifier):
    """An external tool through its VNN-COMP scripts (options: VNNCOMP_DEFAULTS)."""

    OPTIONS = VNNCOMP_OPTIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tool = Path(self.options["tool"]).expanduser().resolve()
        for script in SCRIPTS:
            path = self.tool / script
            if not path.is_file():
                raise VfbenchError(f"verifier {self.name}: {path} not found")
            if not os.access(path, os.X_OK):
                raise VfbenchError(f"verifier {self.name}: {path} is not executable")
        self.workdir = tempfile.TemporaryDirectory(prefix="vfbench-vnncomp-")

    def _call(self, script: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        """Run a script in the tool's folder; past ``timeout_s`` its whole process group is
        killed (tools start solvers of their own) and _Overran raised."""
        command = [str(self.tool / script), "v1", str(self.options["category"]), *args]
        try:
            proc = subprocess.Popen(command, cwd=self.tool, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            raise VfbenchError(f"verifier {self.name}: cannot run {command[0]} ({exc})") from exc
        try:
            stdout, stderr = proc.communicate(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise _Overran(script) from exc
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def decide(self, x: torch.Tensor, label: int, eps: float, deadline: float) -> Decision:
        point = x.detach().cpu().numpy().reshape(self.model.input_shape)
        folder = Path(tempfile.mkdtemp(dir=self.workdir.name))
        vnnlib = folder / "property.vnnlib"
        vnnlib.write_text(vnnlib_text(point, label, eps, self.model.num_classes))
        result_file = folder / "result.txt"
        onnx = str(Path(self.model.onnx_path).resolve())
        try:
            prepared = self._call("prepare_instance.sh", [onnx, str(vnnlib)],
                                  self.options["prepare_timeout_s"])
            if prepared.returncode != 0:
                raise VfbenchError(self._failure("prepare_instance.sh", prepared))
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return Decision("timeout")
            timeout = max(1, int(np.ceil(remaining)))
            ran = self._call("run_instance.sh",
                             [onnx, str(vnnlib), str(result_file), str(timeout)],
                             timeout + self.options["grace_s"])
        except _Overran:
            return Decision("timeout")
        if not result_file.exists():
            raise VfbenchError(self._failure("run_instance.sh", ran, "wrote no result file"))
        result = parse_result(result_file.read_text(), int(np.prod(self.model.input_shape)),
                              f"verifier {self.name}: {result_file.name}")
        if result.verdict == "error":
            raise VfbenchError(self._failure("run_instance.sh", ran, "reported error"))
        if result.verdict == "sat":
            return Decision("falsified", counterexample=torch.from_numpy(result.x))
        return Decision(RESULTS[result.verdict])

    def _failure(self, script: str, proc: subprocess.CompletedProcess,
                 what: str | None = None) -> str:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        what = what or f"exited with status {proc.returncode}"
        return f"verifier {self.name}: {script} {what}" + (f": {' | '.join(tail)}" if tail else "")

    def _record_fields(self, decision: Decision, x, eps, label) -> dict[str, Any]:
        out = super()._record_fields(decision, x, eps, label)
        if decision.status == "verified":
            out["external"] = self.tool.name  # trusted on the tool's word, not a vfbench bound
        return out


class _Overran(Exception):
    """A script ran past its time limit (and was killed)."""
