"""One VNN-COMP instance (an ONNX file + a VNNLIB property) verified by any vfbench verifier,
with the answer graded as VNN-COMP grades it.

The bound-based verifiers (ibp, crown, alpha_crown, bab, milp) decide robustness margins
``y_label - y_j`` over a ball clipped to [0, 1]. A property is brought to that form without
touching them, by a wrapper ONNX file around the user's network (``wrapped_onnx``):

- input: t in [0, 1]^n, mapped onto the box by ``x = low + width * t`` (Mul + Add; low rounded
  down and width up to float32, so the mapped box contains the property's box);
- output: z_0 = 0 and one z_k = b_k - a_k @ y per disjunct ``a_k @ y <= b_k``, so the margin
  z_0 - z_k > 0 says disjunct k is impossible: "label 0 robust on the ball t = 0.5 +- 0.5"
  is exactly "the property holds".

Every disjunct must then be a single linear constraint (true of VNN-COMP's robustness and
``(<= Y_label Y_j)`` forms); a disjunction over input boxes is verified box by box. marabou and
vnncomp read the user's ONNX file and the property's VNNLIB directly.

Whatever the verifier, a counterexample is graded on the user's ONNX file by onnxruntime: the
point (clipped into the box) must make the property's unsafe condition hold (ties count, as in
VNN-COMP); a point that does not is refined by a few PGD steps, else the answer is ``unknown``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from vfbench.errors import VfbenchError
from vfbench.properties import Property
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.refine import external_counterexample
from vfbench.verify.verifiers import resolve_verifier_entry
from vfbench.vnnlib import read_vnnlib

# Verifiers that read the user's ONNX + VNNLIB themselves (``decide_property``).
NATIVE = ("marabou", "vnncomp")
# A record status -> the VNN-COMP result word.
RESULT_OF = {"verified": "unsat", "falsified": "sat", "timeout": "timeout", "unknown": "unknown",
             "error": "error"}


@dataclass
class InstanceResult:
    """``result``: sat, unsat, timeout, unknown or error; for sat the input ``x`` (the ONNX
    input's shape, float32) and the outputs ``y`` onnxruntime gives there."""

    result: str
    time_s: float
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    error: str | None = None

    def text(self) -> str:
        """The VNN-COMP result file."""
        if self.result != "sat":
            return self.result + "\n"
        pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(self.x.reshape(-1))]
        pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(self.y.reshape(-1))]
        return "sat\n(" + "\n ".join(pairs) + ")\n"


def _float32_box(prop: Property) -> tuple[np.ndarray, np.ndarray]:
    """(low, width) in float32 with [low, low + width] (real arithmetic) containing the box."""
    low = prop.lower.astype(np.float32)
    low = np.where(low > prop.lower, np.nextafter(low, np.float32(-np.inf)), low)
    high = prop.upper.astype(np.float32)
    high = np.where(high < prop.upper, np.nextafter(high, np.float32(np.inf)), high)
    width64 = high.astype(np.float64) - low.astype(np.float64)
    width = width64.astype(np.float32)
    width = np.where(width < width64, np.nextafter(width, np.float32(np.inf)), width)
    return low.astype(np.float32), width.astype(np.float32)


def wrapped_onnx(onnx_path: str | os.PathLike, prop: Property, out: str | os.PathLike) -> None:
    """Write the wrapper of the module docstring around the ONNX file at ``onnx_path``."""
    margins = prop.margin_matrix()
    if margins is None:
        raise VfbenchError(f"{prop.description}: a disjunct with several output constraints; "
                           "only the marabou and vnncomp verifiers take it")
    C, d = margins  # holds iff C @ y - d > 0 row by row
    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    (old_input,) = [i for i in graph.input if i.name not in initializers]
    old_output = graph.output[0]
    low, width = _float32_box(prop)
    t = "vfbench_box_t"
    extra_init = [
        numpy_helper.from_array(width, "vfbench_box_width"),
        numpy_helper.from_array(low, "vfbench_box_low"),
        # z = y @ W + c with z_0 = 0 and z_k = d_k - C_k @ y
        numpy_helper.from_array(np.concatenate([np.zeros((C.shape[1], 1)), -C.T], axis=1)
                                .astype(np.float32), "vfbench_spec_w"),
        numpy_helper.from_array(np.concatenate([[0.0], d]).astype(np.float32), "vfbench_spec_c"),
    ]
    before = [helper.make_node("Mul", [t, "vfbench_box_width"], ["vfbench_box_scaled"],
                               name="vfbench_box_mul"),
              helper.make_node("Add", ["vfbench_box_scaled", "vfbench_box_low"],
                               [old_input.name], name="vfbench_box_add")]
    # Gemm, not MatMul: auto_LiRPA bounds a MatMul as a product of two bounded values.
    after = [helper.make_node("Gemm", [old_output.name, "vfbench_spec_w", "vfbench_spec_c"],
                              ["vfbench_margins"], name="vfbench_spec_gemm")]
    nodes = before + list(graph.node) + after
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra_init)
    new_input = helper.make_tensor_value_info(
        t, TensorProto.FLOAT, [1, *prop.input_shape])
    inputs = [new_input] + [i for i in graph.input if i.name in initializers]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("vfbench_margins", TensorProto.FLOAT,
                                                       [1, C.shape[0] + 1])])
    onnx.save(model, str(out))


