"""One VNN-COMP instance (an ONNX file + a VNNLIB property) verified by any vfbench verifier,
with the answer graded as VNN-COMP grades it.

The bound-based verifiers (ibp, crown, alpha_crown, bab, milp) decide robustness margins
``y_label - y_j`` over a ball clipped to [0, 1]. A property is brought to that form without
touching them, by a wrapper ONNX file around the user's network (``wrapped_onnx``):

- input: t in [0, 1]^n, mapped onto the box by ``x = low + width * t`` (Mul + Add; low rounded
  down and width up to float32, so the mapped box contains the property's box);
- output: z_0 = 0 and one z_k = -v_k per disjunct ``A_k @ y <= b_k``, where
  ``v_k = max_i (a_ki @ y - b_ki)`` is how far the outputs are from the disjunct's region (> 0:
  some constraint of it is violated). The margin z_0 - z_k = v_k > 0 says disjunct k is
  impossible, so "label 0 robust on the ball t = 0.5 +- 0.5" is exactly "the property holds".

A disjunct of one constraint is one Gemm row. A conjunction of several needs the max of its
constraints' violations, written with ReLUs: ``max(m, u) = m + relu(u - m)``, chained over the
rows. That is exact (no relaxation in the graph itself), so every verifier keeps its own
soundness argument: the bound methods relax these ReLUs like any other (a region is excluded
where the bound on the max is above the tolerance, alpha-CROWN picks the slopes, which can reach
any single constraint's lower bound), bab splits on them (on a domain where a split fixes which
constraint is the max, that constraint's bound decides), and milp encodes them exactly (one
binary each: the whole conjunction). A disjunction over input boxes is verified box by box.
marabou and vnncomp read the user's ONNX file and the property's VNNLIB directly.

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
from vfbench.verify.onnx_import import OnnxModel, OrtModel, load_onnx
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
    input's shape, float32) and the outputs ``y`` onnxruntime gives there. ``time_s``: the
    decision; ``prepare_s``: loading and preparing (``verify_instance``)."""

    result: str
    time_s: float
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    error: str | None = None
    prepare_s: float = 0.0

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
    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    (old_input,) = [i for i in graph.input if i.name not in initializers]
    y = graph.output[0].name
    low, width = _float32_box(prop)
    t = "vfbench_box_t"
    extra_init = [numpy_helper.from_array(width, "vfbench_box_width"),
                  numpy_helper.from_array(low, "vfbench_box_low")]
    before = [helper.make_node("Mul", [t, "vfbench_box_width"], ["vfbench_box_scaled"],
                               name="vfbench_box_mul"),
              helper.make_node("Add", ["vfbench_box_scaled", "vfbench_box_low"],
                               [old_input.name], name="vfbench_box_add")]
    after, out_name = _spec_nodes(y, prop, extra_init)
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
    graph.output.extend([helper.make_tensor_value_info(out_name, TensorProto.FLOAT,
                                                       [1, len(prop.disjuncts) + 1])])
    onnx.save(model, str(out))


