"""Any external verifier that speaks the VNN-COMP interface, as a vfbench verifier.

A tool is a folder with ``prepare_instance.sh`` and ``run_instance.sh`` (executable), called as
VNN-COMP does::

    prepare_instance.sh v1 <category> <onnx> <vnnlib>
    run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout_s>

on the exported ONNX file and a VNNLIB file of the property (for the campaign's images, written
exactly as the export step writes it). ``prepare_instance.sh`` runs once per model (per verifier
instance), on the first property, outside any image's timeout (its time: ``prepare_time_s``).
The tool runs with the ``env`` option's variables added to the environment (e.g.
``ABCROWN_TEST_RUN: "1"``).

The result file's first word is sat, unsat, timeout (or timed-out), unknown or error (also
holds = unsat, violated = sat); after sat comes the counterexample, ``((X_0 v) ... (Y_0 v))``
or as SMT-LIB definitions ``(define-fun X_0 () Real v)`` (VNNLIB 2.0 tools), negative values
also as ``(- v)``. unsat becomes ``verified`` on the tool's word (the record's ``external``
names the tool). sat becomes ``falsified`` only with a point onnxruntime confirms: the tool's,
or one a few PGD steps from it find (a tool's point often lies exactly on the decision
boundary); otherwise ``unknown`` with the reason. A script that exits non-zero, a missing or
malformed result file, and ``error`` make an ``error`` record.
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
from vfbench.properties import Property, robustness_property
from vfbench.verify.base import Decision, Verifier
from vfbench.verify.options import VNNCOMP_OPTIONS, defaults_of
from vfbench.verify.refine import external_counterexample
from vfbench.vnnlib import vnnlib_text

SCRIPTS = ("prepare_instance.sh", "run_instance.sh")
RESULTS = {"unsat": "verified", "holds": "verified", "sat": "falsified", "violated": "falsified",
           "timeout": "timeout", "timed-out": "timeout", "unknown": "unknown"}
# Options and their defaults: vfbench.verify.options.VNNCOMP_OPTIONS (checked at start-up).
VNNCOMP_DEFAULTS: dict[str, Any] = defaults_of(VNNCOMP_OPTIONS)

_NUMBER = r"(\(\s*-\s*[^\s()]+\s*\)|[^\s()]+)"
_ASSIGNMENT = re.compile(r"\(\s*(?:define-fun\s+)?([XY])_(\d+)\s+(?:\(\s*\)\s+Real\s+)?"
                         + _NUMBER + r"\s*\)")


@dataclass
class ToolResult:
    """A parsed result file: the verdict word and, for sat, the input and output values."""

    verdict: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None


def _value(text: str) -> float:
    text = text.strip()
    if text.startswith("("):
        return -float(text.strip("()").strip().lstrip("-"))
    return float(text)


def parse_result(text: str, input_size: int, where: str = "result file") -> ToolResult:
    """Parse a VNN-COMP result file; VfbenchError on anything malformed."""
    words = text.split(None, 1)
    if not words:
        raise VfbenchError(f"{where}: empty")
    verdict = words[0].strip().lower()
    if verdict not in (*RESULTS, "error"):
        raise VfbenchError(f"{where}: first word {words[0]!r} is not one of "
                           f"{sorted((*RESULTS, 'error'))}")
    if RESULTS.get(verdict) != "falsified":
        return ToolResult(verdict)
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for kind, index, value in _ASSIGNMENT.findall(words[1] if len(words) > 1 else ""):
        try:
            values[kind][int(index)] = _value(value)
        except ValueError as exc:
            raise VfbenchError(f"{where}: {kind}_{index} = {value!r} is not a number") from exc
    missing = sorted(set(range(input_size)) - set(values["X"]))
    if missing:
        raise VfbenchError(f"{where}: sat, but the counterexample lacks X_{missing[0]} "
                           f"({len(missing)} of {input_size} inputs missing)")
    x = np.array([values["X"][i] for i in range(input_size)], dtype=np.float64)
    y = (np.array([values["Y"][j] for j in sorted(values["Y"])], dtype=np.float64)
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
        env = self.options["env"]
        if not isinstance(env, dict):
            raise VfbenchError(f"verifier {self.name}: option 'env' must be a mapping of "
                               "variable names to values")
        self.env = {**os.environ, **{str(k): str(v) for k, v in env.items()}}
        self.workdir = tempfile.TemporaryDirectory(prefix="vfbench-vnncomp-")
        self.prepare_time_s: float | None = None  # set once prepare_instance.sh has run

    def _call(self, script: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        """Run a script in the tool's folder; past ``timeout_s`` its whole process group is
        killed (tools start solvers of their own) and _Overran raised."""
        command = [str(self.tool / script), "v1", str(self.options["category"]), *args]
        try:
            proc = subprocess.Popen(command, cwd=self.tool, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True,
                                    env=self.env)
        except OSError as exc:
            raise VfbenchError(f"verifier {self.name}: cannot run {command[0]} ({exc})") from exc
        try:
            stdout, stderr = proc.communicate(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise _Overran(script) from exc
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def _write(self, props: list[Property]) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.workdir.name))
        vnnlib = folder / "property.vnnlib"
        vnnlib.write_text(vnnlib_text(props))
        return vnnlib

    def prepare(self, props: list[Property]) -> None:
        """prepare_instance.sh on the model (once), timed apart from any instance."""
        if self.prepare_time_s is not None:
            return
        start = time.perf_counter()
        onnx = str(Path(self.model.onnx_path).resolve())
        try:
            prepared = self._call("prepare_instance.sh", [onnx, str(self._write(props))],
                                  self.options["prepare_timeout_s"])
        except _Overran as exc:
            raise VfbenchError(f"verifier {self.name}: prepare_instance.sh ran past "
                               f"prepare_timeout_s = {self.options['prepare_timeout_s']}") from exc
        if prepared.returncode != 0:
            raise VfbenchError(self._failure("prepare_instance.sh", prepared))
        self.prepare_time_s = time.perf_counter() - start

    def decide_batch(self, x: torch.Tensor, labels: list[int], eps: float,
                     timeout_s: float) -> list[tuple[Decision, float]]:
        if self.prepare_time_s is None:  # outside the first image's timeout
            self.prepare([self._ball(x[0], labels[0], eps)])
        return super().decide_batch(x, labels, eps, timeout_s)

    def _ball(self, x: torch.Tensor, label: int, eps: float) -> Property:
        center = x.detach().cpu().numpy().reshape(self.model.input_shape)
        return robustness_property(center, label, eps, self.model.num_classes)

    def decide_property(self, props: list[Property], deadline: float, confirm) -> Decision:
        """The tool on the properties (unsafe iff any is); ``confirm(prop, point)`` is the
        onnxruntime check of a counterexample."""
        self.prepare(props)
        vnnlib = self._write(props)
        result_file = vnnlib.parent / "result.txt"
        onnx = str(Path(self.model.onnx_path).resolve())
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return Decision("timeout")
        timeout = max(1, int(np.ceil(remaining)))
        try:
            ran = self._call("run_instance.sh",
                             [onnx, str(vnnlib), str(result_file), str(timeout)],
                             timeout + self.options["grace_s"])
        except _Overran:
            return Decision("timeout")
        if ran.returncode != 0:
            raise VfbenchError(self._failure("run_instance.sh", ran))
        if not result_file.exists():
            raise VfbenchError(self._failure("run_instance.sh", ran, "wrote no result file"))
        result = parse_result(result_file.read_text(), int(np.prod(self.model.input_shape)),
                              f"verifier {self.name}: {result_file.name}")
        if result.verdict == "error":
            raise VfbenchError(self._failure("run_instance.sh", ran, "reported error"))
        if result.verdict in ("sat", "violated"):
            return external_counterexample(self.model, props, result.x, confirm,
                                           self.options["refine_steps"])
        return Decision(RESULTS[result.verdict])

    def decide(self, x: torch.Tensor, label: int, eps: float, deadline: float) -> Decision:
        return self.decide_property(
            [self._ball(x, label, eps)], deadline,
            lambda _, p: self.confirm_counterexample(torch.from_numpy(p), x, eps, label)
            is not None)

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
