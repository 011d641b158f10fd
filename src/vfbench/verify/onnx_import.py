"""Load an exported ONNX model back into torch, for bounding: what is verified is what is shipped.

A small converter for the op set vfbench exports on the input's path (Gemm, MatMul, Conv, Relu,
Add, Sub, Mul, Div, Flatten, Reshape, Pad, BatchNormalization, Identity); any other op there is a
VfbenchError naming the node. Nodes of constants only (Constant, and the small subgraphs the
exporter writes to compute pads and shapes) are folded at load time by ONNX's reference evaluator,
whatever their op. Constants become frozen ``nn.Parameter``s, shaped the way auto_LiRPA 0.3 reads
them (see ``_elementwise_constant``).

The module keeps the activation-site structure: its ReLUs run in the ONNX graph's order (the order
auto_LiRPA lists them in), ``relu_nodes`` holds their ONNX node names, ``sites`` the vfbench site
names read from those (``/body/body.2/relu1/Relu`` -> ``body.2.relu1``), and ``zero_input`` marks
neurons whose ReLU input is identically 0 (``Relu(Mul(keep, x))`` with keep = 0, or a Gemm/Conv
output unit with zero weights and bias, as the export writes them: grafted or pruned neurons,
stable whatever the bounds say).

The export's dense grafted sites (a per-neuron mask after a conv unrolled into a Gemm) are loaded
as Conv and a per-neuron Mul when their Gemm carries a compact hint that reproduces it bitwise
(``vfbench.verify.onnx_compact``); counterexamples are still checked on the file (``OrtModel``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from vfbench.errors import VfbenchError

DEFAULT_TOLERANCE = 1e-4  # max |torch - onnxruntime| on logits before a model is refused


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# --- one torch function per ONNX op; `attrs` are the node's attributes --------------------------

def _gemm(attrs, a, b, c=None):
    if attrs.get("transA", 0):
        a = a.transpose(-1, -2)
    weight = b if attrs.get("transB", 0) else b.transpose(-1, -2)
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        weight = weight * alpha
    if c is not None and beta != 1.0:
        c = c * beta
    return F.linear(a, weight, c)


def _conv(attrs, x, weight, bias=None):
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("auto_pad is not supported; export with explicit pads")
    kernel_dims = weight.dim() - 2
    pads = list(attrs.get("pads", [0] * 2 * kernel_dims))
    begin, end = pads[:kernel_dims], pads[kernel_dims:]
    if begin != end:
        raise ValueError(f"asymmetric pads {pads} are not supported")
    conv = {1: F.conv1d, 2: F.conv2d}.get(kernel_dims)
    if conv is None:
        raise ValueError(f"{kernel_dims}-d convolution is not supported")
    return conv(x, weight, bias, stride=list(attrs.get("strides", [1] * kernel_dims)),
                padding=begin, dilation=list(attrs.get("dilations", [1] * kernel_dims)),
                groups=attrs.get("group", 1))


def _flatten(attrs, x):
    axis = attrs.get("axis", 1)
    if axis != 1:
        raise ValueError(f"Flatten axis {axis} is not supported (only 1)")
    return torch.flatten(x, 1)


def _reshape(attrs, x):
    shape = [int(s) for s in attrs["shape"]]
    if attrs.get("allowzero", 0):
        raise ValueError("Reshape allowzero=1 is not supported")
    # ONNX 0 copies the input's dimension; only the batch dimension may be copied, as -1.
    if shape and shape[0] == 0:
        if -1 in shape[1:]:
            raise ValueError(f"Reshape to {shape}: cannot keep the batch and infer another dim")
        shape[0] = -1
    if 0 in shape[1:]:
        raise ValueError(f"Reshape to {shape}: copying a non-batch dimension is not supported")
    return x.reshape(shape)


def _pad(attrs, x):
    if attrs.get("axes") is not None:
        raise ValueError("Pad with axes is not supported")
    mode = attrs.get("mode", b"constant")
    if mode not in (b"constant", "constant"):
        raise ValueError(f"Pad mode {mode!r} is not supported")
    pads = [int(p) for p in attrs["pads"]]
    rank = len(pads) // 2
    begin, end = pads[:rank], pads[rank:]
    torch_pads = []
    for axis in reversed(range(rank)):  # F.pad lists the last axis first
        torch_pads += [begin[axis], end[axis]]
    value = attrs.get("value")
    if value and float(value[0]) != 0.0:
        # auto_LiRPA 0.3 bounds Pad as if the constant were 0 (unsound even at eps 0).
        raise ValueError(f"Pad with constant value {float(value[0])!r} is not supported "
                         "(auto_LiRPA 0.3 bounds it as 0); only zero padding is")
    return F.pad(x, torch_pads, value=0.0)


_OPS: dict[str, Callable] = {
    "Gemm": _gemm,
    "MatMul": lambda attrs, a, b: torch.matmul(a, b),
    "Conv": _conv,
    "Relu": lambda attrs, x: torch.relu(x),
    "Add": lambda attrs, a, b: a + b,
    "Sub": lambda attrs, a, b: a - b,
    "Mul": lambda attrs, a, b: a * b,
    "Div": lambda attrs, a, b: a / b,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Pad": _pad,
    "Identity": lambda attrs, x: x,
}
SUPPORTED_OPS = tuple(sorted([*_OPS, "BatchNormalization"]))
# Inputs that fix the computation's shape: read at load time (they must be constants) into the
# node's attributes under these names, by position from input 1.
STATIC_INPUTS = {"Reshape": ("shape",), "Pad": ("pads", "value", "axes")}


class OnnxOp(nn.Module):
    """One ONNX node: its op applied to the values its inputs name."""

    def __init__(self, node: onnx.NodeProto, static: dict | None = None):
        super().__init__()
        self.op_type = node.op_type
        self.onnx_name = node.name
        self.attrs = {**_attrs(node), **(static or {})}
        self.fn = _OPS[node.op_type]

    def forward(self, *args):
        return self.fn(self.attrs, *args)

    def magnitude(self, *args):
        """The op on absolute values (``args`` are >= 0): a bound on the sum of the absolute
        values of the terms a float evaluation of this op adds (Sub adds its operands')."""
        if self.op_type == "Sub":
            return args[0] + args[1]
        attrs = {k: abs(v) if k in ("alpha", "beta") else v for k, v in self.attrs.items()}
        return self.fn(attrs, *args)


class OnnxBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNormalization in eval mode, as torch's own module: auto_LiRPA bounds it natively
    (running statistics must stay buffers; as parameters torch refuses to trace them)."""

    def __init__(self, node: onnx.NodeProto, scale, bias, mean, var):
        attrs = _attrs(node)
        if attrs.get("training_mode", 0):
            raise ValueError("BatchNormalization in training mode is not supported")
        super().__init__(scale.numel(), eps=attrs.get("epsilon", 1e-5))
        self.op_type, self.onnx_name = node.op_type, node.name
        with torch.no_grad():
            self.weight.copy_(scale)
            self.bias.copy_(bias)
            self.running_mean.copy_(mean)
            self.running_var.copy_(var)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        self.eval()

    def _check_input_dim(self, input):  # any rank (N, C, ...), like ONNX
        if input.dim() < 2:
            raise ValueError(f"BatchNormalization input of rank {input.dim()}")

    def magnitude(self, x):
        """|scale| * (x + |mean|) + |bias| per channel, scale = weight / sqrt(var + eps)."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = (self.weight / torch.sqrt(self.running_var + self.eps)).abs().view(shape)
        return scale * (x + self.running_mean.abs().view(shape)) + self.bias.abs().view(shape)


@dataclass
class _Step:
    module: nn.Module
    inputs: list[str]  # ONNX value names ('' for an omitted optional input)
    output: str


class OnnxModel(nn.Module):
    """A torch module running an ONNX graph; input (B, *input_shape), output (B, num_classes)."""

    def __init__(self, steps: list[_Step], constants: dict[str, torch.Tensor], input_name: str,
                 output_name: str, input_shape: tuple[int, ...], num_classes: int,
                 relu_nodes: list[str], zero_input: list[torch.Tensor | None],
                 buffers: set[str]):
        super().__init__()
        self.input_name, self.output_name = input_name, output_name
        self.input_shape, self.num_classes = input_shape, num_classes
        self.onnx_path: str | None = None  # set by load_onnx
        self.needs_matrix_mode = False  # set by load_onnx
        self.relu_nodes = relu_nodes
        sites = [site_name(n) for n in relu_nodes]
        self.sites = sites if len(set(sites)) == len(sites) else list(relu_nodes)
        self.zero_input = zero_input
        self._steps = steps
        self.ops = nn.ModuleList(s.module for s in steps)
        self._constant_attr: dict[str, str] = {}
        for i, (name, value) in enumerate(constants.items()):
            attr = f"const{i}"
            if name in buffers:
                self.register_buffer(attr, value)
            else:
                self.register_parameter(attr, nn.Parameter(value, requires_grad=False))
            self._constant_attr[name] = attr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, absolute=False)[0]

    @torch.no_grad()
    def magnitudes(self, x_abs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The graph evaluated on absolute values: for inputs with |x| <= ``x_abs``, bounds on
        the sum of |terms| behind each logit and each ReLU's input (every weight, bias and
        constant taken in absolute value, Sub as Add). Float rounding errors of evaluating
        the graph, and of bounding it, scale with these. Returns (logits' (B, K), per ReLU
        node its input's (B, *shape))."""
        logits, relu_inputs = self._run(x_abs.abs(), absolute=True)
        return logits, relu_inputs

    def _run(self, x: torch.Tensor, absolute: bool, noise: list[torch.Tensor] | None = None,
             relu_outputs: list[torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The graph on x (``absolute``: on absolute values, ``OnnxModel.magnitudes``).
        ``noise``: per ReLU node a tensor added to its input where that value is computed, then
        one added to the logits (``float_certificate``'s model of float32 rounding; on absolute
        values, their absolute values). ``relu_outputs`` (absolute only): per ReLU node the
        value its output takes instead of |input| (bounds on the ReLU outputs)."""
        values = {self.input_name: x}
        relu_inputs = []
        noise_at = {} if noise is None else {
            **{name: noise[k] for k, name in enumerate(self.relu_input_names)},
            self.output_name: noise[-1]}
        for step in self._steps:
            args = [None if n == "" else values[n] if n in values
                    else getattr(self, self._constant_attr[n]) for n in step.inputs]
            while args and args[-1] is None:  # trailing omitted optional inputs
                args.pop()
            try:
                if absolute:
                    args = [None if a is None else a.abs() for a in args]
                    if step.module.op_type == "Relu":
                        relu_inputs.append(args[0])
                        if relu_outputs is not None:
                            values[step.output] = relu_outputs[len(relu_inputs) - 1]
                            continue
                    values[step.output] = step.module.magnitude(*args)
                else:
                    values[step.output] = step.module(*args)
            except (ValueError, RuntimeError) as exc:
                raise VfbenchError(f"ONNX node {step.module.onnx_name!r} "
                                   f"({step.module.op_type}): {exc}") from exc
            if step.output in noise_at:
                added = noise_at[step.output]
                values[step.output] = values[step.output] + (added.abs() if absolute else added)
        return values[self.output_name], relu_inputs

    @property
    def relu_input_names(self) -> list[str]:
        """The ONNX value each ReLU node reads, in graph order."""
        return [s.inputs[0] for s in self._steps if s.module.op_type == "Relu"]

    @property
    def steps(self) -> list[_Step]:
        """The graph's nodes in evaluation order (module, input names, output name)."""
        return list(self._steps)

    def constant(self, name: str) -> torch.Tensor | None:
        """The constant an ONNX value name stands for, None if it is computed."""
        attr = self._constant_attr.get(name)
        return None if attr is None else getattr(self, attr)


def site_name(relu_node_name: str) -> str:
    """vfbench site name (the module's qualified name) of a ReLU from its ONNX node name.

    torch's exporter names a node by its module scopes, each scope by the module's attribute
    name, where a Sequential child carries its parent's name: ``/body/body.2/relu1/Relu`` is
    module ``body.2.relu1``. A name without scopes is returned as it is.
    """
    scopes = [p for p in relu_node_name.split("/") if p][:-1]
    if not scopes:
        return relu_node_name
    parts: list[str] = []
    previous = None
    for scope in scopes:
        if previous is not None and scope.startswith(previous + "."):
            parts.append(scope[len(previous) + 1:])  # Sequential child: "body.2" under "body"
        else:
            parts.append(scope)
        previous = scope
    return ".".join(parts)


def _static_dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def load_onnx(path: str | os.PathLike, compact: bool = True) -> OnnxModel:
    """Convert the ONNX file at ``path``; an unsupported op or attribute is a VfbenchError naming
    the node. Dense grafted sites with a compact hint are loaded in their compact form after it
    is checked against the file (``vfbench.verify.onnx_compact``; ``compact=False``: as written,
    the hints still checked)."""
    from vfbench.verify.onnx_compact import CompactSites

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise VfbenchError(f"{path}: cannot read ONNX ({exc})") from exc
    except Exception as exc:  # protobuf decode errors have no common public base
        raise VfbenchError(f"{path}: not an ONNX model ({exc})") from exc
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise VfbenchError(f"{path}: expected one input and one output, got "
                           f"{[i.name for i in inputs]} -> {[o.name for o in graph.output]}")
    input_dims = _static_dims(inputs[0])[1:]
    output_dims = _static_dims(graph.output[0])[1:]
    if None in input_dims or len(output_dims) != 1 or output_dims[0] is None:
        raise VfbenchError(f"{path}: input {input_dims} / output {output_dims} must be static "
                           "apart from the batch dimension, with output (batch, classes)")

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    constants = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
                 for init in graph.initializer}
    steps: list[_Step] = []
    buffers: set[str] = set()
    relu_nodes: list[str] = []
    zero_input: list[torch.Tensor | None] = []
    producer: dict[str, onnx.NodeProto] = {}
    sites = CompactSites(model, constants, path, enabled=compact)
    # lazily, so that a rewrite sees the constants folded from the nodes before it
    nodes = (n for original in graph.node for n in sites.rewrite(original, constants))
    for node in nodes:
        where = f"{path}: node {node.name!r} ({node.op_type})"
        missing = [n for n in node.input if n and n not in constants and n not in producer
                   and n != inputs[0].name]
        if missing:
            raise VfbenchError(f"{where}: inputs {missing} are produced by no earlier node")
        if all(n == "" or n in constants for n in node.input):
            constants.update(_fold(node, constants, opset, where))
            continue
        if node.op_type not in SUPPORTED_OPS:
            raise VfbenchError(f"{where}: op not supported by vfbench's ONNX import on the "
                               f"input's path (supported: {', '.join(SUPPORTED_OPS)}; any op "
                               "of constants only is folded)")
        if len(node.output) != 1:
            raise VfbenchError(f"{where}: {len(node.output)} outputs; only single-output nodes "
                               "are supported")
        out = node.output[0]
        producer[out] = node
        try:
            if node.op_type == "BatchNormalization":
                steps.append(_batch_norm_step(node, constants, where))
                continue
            names = STATIC_INPUTS.get(node.op_type, ())
            static = _static_inputs(node, names, constants, where)
            op = OnnxOp(node, static)
            if node.op_type == "Relu":
                relu_nodes.append(node.name or out)
                zero_input.append(sites.zero[node.input[0]] if node.input[0] in sites.zero
                                  else _identically_zero(node.input[0], producer, constants))
            step_inputs = [node.input[0]] if names else list(node.input)
            if node.op_type in _ELEMENTWISE:
                step_inputs = [_elementwise_constant(n, node, i, constants, buffers)
                               if n in constants else n for i, n in enumerate(step_inputs)]
            steps.append(_Step(op, step_inputs, out))
        except (ValueError, RuntimeError) as exc:
            raise VfbenchError(f"{where}: {exc}") from exc
    used = {n for s in steps for n in s.inputs}
    constants = {k: v.float() for k, v in constants.items() if k in used}
    module = OnnxModel(steps, constants, inputs[0].name, graph.output[0].name,
                       tuple(int(d) for d in input_dims), int(output_dims[0]), relu_nodes,
                       zero_input, buffers)
    module.onnx_path = str(path)
    # auto_LiRPA 0.3's patches mode fails on a Reshape before a Conv (the export's dense form
    # of a grafted conv site, loaded without its compact hint): such a graph is bounded in
    # matrix mode (lirpa.bounded_model).
    ops = [s.module.op_type for s in steps]
    module.needs_matrix_mode = "Reshape" in ops and "Conv" in ops[ops.index("Reshape"):]
    module.eval()
    _validate_attributes(module, path)
    return module


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div")


def _elementwise_constant(name: str, node: onnx.NodeProto, position: int, constants: dict,
                          buffers: set) -> str:
    """The constant operand of an element-wise node, shaped the way auto_LiRPA 0.3 reads it;
    returns the key it is stored under (one per use).

    0.3 reads a parameter's shape as having no batch dimension and a buffer's first dimension
    as the batch, and treats a divisor as constant only when it is a buffer. So leading
    singleton dimensions (broadcast against the batch) are dropped, which leaves the result
    unchanged, and a divisor becomes a buffer with one leading batch dimension.
    """
    value = constants[name]
    while value.dim() > 0 and value.shape[0] == 1:
        value = value[0]
    key = f"{name}@{node.name or node.output[0]}"
    if node.op_type == "Div" and position == 1:
        value = value.unsqueeze(0)
        buffers.add(key)
    constants[key] = value
    return key


def _batch_norm_step(node: onnx.NodeProto, constants: dict, where: str) -> _Step:
    params = list(node.input[1:5])
    if len(params) != 4 or not all(n in constants for n in params):
        raise VfbenchError(f"{where}: scale, bias, mean and variance must be constants")
    module = OnnxBatchNorm(node, *(constants[n].float() for n in params))
    return _Step(module, [node.input[0]], node.output[0])


def _fold(node: onnx.NodeProto, constants: dict, opset: int | None,
          where: str) -> dict[str, torch.Tensor]:
    """Evaluate a node of constants only with ONNX's reference implementation (any op: the
    exporter computes pads and shapes with small constant subgraphs)."""
    from onnx.reference import ReferenceEvaluator

    feeds = {n: constants[n].numpy() for n in node.input if n}
    try:
        evaluator = ReferenceEvaluator(node, opsets={"": opset} if opset else None)
        outputs = evaluator.run(None, feeds)
    except Exception as exc:  # the reference evaluator raises many types
        raise VfbenchError(f"{where}: cannot evaluate this constant node ({exc})") from exc
    return {name: torch.from_numpy(np.array(value)) for name, value in
            zip(node.output, outputs, strict=True)}


def _static_inputs(node: onnx.NodeProto, names: tuple[str, ...], constants: dict,
                   where: str) -> dict:
    static = {}
    for name, value_name in zip(names, node.input[1:], strict=False):
        if value_name == "":
            continue
        if value_name not in constants:
            raise VfbenchError(f"{where}: its {name} must be a constant (no dynamic shapes)")
        static[name] = constants[value_name].reshape(-1).tolist()
    return static


def _identically_zero(value_name: str, producer: dict, constants: dict) -> torch.Tensor | None:
    """Per-neuron mask of where ``value_name`` is 0 whatever the input: a Mul by a constant
    with zeros (the grafted activation's ``keep``), or a Gemm/Conv whose weights and bias of an
    output unit are all 0 (the export's folded form of it). None when there is no such node."""
    node = producer.get(value_name)
    if node is not None and node.op_type in _ZERO_UNIT_OPS:
        return _zero_output_units(node, constants)
    if node is None or node.op_type != "Mul":
        return None
    factors = [constants[n] for n in node.input if n in constants]
    if len(factors) != 1:
        return None
    zero = factors[0] == 0
    while zero.dim() > 0 and zero.shape[0] == 1:  # broadcast dims; expanded to the site's shape
        zero = zero[0]
    return zero


_ZERO_UNIT_OPS = ("Gemm", "Conv")


def _zero_output_units(node: onnx.NodeProto, constants: dict) -> torch.Tensor | None:
    """Gemm (B constant, not transposed A) / Conv: output units with all-zero weights and bias,
    shaped to broadcast over the output (units,) or (channels, 1, 1); None if there are none."""
    if len(node.input) < 2 or node.input[1] not in constants:
        return None
    attrs = _attrs(node)
    weight = constants[node.input[1]]
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or weight.dim() != 2:
            return None
        weight = weight if attrs.get("transB", 0) else weight.T
    zero = (weight.reshape(weight.shape[0], -1) == 0).all(dim=1)
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in constants:
            return None
        bias = constants[node.input[2]].reshape(-1)
        zero &= (bias == 0) if bias.numel() == zero.numel() else bool((bias == 0).all())
    if not bool(zero.any()):
        return None
    return zero if node.op_type == "Gemm" else zero.reshape(-1, *[1] * (weight.dim() - 2))


def _validate_attributes(module: OnnxModel, path: Path) -> None:
    """Run once on a zero image so an unsupported attribute fails at load, naming its node."""
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *module.input_shape)))
    except VfbenchError as exc:
        raise VfbenchError(f"{path}: {exc}") from exc
    if tuple(out.shape) != (1, module.num_classes):
        raise VfbenchError(f"{path}: output shape {tuple(out.shape)} on one image, expected "
                           f"(1, {module.num_classes})")


# --- onnxruntime: the reference the converted module and every counterexample are checked on ---

class OrtModel:
    """An onnxruntime session on the ONNX file (one thread): plain forward passes."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise VfbenchError(f"{path}: onnxruntime cannot load it ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]


def check_against_onnxruntime(onnx_model: OrtModel | str | os.PathLike,
                              torch_module: nn.Module, x: torch.Tensor) -> float:
    """Max |logits(torch_module) - logits(onnxruntime)| on the batch ``x``."""
    ort = onnx_model if isinstance(onnx_model, OrtModel) else OrtModel(onnx_model)
    tensors = itertools.chain(torch_module.parameters(), torch_module.buffers())
    device = next(tensors, torch.empty(0)).device
    with torch.no_grad():
        ours = torch_module(x.to(device)).cpu().numpy()
    return float(np.abs(ours - ort(x)).max())