def _spec_nodes(y: str, prop: Property, init: list) -> tuple[list, str]:
    """Nodes from the network's outputs ``y`` (1, K) to the margins z (1, D + 1) of the module
    docstring; their constants are appended to ``init``. Gemm, not MatMul: auto_LiRPA bounds a
    MatMul as a product of two bounded values."""
    nodes = []

    def gemm(x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        init.extend([numpy_helper.from_array(weight.astype(np.float32), f"{name}_w"),
                     numpy_helper.from_array(bias.astype(np.float32), f"{name}_c")])
        nodes.append(helper.make_node("Gemm", [x, f"{name}_w", f"{name}_c"], [name], name=name))
        return name

    K, D = prop.num_outputs, len(prop.disjuncts)
    # z = y @ W + c from each disjunct's first row: z_0 = 0, z_k = b_k1 - a_k1 @ y.
    first = np.stack([A[0] for A, _ in prop.disjuncts])
    W = np.concatenate([np.zeros((K, 1)), -first.T], axis=1)
    c = np.concatenate([[0.0], [b[0] for _, b in prop.disjuncts]])
    z = gemm(y, W, c, "vfbench_spec")
    # A conjunction: z_k -= sum of the chain's relu(u_i - m_{i-1}), so that z_k = -max_i u_i.
    for k, (A, b) in enumerate(prop.disjuncts, start=1):
        m = gemm(y, A[0][:, None], -b[:1], f"vfbench_and{k}_0") if A.shape[0] > 1 else None
        for i in range(1, A.shape[0]):
            name = f"vfbench_and{k}_{i}"
            u = gemm(y, A[i][:, None], -b[i:i + 1], f"{name}_u")
            nodes.append(helper.make_node("Sub", [u, m], [f"{name}_diff"], name=f"{name}_diff"))
            # The ReLU's input a Gemm (identity), not the Sub: auto_LiRPA 0.3 bounds an
            # Add/Sub output in patches mode as a conv feature map and fails on a flat one.
            gap = gemm(f"{name}_diff", np.ones((1, 1)), np.zeros(1), f"{name}_gap")
            nodes.append(helper.make_node("Relu", [gap], [f"{name}_relu"], name=f"{name}_relu"))
            nodes.append(helper.make_node("Add", [m, f"{name}_relu"], [f"{name}_max"],
                                          name=f"{name}_max"))
            m = f"{name}_max"
            place = np.zeros((1, D + 1))
            place[0, k] = -1.0
            lifted = gemm(f"{name}_relu", place, np.zeros(D + 1), f"{name}_lift")
            nodes.append(helper.make_node("Add", [z, lifted], [f"{name}_z"], name=f"{name}_z"))
            z = f"{name}_z"
    return nodes, z


@dataclass
class LoadedModel:
    """What verifying any property on one ONNX file needs, loaded once (``ModelCache``): the
    plain file (a temporary copy of a ``.onnx.gz``), the network as torch (its input shape and
    outputs; counterexample refinement), onnxruntime on it, the resolved verifier entry, and
    for marabou / vnncomp the verifier itself once made (vnncomp's ``prepare_instance.sh``
    then runs once per model)."""

    key: tuple
    path: str
    temporary: bool
    model: OnnxModel
    ort: OrtModel
    cls: type
    options: dict
    native: object | None = None

    def close(self) -> None:
        if self.temporary and os.path.exists(self.path):
            os.unlink(self.path)


class ModelCache:
    """The last model loaded, reused while the next instances name the same ONNX file (same
    resolved path, size and modification time) with the same verifier: a benchmark lists its
    instances model by model, so each model is loaded once, and memory holds one model."""

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None

    def load(self, onnx_path, method: str, options: dict | None) -> LoadedModel:
        """The model, from the cache or loaded now. Bad input (an unreadable or unsupported
        ONNX file) is a VfbenchError naming it; so is a bad verifier entry."""
        path = Path(onnx_path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise VfbenchError(f"{path}: cannot read ONNX ({exc})") from exc
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, method,
               repr(sorted((options or {}).items())))
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        self.close()
        cls, resolved = resolve_verifier_entry({"method": method, **(options or {})})
        plain = _plain_onnx(path)
        try:
            model = load_onnx(plain)  # an unsupported op is a VfbenchError naming it, here
            loaded = LoadedModel(key, plain, plain != str(path), model, OrtModel(plain), cls,
                                 resolved)
        except BaseException:
            if plain != str(path):
                os.unlink(plain)
            raise
        self._loaded = loaded
        return loaded

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None


def verify_instance(onnx_path: str | os.PathLike, vnnlib_path: str | os.PathLike,
                    method: str = "bab", options: dict | None = None,
                    timeout_s: float = 60.0, cache: ModelCache | None = None
                    ) -> InstanceResult:
    """Verify one instance. Bad input (an unreadable or unsupported ONNX file, a bad VNNLIB
    file, counts that do not match) is a VfbenchError; a verifier failing on the instance is
    an ``error`` result naming why.

    Times as VNN-COMP reports them: ``prepare_s`` is loading the model (0 when ``cache``
    already holds it), reading the property and building what is bounded (the wrapper ONNX and
    its bounded graph; vnncomp: the tool's ``prepare_instance.sh``, once per model); ``time_s``
    is deciding, and only it counts against ``timeout_s``."""
    own = cache is None
    cache = cache or ModelCache()
    try:
        with tempfile.TemporaryDirectory(prefix="vfbench-instance-") as folder:
            return _timed(cache, onnx_path, vnnlib_path, method, options, timeout_s,
                          Path(folder))
    finally:
        if own:
            cache.close()


def _timed(cache: ModelCache, onnx_path, vnnlib_path, method, options, timeout_s,
           folder: Path) -> InstanceResult:
    start = time.perf_counter()
    loaded = cache.load(onnx_path, method, options)
    props = read_vnnlib(vnnlib_path, loaded.model.input_shape, loaded.model.num_classes)
    try:
        decide = _prepared(loaded, props, method, folder)
    except VfbenchError as exc:
        return InstanceResult("error", 0.0, error=str(exc),
                              prepare_s=time.perf_counter() - start)
    prepare_s = time.perf_counter() - start
    run_start = time.perf_counter()
    try:
        result = decide(run_start + timeout_s)
    except VfbenchError as exc:
        result = InstanceResult("error", 0.0, error=str(exc))
    result.time_s = time.perf_counter() - run_start
    result.prepare_s = prepare_s
    if result.result != "error" and result.time_s > timeout_s:
        result = InstanceResult("timeout", result.time_s, prepare_s=prepare_s)
    return result


def _prepared(loaded: LoadedModel, props: list[Property], method: str, folder: Path):
    """Everything before the decision, done now (wrapper files in ``folder``, which must live
    until the decision is made); returns ``decide(deadline) -> result``."""
    ort = loaded.ort

    def confirm(prop: Property, point: np.ndarray) -> bool:
        return prop.contains(point) and prop.is_unsafe(ort(point[None])[0])

    if method in NATIVE:
        if loaded.native is None:  # kept with the model: reused by its next instances
            loaded.native = loaded.cls(loaded.model, loaded.options, name=method)
        verifier = loaded.native
        if hasattr(verifier, "prepare"):
            verifier.prepare(props)

        def decide(deadline: float) -> InstanceResult:
            decision = verifier.decide_property(props, deadline, confirm)
            return _graded(decision.status, decision.counterexample, props, ort, confirm,
                           loaded.model, decision.reason)
        return decide
    boxes = []
    for k, prop in enumerate(props):
        wrapped = folder / f"box{k}.onnx"
        wrapped_onnx(loaded.path, prop, wrapped)
        boxes.append((prop, loaded.cls(load_onnx(wrapped), loaded.options, name=method)))
    return lambda deadline: _via_wrapper(boxes, deadline, loaded, confirm)


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


def _via_wrapper(boxes, deadline, loaded: LoadedModel, confirm) -> InstanceResult:
    """Each box's wrapper verifier in turn (unsafe iff any box is)."""
    outcome = None
    for prop, verifier in boxes:
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
            return _graded("falsified", x, [prop], loaded.ort, confirm, loaded.model, None)
        if status != "verified":
            outcome = outcome or InstanceResult(RESULT_OF[status], 0.0,
                                                error=record.get("error"))
    return outcome or InstanceResult("unsat", 0.0)