def _model_io(onnx_path) -> tuple[tuple[int, ...], int]:
    module = load_onnx(onnx_path)  # an unsupported op is a VfbenchError naming it, here
    return module.input_shape, module.num_classes


def verify_instance(onnx_path: str | os.PathLike, vnnlib_path: str | os.PathLike,
                    method: str = "bab", options: dict | None = None,
                    timeout_s: float = 60.0) -> InstanceResult:
    """Verify one instance. Bad input (an unreadable or unsupported ONNX file, a bad VNNLIB
    file, counts that do not match) is a VfbenchError; a verifier failing on the instance is
    an ``error`` result naming why."""
    start = time.perf_counter()
    plain = _plain_onnx(onnx_path)
    try:
        result = _verify(plain, vnnlib_path, method, options, timeout_s, start)
    finally:
        if plain != str(onnx_path):
            os.unlink(plain)
    result.time_s = time.perf_counter() - start
    if result.result != "error" and result.time_s > timeout_s:
        result = InstanceResult("timeout", result.time_s)
    return result


def _verify(onnx_path: str, vnnlib_path, method, options, timeout_s, start) -> InstanceResult:
    input_shape, num_outputs = _model_io(onnx_path)
    props = read_vnnlib(vnnlib_path, input_shape, num_outputs)
    cls, resolved = resolve_verifier_entry({"method": method, **(options or {})})
    ort = OrtModel(onnx_path)

    def confirm(prop: Property, point: np.ndarray) -> bool:
        return prop.contains(point) and prop.is_unsafe(ort(point[None])[0])

    deadline = start + timeout_s
    try:
        if method in NATIVE:
            verifier = cls(load_onnx(onnx_path), resolved, name=method)
            decision = verifier.decide_property(props, deadline, confirm)
            result = _graded(decision.status, decision.counterexample, props, ort, confirm,
                             verifier.model, decision.reason)
        else:
            result = _via_wrapper(onnx_path, props, cls, resolved, method, deadline, ort, confirm)
    except VfbenchError as exc:
        result = InstanceResult("error", 0.0, error=str(exc))
    return result


def _plain_onnx(path) -> str:
    """A ``.onnx.gz`` is unpacked into a temporary file (read as it is, not changed)."""
    path = Path(path)
    if path.suffix != ".gz":
        return str(path)
    import gzip

    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise VfbenchError(f"{path}: cannot read ({exc})") from exc
    fd, name = tempfile.mkstemp(suffix=".onnx", prefix="vfbench-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return name


def _graded(status: str, counterexample, props, ort, confirm, model,
            reason: str | None) -> InstanceResult:
    if status != "falsified":
        return InstanceResult(RESULT_OF[status], 0.0, error=reason)
    point = np.asarray(counterexample.detach().cpu() if isinstance(counterexample, torch.Tensor)
                       else counterexample, dtype=np.float32).reshape(props[0].input_shape)
    if not any(confirm(p, point) for p in props):
        decision = external_counterexample(model, props, point.astype(np.float64), confirm)
        if decision.status != "falsified":
            return InstanceResult("unknown", 0.0, error=decision.reason)
        point = decision.counterexample.numpy()
    return InstanceResult("sat", 0.0, point, ort(point[None])[0])


def _via_wrapper(onnx_path, props, cls, options, method, deadline, ort, confirm
                 ) -> InstanceResult:
    with tempfile.TemporaryDirectory(prefix="vfbench-instance-") as folder:
        outcome = None
        for k, prop in enumerate(props):
            wrapped = Path(folder) / f"box{k}.onnx"
            wrapped_onnx(onnx_path, prop, wrapped)
            module = load_onnx(wrapped)
            verifier = cls(module, options, name=method)
            low, width = _float32_box(prop)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return InstanceResult("timeout", 0.0)
            record = verifier.verify(torch.full(prop.input_shape, 0.5), 0, 0.5, remaining)
            status = record["status"]
            point = None
            if status == "misclassified":  # the box's centre already violates the property
                status, point = "falsified", np.full(prop.input_shape, 0.5)
            elif status == "falsified":
                point = np.asarray(record["counterexample"], dtype=np.float64)
            if status == "falsified":
                x = low.astype(np.float64) + width.astype(np.float64) * point.reshape(low.shape)
                return _graded("falsified", x, [prop], ort, confirm, load_onnx(onnx_path), None)
            if status != "verified":
                outcome = outcome or InstanceResult(RESULT_OF[status], 0.0,
                                                    error=record.get("error"))
        return outcome or InstanceResult("unsat", 0.0)
