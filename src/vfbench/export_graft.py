"""The model in a form every VNN-COMP tool reads: normalisation folded into the first layer or
as BatchNormalization, grafted activations with their masks folded into weights.

The input normalisation ``(x - mean) / std``: Marabou reads no Div and no per-channel Sub or Mul.
Where the body starts with Flatten and a Linear (the MLPs), it is folded into that Linear (exact:
``W diag(1/s) x + b - W (m/s)`` with m, s repeated over each channel's pixels), so the graph is
Flatten, Gemm and Relu only, which pyNeVer 1.3.2's verifiers also take (they refuse
BatchNormalization). Elsewhere (a conv first: folding would change what its zero padding
means) it is written as a BatchNormalization (running mean ``mean``, running variance
``std**2``, epsilon 0), which Marabou and auto_LiRPA read.

A ``GraftedReLU`` computes ``relu(keep * z) + m * (a * z + b)`` on its input ``z`` (keep = 1 - m).
Exported as it is, that is a ``Mul(keep, z)`` before ``Relu``, which Marabou, pyNeVer and
NeuralSAT reject. ``standard_op_form`` rewrites a copy of the model so that the ONNX graph has
only Gemm/Conv, Add, Relu, Flatten and Reshape around each grafted site, and a grafted neuron's
ReLU input is the constant 0 (its weights and bias are 0: stable for every verifier):

- **folded** (the site follows a Linear, or a Conv2d whose keep and ``m * a`` are uniform over
  each channel): ``Relu(layer_keep(x)) + layer_graft(x) [+ Add(m * b)]`` with layer_keep = the
  layer with its output units scaled by keep, layer_graft = scaled by ``m * a``;
- **dense** (a per-neuron mask or slope after a conv, or a site after anything else, e.g. the
  sum of a residual block): the affine map before the site (the conv, or the identity) unrolled
  into a Gemm over the flattened input, its rows masked the same way, then ``Reshape``. The
  cost is a dense matrix of (site size) x (layer input size) per part: fine for the small CNNs
  of the papers (cnn_4layer on MNIST: 7.4M weights per part), large for big ones. Each dense
  Gemm carries a compact-form hint in its doc_string (``vfbench.compact_hint``: the conv and
  the per-neuron scale), from which vfbench's own verifiers bound ``scale * Conv(x) + bias``
  instead, once they have checked it reproduces the Gemm (``vfbench.verify.onnx_compact``).
  The unrolled conv is exact (each entry is one weight), so that check can be bitwise.

Parts that are identically 0 (pruned neurons: a = b = 0) are left out.

Both forms above have a skip connection, so tools that read sequential networks only (pyNeVer
1.3.2's ONNX converter) cannot take them. ``graft_form="sequential"`` writes an MLP's grafted
sites (a Linear, the site, a Linear) as Gemm, Relu, Gemm with no branch instead: one Gemm gives
the kept units ``W_i x + b_i`` and the grafted units ``s_i v_i + c_i`` with ``v_i = a_i (W_i x
+ b_i) + b'_i``, then one Relu, and the next Gemm multiplies its column i by ``s_i`` and
subtracts ``W_next[:, i] s_i c_i`` in its bias. ``s_i`` is -1 where the interval-arithmetic
(IBP) bounds of ``v_i`` over the whole input box [0, 1]^n are mostly negative, else +1, and
``c_i`` lifts the IBP lower bound of ``s_i v_i`` to a margin (``SHIFT_MARGIN`` of the bounds'
width, at least ``SHIFT_FLOOR``; 0 where it is already above it): the Relu input is then
>= margin > 0 on all of [0, 1]^n, so the Relu is the identity there and the graph is the model
exactly, and any verifier whose bounds on a box inside [0, 1]^n are as tight as IBP on
[0, 1]^n sees the unit as stable. The sign keeps ``c_i`` at most half the range of ``v_i``: the
float32 rounding of ``s_i v_i + c_i`` grows with ``c_i`` (the export's onnxruntime check bounds
it). Outside [0, 1]^n the graph is NOT the model: the export says so in the ONNX doc_string.
Pruned units (a = b = 0) get no shift (their row is 0). Sites elsewhere (after a conv or a
residual sum) have no such form: a conv's zero padding sees the shift at the border only; they
are a VfbenchError.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vfbench import compact_hint
from vfbench.errors import VfbenchError
from vfbench.models import GraftedReLU, Normalize

# export.graft_form: how grafted sites are written (declared in the config schema).
GRAFT_FORMS = ("residual", "sequential")
# The sequential form's shift: its margin above the IBP bound, a fraction of the bound's width
# (for verifiers whose bounds are a little looser than IBP) and at least SHIFT_FLOOR (float32
# rounding).
SHIFT_MARGIN, SHIFT_FLOOR = 0.01, 1e-3
# The input box on which the sequential form equals the model (pixel space).
SEQUENTIAL_DOMAIN = (0.0, 1.0)


class FoldedGraft(nn.Module):
    """``relu(keep_part(x)) + graft_part(x) + offset`` (each of the last two optional); with
    ``out_shape`` the input is flattened first and the result reshaped to it (dense form)."""

    def __init__(self, keep_part: nn.Module, graft_part: nn.Module | None,
                 offset: torch.Tensor | None, out_shape: tuple[int, ...] | None = None,
                 hints: dict[str, str] | None = None):
        super().__init__()
        self.keep_part, self.graft_part = keep_part, graft_part
        # dense form: per part name, its compact hint (the export writes it on the part's Gemm)
        self.hints = hints or {}
        if offset is not None:
            self.register_buffer("offset", offset)
        else:
            self.offset = None
        self.out_shape = out_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_shape is not None:
            x = torch.flatten(x, 1)
        out = torch.relu(self.keep_part(x))
        if self.graft_part is not None:
            out = out + self.graft_part(x)
        if self.offset is not None:
            out = out + self.offset
        if self.out_shape is not None:
            out = out.reshape(-1, *self.out_shape)
        return out


def _scaled(layer: nn.Module, scale: torch.Tensor, extra_bias: torch.Tensor | None = None
            ) -> nn.Module:
    """A copy of the Linear/Conv2d with output unit i's weights and bias times scale[i]."""
    new = copy.deepcopy(layer)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(layer.weight.shape[0])
    with torch.no_grad():
        new.weight.copy_(layer.weight.detach() * scale.view(shape))
        if new.bias is None:
            new.bias = nn.Parameter(torch.zeros_like(bias))
        new.bias.copy_(bias * scale + (0 if extra_bias is None else extra_bias))
    for p in new.parameters():
        p.requires_grad_(False)
    return new


