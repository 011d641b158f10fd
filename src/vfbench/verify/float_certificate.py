"""A rigorous float32 certificate for margins the float32 rule (``tolerance``) leaves in (0, tol].

The margin rule ``lower > ATOL + RTOL * M`` rests on a measured RTOL and on M, the graph run on
|x| with every weight in absolute value: M compounds |W| layer by layer, so on deep networks tol
grows far beyond any real rounding error (784-256x6-10 MLP: M ~ 5e6, tol 5-12 against CROWN
margins of +2.5 to +9.4). This certificate bounds onnxruntime's float32 evaluation itself.

The argument. Whatever order onnxruntime's kernels sum in, a float32 value computed from exact
(float32) operands by a chain of at most n roundings (multiplications and additions) differs from
the exact value by at most gamma_n * S, gamma_n = n u / (1 - n u), u = 2^-24, S the sum of the
absolute values of its terms (Higham, Accuracy and Stability, Lemma 3.3 and section 3.1; chains
compose by adding their n, ``rounding_depths``). The values between two ReLU layers are such
chains from the previous ReLU outputs: ReLU is exact in float, so onnxruntime's ReLU outputs are
exact inputs of the next segment. Hence onnxruntime's logits are, exactly, the logits of the
network with noise r_k added to every ReLU node's input and r_out to the logits, where
|r_k| <= gamma_{n_k} S_k and S_k is the LOCAL magnitude of the segment computing that node: its
|x|-graph fed with bounds on the previous ReLU outputs' absolute values (``OnnxModel._run`` with
``relu_outputs``), not the compounded M.

Those bounds on the ReLU outputs must hold for onnxruntime's values, i.e. for the noisy network.
They are assumed (``assumed_upper``: the float32 bound's pre-activation upper bounds widened by
their own tolerance RTOL * M) and checked afterwards: the noisy network's float64 CROWN upper bound
of every ReLU input, plus its float64 rounding RTOL_FLOAT64 * M, must lie at or below max(assumed,
0). By induction over the layers (onnxruntime's layer-k input is the noisy network's at some noise
within the boxes, so below the checked bound, so its ReLU output below what S_{k+1} assumed) the
noise model then holds at every point of the box. If any neuron breaks it, nothing is proven.

A float64 CROWN (or alpha-CROWN) lower bound of the margin of the noisy network, over the input
box and every r_k's box, then lower-bounds the margin of onnxruntime's float32 logits anywhere in
the box, up to that bound's own float64 rounding, which ``tolerance``'s float64 argument bounds by
RTOL_FLOAT64 * M (M of the noisy network; the noise adds gamma S to it). A margin is proven iff
that bound exceeds ATOL + RTOL_FLOAT64 * M (+ the caller's ``extra_tol``, milp's own tolerance).

Assumptions: onnxruntime evaluates each node as sums of correctly rounded float32 products (any
order, blocking, FMA or not: MLAS's GEMM and direct/im2col convolution); not Winograd or FFT
convolutions nor reduced precision (none is used by its CPU provider for these graphs; its
default graph optimisations fold constants such as Mul, Add and BatchNormalization into the
weights, each fold a rounding the depths below already charge). BatchNormalization is
charged 8 roundings, covering onnxruntime computing its scale in float32 and fusing it into a
preceding Gemm/Conv.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vfbench.errors import VfbenchError
from vfbench.verify import lirpa, tolerance
from vfbench.verify.onnx_import import OnnxModel

UNIT_ROUNDOFF = 2.0 ** -24  # float32
# Roundings charged to one BatchNormalization: x - mean, the scale's var + eps, sqrt and
# division, the product, + bias, and two more if onnxruntime folds it into the layer before.
_BATCH_NORM_ROUNDINGS = 8
# The magnitudes S are themselves computed in float64: their relative error is far below this.
_GAMMA_SLACK = 1.0 + 1e-6
# CROWN passes at most: the first assumes the float32 bound's ReLU input bounds, which the noise
# (~1e-4 of the terms) can exceed in early layers; the second assumes what the first reached.
ROUNDS = 2
CERTIFIED_METHODS = ("crown", "alpha_crown")
# Its float64 matrix-mode pass grows with the square of the largest ReLU node: 3.3 s on
# cnn_4layer (3,136 neurons), past a minute and 5 GB per image on conv_big (25,088: bab at a 30 s
# timeout took 87 s per image); models with a larger node are decided by the float32 rule only.
MAX_NODE_NEURONS = 4096


def _fan_in(op: str, attrs: dict, args: list[torch.Tensor]) -> int:
    """Products summed into one output of a Gemm / MatMul / Conv."""
    if op == "Gemm":
        return args[0].shape[0 if attrs.get("transA", 0) else -1]
    if op == "MatMul":
        return args[0].shape[-1]
    weight = args[1]  # Conv: (out, in / groups, *kernel)
    return int(np.prod(weight.shape[1:]))


def rounding_depths(model: OnnxModel) -> list[int]:
    """Per ReLU node's input, then for the logits: the longest chain of float32 roundings from
    the previous ReLU outputs (or the input) to that value, in any summation order."""
    shapes = {model.input_name: torch.zeros((1, *model.input_shape))}
    depth = {model.input_name: 0}
    for step in model.steps:
        args = [None if n == "" else shapes[n] if n in shapes else model.constant(n)
                for n in step.inputs]
        while args and args[-1] is None:
            args.pop()
        depths = [depth.get(n, 0) for n in step.inputs if n]
        op = step.module.op_type
        with torch.no_grad():
            shapes[step.output] = step.module(*args)
        if op == "Relu":
            out = 0  # exact in float: the next segment starts from exact operands
        elif op in ("Gemm", "MatMul", "Conv"):
            extra = 2 if op == "Gemm" and (step.module.attrs.get("alpha", 1.0) != 1.0
                                           or step.module.attrs.get("beta", 1.0) != 1.0) else 0
            bias = 1 if len(args) > 2 else 0
            out = sum(depths) + _fan_in(op, step.module.attrs, args) + bias + extra
        elif op in ("Add", "Sub"):
            out = max(depths) + 1
        elif op in ("Mul", "Div"):
            out = sum(depths) + 1  # a product's relative errors add (constants: 0)
        elif op == "BatchNormalization":
            out = depths[0] + _BATCH_NORM_ROUNDINGS
        elif op in ("Flatten", "Reshape", "Pad", "Identity"):
            out = depths[0]  # exact
        else:
            raise VfbenchError(f"float certificate: no rounding model for ONNX op {op!r} "
                               f"(node {step.module.onnx_name!r})")
        depth[step.output] = out
    return [depth.get(n, 0) for n in model.relu_input_names] + [depth[model.output_name]]


def gamma(n: int) -> float:
    """gamma_n = n u / (1 - n u) for float32 (Higham's bound on n roundings)."""
    if n * UNIT_ROUNDOFF >= 0.5:
        raise VfbenchError(f"float certificate: a chain of {n} float32 roundings is too long")
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


class NoisyNetwork(nn.Module):
    """The model with an additive input per ReLU node's input and one on the logits:
    forward(x, r_1, ..., r_K, r_out)."""

    def __init__(self, model: OnnxModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        return self.model._run(x, absolute=False, noise=list(noise))[0]


def supported(model: OnnxModel, node_sizes: Sequence[int] = ()) -> bool:
    """The certificate needs every ReLU input computed by a node (not the graph input) and read
    by one ReLU only (else no separate noise per node), and no ReLU node (``node_sizes``, when
    given: their neuron counts) above MAX_NODE_NEURONS (its cost)."""
    names = model.relu_input_names
    computed = {s.output for s in model.steps}
    return (len(set(names)) == len(names) and all(n in computed for n in names)
            and max(node_sizes, default=0) <= MAX_NODE_NEURONS)


@dataclass
class Certificate:
    """The certificate for one image: ``lower`` (K-1) float64 lower bounds on onnxruntime's
    float32 margins (rows as ``lirpa.other_classes``), valid only if ``consistent``; ``threshold``
    what each must exceed; ``upper`` (only when asked) upper bounds; ``noise`` the half-widths
    of the noise boxes; ``rounds`` the bound passes it took; ``proven`` the rows it proves."""

    lower: torch.Tensor
    threshold: torch.Tensor
    consistent: bool
    noise: list[torch.Tensor]
    rounds: int
    upper: torch.Tensor | None = None

    @property
    def proven(self) -> torch.Tensor:
        if not self.consistent:
            return torch.zeros_like(self.lower, dtype=torch.bool)
        return tolerance.proven(self.lower, self.threshold, "float certificate")


class FloatCertifier:
    """Certificates for one model: its float64 noisy auto_LiRPA graph, a float64 copy for the
    magnitudes and its rounding depths, built once."""

    def __init__(self, model: OnnxModel, device):
        if not supported(model):
            raise VfbenchError("float certificate: a ReLU reads the graph input or shares its "
                               "input with another")
        self.model = model
        self.model64 = copy.deepcopy(model).double()
        self.depths = rounding_depths(model)
        example = torch.zeros((1, *model.input_shape), device=device)
        with torch.no_grad():
            logits, relu_inputs = model._run(example, absolute=True)
        noise = [t.new_zeros(t.shape) for t in (*relu_inputs, logits)]
        # Matrix mode: 0.3's patches mode takes every Add for a conv's (the noise's after a
        # Gemm fails there).
        self.bm = lirpa.bounded_model(NoisyNetwork(model), (example, *noise), "matrix", device,
                                      torch.float64)

    def certify(self, x: torch.Tensor, label: int, eps: float,
                assumed_upper: list[torch.Tensor], method: str = "crown",
                options: dict | None = None, extra_tol: float | torch.Tensor = 0.0,
                deadline: float | None = None, bound_upper: bool = False,
                rounds: int = ROUNDS) -> Certificate:
        """Bound onnxruntime's float32 margins of one image x (1, *input_shape) over the ball
        by the noisy network (module docstring). ``assumed_upper``: per ReLU node (1, *shape)
        upper bounds its input is assumed to respect. Where the noisy network's bounds break
        them, they are raised to those bounds (plus the largest break of the node, as room for
        the noise growing with them) and bounded again, up to ``rounds`` bound passes in all;
        the last must be consistent. ``method`` 'crown' or 'alpha_crown' (``options`` as
        ``lirpa.ALPHA_DEFAULTS``; alpha-CROWN only in the last, consistent pass).
        ``bound_upper``: also upper bounds (CROWN's; for tests)."""
        if len(assumed_upper) != len(self.model.relu_nodes):
            raise VfbenchError(f"float certificate: {len(assumed_upper)} assumed bounds for "
                               f"{len(self.model.relu_nodes)} ReLU nodes")
        if method not in CERTIFIED_METHODS:
            raise VfbenchError(f"float certificate: bound method {method!r}: expected one of "
                               f"{CERTIFIED_METHODS}")
        x64 = x.detach().double()
        box_lower, box_upper = lirpa.input_box(x64, eps)
        x_abs = torch.maximum(box_lower.abs(), box_upper.abs())
        relu_out = [u.detach().double().clamp(min=0) for u in assumed_upper]
        C = lirpa.margin_spec(torch.tensor([label]), self.model.num_classes).to(x64)
        for round_ in range(rounds):
            with torch.no_grad():
                local_logits, local_inputs = self.model64._run(x_abs, absolute=True,
                                                               relu_outputs=relu_out)
            noise = [gamma(n) * _GAMMA_SLACK * s for n, s in
                     zip(self.depths, [*local_inputs, local_logits], strict=True)]
            inputs = (lirpa.ball(x64, eps), *[
                lirpa.BoundedTensor(torch.zeros_like(e), lirpa.PerturbationLpNorm(
                    eps=0.0, norm=np.inf, x_L=-e, x_U=e)) for e in noise])
            with warnings.catch_warnings(), lirpa.default_dtype(torch.float64):
                warnings.simplefilter("ignore")
                lower, upper = self.bm.compute_bounds(x=inputs, C=C, method="backward",
                                                      bound_upper=bound_upper)
            tolerance.check_finite(lower.detach(), "float certificate: margin lower bound")
            # The noisy network's compounded magnitudes: what its float64 bounds' rounding
            # scales with (tolerance's float64 argument).
            with torch.no_grad():
                logits_m, pre_m = self.model64._run(x_abs, absolute=True, noise=noise)
            reached = [up.double() + tolerance.bound_slack(m, torch.float64) for (_, up), m in
                       zip(lirpa.pre_activation_bounds(self.bm, "float certificate"), pre_m,
                           strict=True)]
            consistent = all(bool((r <= out).all()) for r, out in
                             zip(reached, relu_out, strict=True))
            if consistent or round_ == rounds - 1:
                break
            relu_out = [torch.maximum(out, r + (r - out).clamp(min=0).max())
                        for r, out in zip(reached, relu_out, strict=True)]
        margin_m = tolerance.margin_magnitudes(logits_m, [label])[0]
        threshold = tolerance.ATOL + tolerance.RTOL_FLOAT64 * margin_m + extra_tol
        if consistent and method == "alpha_crown":
            with warnings.catch_warnings(), lirpa.default_dtype(torch.float64):
                warnings.simplefilter("ignore")
                alpha = lirpa.alpha_crown_bounds(self.bm, inputs, C,
                                                 lirpa.check_alpha_options(options),
                                                 threshold[None], deadline)
            tolerance.check_finite(alpha.detach(), "float certificate: alpha-CROWN bound")
            lower = torch.maximum(lower, alpha)
            # alpha-CROWN may re-bound the ReLU inputs: tighter ones, still sound; the
            # consistency above rests on CROWN's, which hold whatever it did.
        return Certificate(lower=lower.detach()[0], threshold=threshold, consistent=consistent,
                           noise=noise, rounds=round_ + 1,
                           upper=None if upper is None else upper.detach()[0])


def assumed_upper_bounds(bounds: lirpa.MarginBounds, k: int) -> list[torch.Tensor]:
    """What a certificate assumes from image k's float32 bounds: their pre-activation upper
    bounds widened by their tolerance RTOL * M (any value would do: it is checked)."""
    return [up[k:k + 1].double() + tol[k:k + 1].double()
            for (_, up), tol in zip(bounds.pre_activation, bounds.pre_tol, strict=True)]
