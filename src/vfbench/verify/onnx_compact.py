"""Compact loading of the export's dense grafted sites, checked against the file.

``vfbench.export_graft`` writes a per-neuron mask or slope after a conv (and a site after a
residual sum) as Flatten(X) -> Gemm_keep -> Relu [-> Add(., Gemm_graft)] -> Reshape, each Gemm
a per-neuron scale times the conv unrolled into a (site size) x (input size) matrix: standard
ops every tool reads, but on a masked cnn_4layer 2x CROWN's time and 1/13 of bab's domains per
second (``benchmarks/compact_conv.py``), and a 60 MB file instead of 0.67 MB. Each such
Gemm carries a hint (``vfbench.compact_hint``). ``CompactSites`` rewrites the graph as it is
loaded: the Gemm becomes Conv(X, weight) -> Mul(scale) -> Add(the Gemm's own bias), in the
conv's (C, H, W) layout; the Flatten and the Reshape back become Identity, so auto_LiRPA sees
Conv and a constant per-neuron Mul (patches mode, no dense matrix).

Nothing in a hint is trusted; before any rewrite, per hinted Gemm:

- its matrix must equal, bitwise, the float32 products ``scale[o] * U[o, i]``, U the hint's
  conv unrolled by running the very Conv op the module will run, in float64 on one-hot inputs
  (each entry is one weight times 1: exact); the bias is the Gemm's own;
- its input must be a Flatten (axis 1) of a value whose inferred shape is the hint's input
  shape, feeding hinted Gemms only;
- while loading, values in the conv layout may only go through Relu, Add of two such values of
  the same shape (both layout-independent) and a Reshape to exactly that shape.

Any failure is a VfbenchError naming the node. Files without hints load as before.

Exactness. Where ``scale * U`` is exact in float32 (a 0/1 keep mask, the identity), the compact
map is the Gemm's map. Where it is not (a graft slope), the file holds the correctly rounded
products, each within 2^-24 of |scale * w|: ``vfbench.verify.tolerance`` explains why up to
``COMPACT_INEXACT_PARTS`` such parts fit in the margin tolerance; a model with more is loaded
dense (with a warning).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass

import onnx
import torch
from onnx import helper

from vfbench import compact_hint
from vfbench.errors import VfbenchError
from vfbench.verify.tolerance import COMPACT_INEXACT_PARTS

log = logging.getLogger(__name__)
_PREFIX = "vfbench_compact:"
_CHUNK = 256  # one-hot inputs per Conv call when unrolling


@dataclass
class _Part:
    gemm: onnx.NodeProto
    hint: compact_hint.CompactHint
    out_shape: tuple[int, ...]
    bias: torch.Tensor  # the Gemm's, flat
    exact: bool  # scale * U exact in float32
    zero: torch.Tensor | None  # output units with all-zero weights and bias, in out_shape


class CompactSites:
    """The graph rewrite of the module docstring, fed node by node (``rewrite``)."""

    def __init__(self, model: onnx.ModelProto, constants: dict[str, torch.Tensor], path,
                 enabled: bool = True):
        self.path = path
        self.parts: dict[str, _Part] = {}  # by the Gemm's output name
        self.flattens: set[str] = set()  # outputs of the Flattens before hinted Gemms
        self.layout: dict[str, tuple[int, ...]] = {}  # values now in a conv's (C, H, W) layout
        self.zero: dict[str, torch.Tensor | None] = {}
        graph = model.graph
        self.outputs = {o.name for o in graph.output}
        hinted = [(node, hint) for node in graph.node if node.op_type == "Gemm"
                  and (hint := compact_hint.decode(node.doc_string, self._where(node)))]
        if not hinted:
            return
        producers = {out: node for node in graph.node for out in node.output}
        consumers = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                consumers[name].append(node)
        shapes = _inferred_shapes(model, self._where)
        self._unrolled: dict[tuple, tuple[torch.Tensor, tuple[int, ...]]] = {}
        parts = [self._checked(gemm, hint, producers, shapes, constants)
                 for gemm, hint in hinted]
        gemm_outputs = {part.gemm.output[0] for part in parts}
        flattens = {part.gemm.input[0] for part in parts}
        for name in flattens:
            for node in consumers[name]:
                if node.op_type != "Gemm" or node.output[0] not in gemm_outputs:
                    raise VfbenchError(f"{self._where(node)}: reads {name!r}, the Flatten "
                                       "before a compact-hinted Gemm; only hinted Gemms may")
        del self._unrolled
        inexact = sum(not part.exact for part in parts)
        if not enabled:
            return
        if inexact > COMPACT_INEXACT_PARTS:
            log.warning("%s: %d dense sites with inexact per-neuron scales (at most %d fit "
                        "the margin tolerance): loaded dense", path, inexact,
                        COMPACT_INEXACT_PARTS)
            return
        self.parts = {part.gemm.output[0]: part for part in parts}
        self.flattens = flattens

    def _where(self, node: onnx.NodeProto) -> str:
        return f"{self.path}: node {node.name!r} ({node.op_type})"

    def _checked(self, gemm, hint, producers, shapes, constants) -> _Part:
        where = self._where(gemm)
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta",
                                                                                   1.0) != 1.0:
            raise VfbenchError(f"{where}: a compact hint needs a Gemm with transA 0, alpha "
                               f"and beta 1; got {attrs}")
        if len(gemm.input) < 2 or gemm.input[1] not in constants or (
                len(gemm.input) > 2 and gemm.input[2] and gemm.input[2] not in constants):
            raise VfbenchError(f"{where}: a compact hint needs the Gemm's B and C initializers")
        flatten = producers.get(gemm.input[0])
        if flatten is None or flatten.op_type != "Flatten" or any(
                a.name == "axis" and a.i != 1 for a in flatten.attribute):
            raise VfbenchError(f"{where}: a compact hint needs the Gemm's input to be a "
                               "Flatten (axis 1)")
        source_shape = shapes.get(flatten.input[0])
        if source_shape != hint.input_shape:
            raise VfbenchError(f"{where}: the hint's input shape {hint.input_shape} is not the "
                               f"Flatten's input shape {source_shape}")
        weight = constants[gemm.input[1]].float()
        weight = weight if attrs.get("transB", 0) else weight.T
        n_out, n_in = weight.shape
        key = (n_in, hint.input_shape, repr(sorted(hint.conv_attrs.items())),
               None if hint.weight is None else hint.weight.numpy().tobytes())
        if key not in self._unrolled:  # a site's keep and graft parts share their conv
            self._unrolled[key] = _unrolled(hint, n_in, where)
        unrolled, out_shape = self._unrolled[key]
        scale = hint.scale.reshape(-1)
        if unrolled.shape[0] != n_out or scale.numel() != n_out:
            raise VfbenchError(f"{where}: the hint's conv gives {unrolled.shape[0]} outputs and "
                               f"{scale.numel()} scales; the Gemm has {n_out}")
        products = unrolled.float() * scale[:, None]
        if not torch.equal(products, weight):
            o, i = (int(v) for v in (products != weight).nonzero()[0])
            raise VfbenchError(f"{where}: the compact hint does not reproduce the Gemm's matrix "
                               f"(entry [{o}, {i}]: {float(weight[o, i])!r} in the file, "
                               f"{float(products[o, i])!r} from the hint); refusing it")
        if len(gemm.input) > 2 and gemm.input[2]:
            bias = constants[gemm.input[2]].float().reshape(-1)
            if bias.numel() != n_out:
                raise VfbenchError(f"{where}: bias of {bias.numel()} values for {n_out} outputs")
        else:
            bias = torch.zeros(n_out)
        exact = torch.equal(unrolled * scale.double()[:, None], weight.double())
        zero = (weight == 0).all(dim=1) & (bias == 0)
        return _Part(gemm, hint, out_shape, bias, exact,
                     zero.reshape(out_shape) if bool(zero.any()) else None)

    def rewrite(self, node: onnx.NodeProto, constants: dict[str, torch.Tensor]
                ) -> list[onnx.NodeProto]:
        """The nodes standing for ``node`` (itself when it is none of the rewritten ones);
        new constants go into ``constants``."""
        if not self.parts:
            return [node]
        if node.op_type == "Flatten" and node.output[0] in self.flattens:
            return [helper.make_node("Identity", [node.input[0]], [node.output[0]],
                                     name=node.name)]
        part = self.parts.get(node.output[0]) if node.op_type == "Gemm" else None
        if part is not None:
            return self._compact(part, constants)
        inside = [n for n in node.input if n in self.layout]
        if not inside:
            return [node]
        shapes = {self.layout[n] for n in inside}
        shape = next(iter(shapes))
        out = node.output[0] if node.output else None
        if len(shapes) == 1 and (node.op_type == "Relu" or (
                node.op_type == "Add" and len(inside) == len(node.input) == 2)):
            if out in self.outputs:
                raise VfbenchError(f"{self._where(node)}: a graph output in a compact site")
            self.layout[out] = shape
            return [node]
        if node.op_type == "Reshape" and inside == [node.input[0]] and len(node.input) > 1:
            target = constants.get(node.input[1])
            target = None if target is None else [int(v) for v in target.reshape(-1).tolist()]
            if target is not None and target[0] in (0, -1) and tuple(target[1:]) == shape:
                return [helper.make_node("Identity", [node.input[0]], [out], name=node.name)]
        raise VfbenchError(
            f"{self._where(node)}: reads the output of a compact-hinted dense site, which may "
            f"only go through Relu, Add of two such values and a Reshape to (batch, "
            f"{', '.join(map(str, shape))}); the hint does not describe this graph (remove "
            "the vfbench_compact doc_strings to load it dense)")

    def _compact(self, part: _Part, constants: dict) -> list[onnx.NodeProto]:
        base = _PREFIX + (part.gemm.name or part.gemm.output[0])
        keys = {"weight": f"{base}/weight", "scale": f"{base}/scale", "bias": f"{base}/bias"}
        constants[keys["scale"]] = part.hint.scale.reshape(part.out_shape).clone()
        constants[keys["bias"]] = part.bias.reshape(part.out_shape).clone()
        nodes = []
        x = part.gemm.input[0]  # the Flatten's output, now its input (Identity)
        if part.hint.weight is not None:
            constants[keys["weight"]] = part.hint.weight.clone()
            nodes.append(helper.make_node("Conv", [x, keys["weight"]], [f"{base}/conv"],
                                          name=f"{base}/conv", **part.hint.conv_attrs))
            x = f"{base}/conv"
        nodes += [helper.make_node("Mul", [x, keys["scale"]], [f"{base}/scaled"],
                                   name=f"{base}/scale"),
                  helper.make_node("Add", [f"{base}/scaled", keys["bias"]],
                                   [part.gemm.output[0]], name=f"{base}/bias")]
        self.layout[part.gemm.output[0]] = part.out_shape
        self.zero[part.gemm.output[0]] = part.zero
        return nodes


def _unrolled(hint: compact_hint.CompactHint, n_in: int, where: str
              ) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(U, output shape): U (outputs, n_in) float64 with conv(x).flatten() = U @ x.flatten()
    for the hint's bias-free conv (the identity without one), by running the import's own Conv
    op on one-hot inputs."""
    from vfbench.verify.onnx_import import OnnxOp  # imports this module

    if math.prod(hint.input_shape) != n_in:
        raise VfbenchError(f"{where}: the hint's input shape {hint.input_shape} has "
                           f"{math.prod(hint.input_shape)} values; the Gemm reads {n_in}")
    if hint.weight is None:
        return torch.eye(n_in, dtype=torch.float64), hint.input_shape
    conv = OnnxOp(helper.make_node("Conv", ["x", "w"], ["y"], name=where, **hint.conv_attrs))
    weight = hint.weight.double()
    columns = []
    try:
        for start in range(0, n_in, _CHUNK):
            count = min(_CHUNK, n_in - start)
            basis = torch.zeros((count, n_in), dtype=torch.float64)
            basis[torch.arange(count), start + torch.arange(count)] = 1.0
            out = conv(basis.view(count, *hint.input_shape), weight)
            columns.append(out.reshape(count, -1))
    except (ValueError, RuntimeError) as exc:
        raise VfbenchError(f"{where}: the hint's conv does not run on its input shape "
                           f"({exc})") from exc
    return torch.cat(columns).T.contiguous(), tuple(out.shape[1:])


def _inferred_shapes(model: onnx.ModelProto, where) -> dict[str, tuple[int, ...]]:
    """Static shapes (no batch dimension) of the graph's values, by ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises several types
        raise VfbenchError(f"{where(model.graph.node[0])}: ONNX shape inference failed, "
                           f"needed to check the compact hints ({exc})") from exc
    graph = inferred.graph
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) > 1 and all(d.HasField("dim_value") for d in dims[1:]):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims[1:])
    return shapes