def _per_channel(t: torch.Tensor) -> torch.Tensor | None:
    """The per-channel values of a (C, H, W) tensor, or None if it varies within a channel."""
    first = t.reshape(t.shape[0], -1)[:, :1]
    return first[:, 0] if bool((t.reshape(t.shape[0], -1) == first).all()) else None


@torch.no_grad()
def _dense(layer: nn.Module | None, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, c) with layer(x).flatten() = W @ x.flatten() + c; the identity for None. W is exact:
    the bias-free layer in float64 on one-hot inputs (each entry one weight times 1)."""
    n_in = 1
    for s in in_shape:
        n_in *= s
    if layer is None:
        return torch.eye(n_in), torch.zeros(n_in)
    c = layer(torch.zeros((1, *in_shape))).reshape(-1)
    linear = copy.deepcopy(layer).double()
    linear.bias = None
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    W = linear(basis).reshape(n_in, -1).T.float().contiguous()
    return W, c


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    for p in layer.parameters():
        p.requires_grad_(False)
    return layer


def _graft_form(site: GraftedReLU, layer: nn.Module | None, in_shape, out_shape) -> FoldedGraft:
    keep = site.keep.detach()
    slope = (site.mask * site.a).detach()
    offset = (site.mask * site.b).detach()
    has_slope, has_offset = bool(slope.any()), bool(offset.any())
    if isinstance(layer, nn.Linear) or (
            isinstance(layer, nn.Conv2d) and _per_channel(keep) is not None
            and _per_channel(slope) is not None):
        unit = (lambda t: t) if isinstance(layer, nn.Linear) else _per_channel
        return FoldedGraft(_scaled(layer, unit(keep)),
                           _scaled(layer, unit(slope)) if has_slope else None,
                           offset.clone() if has_offset else None)
    W, c = _dense(layer, in_shape, out_shape)
    keep, slope, offset = keep.reshape(-1), slope.reshape(-1), offset.reshape(-1)
    with_graft = has_slope or has_offset
    hints = {"keep_part": compact_hint.encode(in_shape, layer, keep)}
    if with_graft:
        hints["graft_part"] = compact_hint.encode(in_shape, layer, slope)
    hints = {part: hint for part, hint in hints.items() if hint is not None}
    return FoldedGraft(_linear(W * keep[:, None], c * keep),
                       _linear(W * slope[:, None], c * slope + offset) if with_graft else None,
                       None, tuple(out_shape), hints)


@torch.no_grad()
def standard_op_form(model: nn.Module, graft_form: str = "residual") -> nn.Module:
    """A copy of ``model`` (eval mode) computing the same function with every GraftedReLU and
    the Linear/Conv2d before it replaced by a ``FoldedGraft`` at the site's name (so the ONNX
    Relu node keeps the site's scope); with ``graft_form="sequential"``, by the shifted
    Gemm/Relu/Gemm form of an MLP, after which, if it rewrote a grafted unit, the copy's
    ``valid_input_box`` is SEQUENTIAL_DOMAIN and its ``graft_shift`` the largest shift. A model
    without grafts is returned as a copy."""
    if graft_form not in GRAFT_FORMS:
        raise VfbenchError(f"export.graft_form {graft_form!r}: expected one of {GRAFT_FORMS}")
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, Normalize):
            first = _first_linear_after_flatten(model) if name == "normalize" else None
            if first is not None:
                _fold_normalisation(module, first)
                _replace(model, name, nn.Identity())
            else:
                _replace(model, name, _as_batchnorm(module))
    sites = [name for name, m in model.named_modules() if isinstance(m, GraftedReLU)]
    if not sites:
        return model
    if graft_form == "sequential":
        rewritten, largest = _shift_sites(model, sites)
        if rewritten:
            model.valid_input_box, model.graft_shift = SEQUENTIAL_DOMAIN, largest
        return model
    shapes = _io_shapes(model)
    for name in sites:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        site = getattr(parent, child)
        layer_name = _affine_before(parent, child)
        layer = getattr(parent, layer_name) if layer_name else None
        key = layer if layer is not None else site
        form = _graft_form(site, layer, shapes[id(key)][0], shapes[id(site)][0])
        if layer_name:
            setattr(parent, layer_name, nn.Identity())
        setattr(parent, child, form)
    return model


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _first_linear_after_flatten(model: nn.Module) -> nn.Linear | None:
    """The Linear a zoo model's body starts with (after its Flatten), if it does."""
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Sequential):
        return None
    layers = [m for m in body if not isinstance(m, nn.Identity)]
    if len(layers) >= 2 and isinstance(layers[0], nn.Flatten) and isinstance(layers[1],
                                                                           nn.Linear):
        return layers[1]
    return None


def _fold_normalisation(norm: Normalize, layer: nn.Linear) -> None:
    """``layer(flatten((x - m) / s))`` as ``layer'(flatten(x))``, in place (in float64)."""
    per_channel = layer.in_features // norm.mean.numel()
    mean = norm.mean.reshape(-1).double().repeat_interleave(per_channel)
    std = norm.std.reshape(-1).double().repeat_interleave(per_channel)
    weight = layer.weight.detach().double() / std
    bias = (layer.bias.detach().double() if layer.bias is not None
            else torch.zeros(layer.out_features, dtype=torch.float64)) - weight @ mean
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(layer.out_features), requires_grad=False)
    layer.weight.copy_(weight.float())
    layer.bias.copy_(bias.float())


def _as_batchnorm(norm: Normalize) -> nn.BatchNorm2d:
    mean, std = norm.mean.reshape(-1), norm.std.reshape(-1)
    bn = nn.BatchNorm2d(mean.numel(), eps=0.0).eval()
    with torch.no_grad():
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(std * std)
    for p in bn.parameters():
        p.requires_grad_(False)
    return bn


# A non-Sequential block in the zoo whose forward applies a named layer right before a site.
_PAIRS_IN_BLOCKS = {"relu1": "conv1"}


def _affine_before(parent: nn.Module, child: str) -> str | None:
    """The attribute name of the Linear/Conv2d whose output is the site's input, if any."""
    if isinstance(parent, nn.Sequential):
        names = list(parent._modules)
        for previous in reversed(names[:names.index(child)]):
            module = parent._modules[previous]
            if isinstance(module, nn.Identity):  # a folded BatchNorm
                continue
            return previous if isinstance(module, nn.Linear | nn.Conv2d) else None
        return None
    previous = _PAIRS_IN_BLOCKS.get(child)
    if previous and isinstance(getattr(parent, previous, None), nn.Linear | nn.Conv2d):
        return previous
    return None


def _io_shapes(model: nn.Module) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per module id: (input shape, output shape) of one sample, from a forward pass."""
    shapes = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out: shapes.__setitem__(id(mod), (tuple(inp[0].shape[1:]),
                                                           tuple(out.shape[1:]))))
        for m in model.modules()]
    try:
        model(torch.zeros((1, *model.input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _shift_sites(model: nn.Module, sites: list[str]) -> tuple[int, float]:
    """The sequential form of every site, in place, in network order: (the number of grafted
    units rewritten, each exact on SEQUENTIAL_DOMAIN only; the largest shift)."""
    body = getattr(model, "body", None)
    rewritten, largest = 0, 0.0
    for name in sites:
        parent_name, _, child = name.rpartition(".")
        layers = list(body._modules) if isinstance(body, nn.Sequential) else []
        if parent_name != "body" or child not in layers:
            raise VfbenchError(f"export.graft_form sequential: site {name} is not in the "
                               "model's sequential body (only MLPs have the sequential form)")
        before = _affine_before(body, child)
        after = next((k for k in layers[layers.index(child) + 1:]
                      if not isinstance(body._modules[k], nn.Identity)), None)
        if not (before and isinstance(body._modules[before], nn.Linear)
                and after is not None and isinstance(body._modules[after], nn.Linear)):
            raise VfbenchError(f"export.graft_form sequential: site {name} must sit between "
                               "two Linear layers (an MLP's); use graft_form residual")
        lower, upper = _interval(model, body, before)
        count, shift = _shift_site(body._modules[before], body._modules[child],
                                   body._modules[after], lower, upper)
        rewritten, largest = rewritten + count, max(largest, shift)
        body._modules[child] = nn.ReLU()
    return rewritten, largest


def _shift_site(layer: nn.Linear, site: GraftedReLU, after: nn.Linear,
                lower: torch.Tensor, upper: torch.Tensor) -> tuple[int, float]:
    """Rewrite ``layer`` and ``after`` in place (in float64) so that ``after(relu(layer(x)))``
    equals ``after(site(layer(x)))`` wherever layer's input lies in [lower, upper]: (the number
    of grafted units rewritten, the largest shift)."""
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(layer.out_features), requires_grad=False)
    if after.bias is None:
        after.bias = nn.Parameter(torch.zeros(after.out_features), requires_grad=False)
    weight, bias = layer.weight.double(), layer.bias.double()
    keep = site.keep.double().reshape(-1)
    slope = (site.mask * site.a).double().reshape(-1)
    offset = (site.mask * site.b).double().reshape(-1)
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    z_mid, z_rad = weight @ centre + bias, weight.abs() @ radius  # the layer's output box
    graft_mid, graft_rad = slope * z_mid + offset, slope.abs() * z_rad
    # A unit whose value is mostly negative goes through the Relu negated (and the next layer's
    # column with it): the shift, and the float32 rounding it brings, is then at most half the
    # value's range.
    sign = torch.where(graft_mid < 0, -1.0, 1.0).double()
    margin = (SHIFT_MARGIN * 2 * graft_rad).clamp(min=SHIFT_FLOOR)
    grafted = (site.mask.reshape(-1) > 0) & ((slope != 0) | (offset != 0))
    shift = torch.where(grafted, (margin - (graft_mid * sign - graft_rad)).clamp(min=0),
                        torch.zeros_like(graft_mid))
    sign = torch.where(grafted, sign, torch.ones_like(sign))
    scale = keep + sign * slope
    layer.weight.copy_((weight * scale[:, None]).float())
    layer.bias.copy_((bias * scale + sign * offset + shift).float())
    after_weight = after.weight.double() * sign
    after.bias.copy_((after.bias.double() - after_weight @ shift).float())
    after.weight.copy_(after_weight.float())
    return int(grafted.sum()), float(shift.max())


def _interval(model: nn.Module, body: nn.Sequential, stop: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """IBP bounds (float64) of the input of ``body[stop]`` over inputs in SEQUENTIAL_DOMAIN,
    through the already rewritten layers before it (Flatten, Linear, ReLU, Identity)."""
    if not isinstance(model.normalize, nn.Identity):  # an MLP's is folded into its first Gemm
        raise VfbenchError("export.graft_form sequential: the normalisation is not folded "
                           "into a first Linear (only MLPs have the sequential form)")
    lower = torch.full((1, *model.input_shape), SEQUENTIAL_DOMAIN[0], dtype=torch.float64)
    upper = torch.full_like(lower, SEQUENTIAL_DOMAIN[1])
    for key, module in body._modules.items():
        if key == stop:
            return lower.reshape(-1), upper.reshape(-1)
        if isinstance(module, nn.Linear):
            centre, radius = (upper + lower) / 2, (upper - lower) / 2
            centre = centre @ module.weight.double().T + module.bias.double()
            radius = radius @ module.weight.double().abs().T
            lower, upper = centre - radius, centre + radius
        elif isinstance(module, nn.ReLU):
            lower, upper = lower.clamp(min=0), upper.clamp(min=0)
        elif isinstance(module, nn.Flatten):
            lower, upper = module(lower), module(upper)
        elif not isinstance(module, nn.Identity):
            raise VfbenchError(f"export.graft_form sequential: no interval bounds through "
                               f"{type(module).__name__} (body.{key})")
    raise AssertionError(stop)
