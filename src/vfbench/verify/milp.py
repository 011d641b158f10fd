"""Exact verification by mixed-integer linear programming (PuLP, with CBC or HiGHS).

The ONNX model (as imported to torch) is read as affine maps between its ReLUs: with every ReLU's
output taken as a free variable, each ReLU's input and the logits are affine in the image and the
earlier ReLU outputs (Gemm, Conv, the normalisation's Sub/Div, a folded BatchNorm, the grafted
activation's a*x+b are all affine). ``piecewise_linear_form`` measures those maps on basis inputs
in float64 and checks them on random points, so an op that is not affine is refused rather than
mis-encoded.

Per image, ReLUs whose pre-activation bounds (CROWN or alpha-CROWN: tight big-M constants are what
makes the MILP fast; computed again in float64 on a float64 copy of the model, once a MILP is
needed, and widened by ``vfbench.verify.tolerance``'s rule for float64) are stable need no binary
variable: inactive ones vanish, active ones are the identity. One MILP per other class whose margin
the bound left undecided, least robust first: minimise y_label - y_j over the ball subject to
y_label - y_j <= tolerance, so that a proven infeasibility settles the class without closing the
optimality gap. The tolerance is the ``tolerance`` option plus the margin's float tolerance
(``vfbench.verify.tolerance``), and the bound shortcut (a class the bound already proves) uses the
same, or, for a bound in (0, tol], the float certificate over the ``tolerance`` option
(``Verifier.margins_proven``). A solve decides only when PuLP reports infeasible or a proven
optimum (``sol_status == 1``: with a time limit PuLP can say "Optimal" for a solve that stopped
early). The encoding must give
the model's logits at the image (an infeasibility proof rests on it alone), and a minimiser is
re-run through the model: the optimum must be the model's own margin there. Anything else is an
error, never a verdict.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pulp
import scipy.sparse as sp
import torch

from vfbench.errors import VfbenchError
from vfbench.verify import tolerance
from vfbench.verify.base import Decision, Verifier
from vfbench.verify.onnx_import import OnnxModel
from vfbench.verify.options import MILP_OPTIONS, defaults_of

# Options and their defaults: vfbench.verify.options.MILP_OPTIONS (checked at start-up).
SOLVERS = MILP_OPTIONS["solver"].choices
MILP_DEFAULTS: dict[str, Any] = defaults_of(MILP_OPTIONS)
# Above this |encoding - model| (margins, relative) the encoding is wrong: an error, not a verdict.
CONSISTENCY_TOLERANCE = 1e-3


# --- the network as affine maps between ReLUs -----------------------------------------------

@dataclass
class PiecewiseLinearForm:
    """Variables v = [x, h_1, ..., h_L] (image pixels, then each ReLU node's outputs, flattened,
    graph order). ReLU k's input is ``layers[k][0] @ v + layers[k][1]`` (only columns of blocks
    before k are non-zero); the logits are ``output[0] @ v + output[1]``."""

    block_sizes: list[int]
    layers: list[tuple[sp.csr_matrix, np.ndarray]]
    output: tuple[sp.csr_matrix, np.ndarray]

    @property
    def offsets(self) -> list[int]:
        return [int(v) for v in np.cumsum([0, *self.block_sizes])]

    def evaluate(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """(ReLU inputs, logits) of one image, by the affine maps."""
        offsets = self.offsets
        v = np.zeros(offsets[-1])
        v[:offsets[1]] = np.asarray(x, dtype=np.float64).reshape(-1)
        pre = []
        for k, (matrix, offset) in enumerate(self.layers):
            pre.append(matrix @ v + offset)
            v[offsets[k + 1]:offsets[k + 2]] = np.maximum(pre[-1], 0)
        matrix, offset = self.output
        return pre, matrix @ v + offset


def relu_modules(model: OnnxModel) -> list[torch.nn.Module]:
    relus = [op for op in model.ops if getattr(op, "op_type", None) == "Relu"]
    if len(relus) != len(model.relu_nodes):
        raise VfbenchError(f"{len(relus)} Relu steps but {len(model.relu_nodes)} Relu nodes")
    return relus


class _Injected:
    """Runs a float64 copy of the model with every ReLU's output replaced by given values,
    returning every ReLU's input and the logits."""

    def __init__(self, model: OnnxModel):
        self.model = copy.deepcopy(model).cpu().double().eval()
        self.relus = relu_modules(self.model)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, outputs: list[torch.Tensor] | None):
        captured: list[torch.Tensor] = []

        def hook(k):
            def replace(module, inputs, out):
                captured.append(inputs[0])
                return out if outputs is None else outputs[k]
            return replace

        handles = [r.register_forward_hook(hook(k)) for k, r in enumerate(self.relus)]
        try:
            logits = self.model(x)
        finally:
            for h in handles:
                h.remove()
        return captured, logits


def piecewise_linear_form(model: OnnxModel, chunk: int = 256) -> PiecewiseLinearForm:
    """Measure the affine maps of ``model`` (see PiecewiseLinearForm); VfbenchError if the model
    is not affine between its ReLUs."""
    run = _Injected(model)
    n = len(run.relus)
    zero_x = torch.zeros((1, *model.input_shape), dtype=torch.float64)
    pre, _ = run(zero_x, None)
    shapes = [tuple(z.shape[1:]) for z in pre]
    sizes = [int(np.prod(model.input_shape))] + [int(np.prod(s)) for s in shapes]
    base_pre, base_logits = run(zero_x, [torch.zeros((1, *s), dtype=torch.float64)
                                         for s in shapes])
    offsets = np.cumsum([0, *sizes])
    triplets: list[list[tuple]] = [[] for _ in range(n + 1)]  # per output: (rows, cols, vals)
    for block, size in enumerate(sizes):
        for start in range(0, size, chunk):
            count = min(chunk, size - start)
            basis = torch.zeros((count, size), dtype=torch.float64)
            basis[torch.arange(count), start + torch.arange(count)] = 1.0
            x = basis.view(count, *model.input_shape) if block == 0 else zero_x.expand(
                count, *model.input_shape)
            hs = [basis.view(count, *shapes[k]) if block == k + 1
                  else torch.zeros((count, *shapes[k]), dtype=torch.float64) for k in range(n)]
            got_pre, got_logits = run(x, hs)
            for k, value in enumerate([*got_pre[block:], got_logits], start=block):
                base = (base_pre + [base_logits])[k]
                delta = (value - base).reshape(count, -1).numpy()
                cols, rows = np.nonzero(delta)
                triplets[k].append((rows, offsets[block] + start + cols, delta[cols, rows]))
    matrices = []
    for k in range(n + 1):
        rows = np.concatenate([t[0] for t in triplets[k]]) if triplets[k] else np.zeros(0, int)
        cols = np.concatenate([t[1] for t in triplets[k]]) if triplets[k] else np.zeros(0, int)
        vals = np.concatenate([t[2] for t in triplets[k]]) if triplets[k] else np.zeros(0)
        height = sizes[k + 1] if k < n else model.num_classes
        matrices.append(sp.csr_matrix((vals, (rows, cols)), shape=(height, offsets[-1])))
    form = PiecewiseLinearForm(
        block_sizes=sizes,
        layers=[(matrices[k], base_pre[k].reshape(-1).numpy().copy()) for k in range(n)],
        output=(matrices[n], base_logits.reshape(-1).numpy().copy()))
    _check_affine(run, form, shapes, model.input_shape)
    return form


def _check_affine(run: _Injected, form: PiecewiseLinearForm, shapes, input_shape,
                  points: int = 3, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((points, *input_shape), generator=gen, dtype=torch.float64)
    hs = [torch.rand((points, *s), generator=gen, dtype=torch.float64) for s in shapes]
    got_pre, got_logits = run(x, hs)
    v = np.concatenate([x.reshape(points, -1).numpy()] + [h.reshape(points, -1).numpy()
                                                          for h in hs], axis=1)
    for k, (matrix, offset) in enumerate([*form.layers, form.output]):
        want = (got_pre + [got_logits])[k].reshape(points, -1).numpy()
        got = (matrix @ v.T).T + offset
        scale = 1.0 + np.abs(want).max()
        if np.abs(got - want).max() > 1e-7 * scale * v.shape[1]:
            what = f"ReLU node {k}'s input" if k < len(form.layers) else "the logits"
            raise VfbenchError(f"{what} is not affine in the image and the earlier ReLU outputs: "
                               "the model has an op the MILP encoding cannot represent")


# --- the MILP -------------------------------------------------------------------------------

@dataclass
class MarginProblem:
    """An encoded ball (+ optional ReLU phase constraints): the PuLP problem without objective,
    its image variables, and the logits as affine expressions."""

    problem: pulp.LpProblem
    x_vars: list[pulp.LpVariable]
    logits: list[pulp.LpAffineExpression]
    binaries: int


def _expression(row: sp.csr_matrix, index: int, variables: list, constant: float):
    start, end = row.indptr[index], row.indptr[index + 1]
    columns, values = row.indices[start:end], row.data[start:end]
    terms = [(variables[c], v) for c, v in zip(columns, values, strict=True)
             if variables[c] is not None]
    return pulp.LpAffineExpression(terms, constant=float(constant))


def _flat64(values) -> torch.Tensor:
    return torch.as_tensor(values).detach().cpu().double().reshape(-1)


def encode_ball(form: PiecewiseLinearForm, x_lower: np.ndarray, x_upper: np.ndarray,
                pre_bounds: list[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
                pre_tol: list[torch.Tensor | np.ndarray],
                phases: dict[tuple[int, int], int] | None = None) -> MarginProblem:
    """The network on the box [x_lower, x_upper] as a MILP.

    ``pre_bounds``: sound float32 (lower, upper) per ReLU node's input over the box, widened
    by ``pre_tol`` (``tolerance.widen``; same shapes) before they become the big-M constants
    (stable neurons get no binary). ``phases``: {(node, neuron): +1 (input >= 0) or -1
    (input <= 0)} constraints that restrict the box to a branch-and-bound domain.
    """
    phases = phases or {}
    problem = pulp.LpProblem("margin", pulp.LpMinimize)
    x_vars = [pulp.LpVariable(f"x{i}", float(lo), float(hi))
              for i, (lo, hi) in enumerate(zip(x_lower.reshape(-1), x_upper.reshape(-1),
                                                 strict=True))]
    variables: list[pulp.LpVariable | None] = list(x_vars)
    binaries = 0
    for k, (matrix, offset) in enumerate(form.layers):
        widened = tolerance.widen(*(_flat64(b) for b in (*pre_bounds[k], pre_tol[k])))
        lower, upper = (b.numpy() for b in widened)
        for n in range(len(offset)):
            l, u = float(lower[n]), float(upper[n])
            z = _expression(matrix, n, variables, offset[n])
            phase = phases.get((k, n))
            if phase is not None:
                problem += (z >= 0) if phase > 0 else (z <= 0), f"phase{k}_{n}"
            if u <= 0 or phase == -1:
                variables.append(None)  # h = 0
                continue
            h = pulp.LpVariable(f"h{k}_{n}", 0.0, max(u, 0.0))
            variables.append(h)
            if l >= 0 or phase == 1:
                problem += h == z, f"active{k}_{n}"
                continue
            d = pulp.LpVariable(f"d{k}_{n}", cat=pulp.LpBinary)
            binaries += 1
            problem += h >= z, f"above{k}_{n}"
            problem += h <= z - l * (1 - d), f"tight{k}_{n}"
            problem += h <= u * d, f"off{k}_{n}"
    matrix, offset = form.output
    logits = [_expression(matrix, j, variables, offset[j]) for j in range(len(offset))]
    return MarginProblem(problem, x_vars, logits, binaries)


@dataclass
class Solved:
    """One solve: ``status`` 'optimal' (proven), 'infeasible', or 'undecided' (time limit or
    solver failure); the optimum and its minimiser when optimal."""

    status: str
    value: float | None = None
    x: np.ndarray | None = None


# What CBC's time limit counts: wall seconds, as the verifier's deadline does. A benchmark that
# times in CPU seconds on a shared machine sets "cpu" (benchmarks/variants.py).
CBC_TIME_MODE = "elapsed"


def make_solver(name: str, time_limit: float, mip_gap: float):
    limit = max(1.0, float(time_limit))
    if name == "cbc":
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=limit, threads=1, gapRel=mip_gap,
                                   timeMode=CBC_TIME_MODE)
    elif name == "highs":
        solver = pulp.HiGHS(msg=False, timeLimit=limit, threads=1, gapRel=mip_gap)
    else:
        raise VfbenchError(f"MILP solver {name!r}: expected one of {SOLVERS}")
    if not solver.available():
        raise VfbenchError(f"MILP solver {name!r} is not available here (HiGHS needs highspy)")
    return solver


def minimise(encoded: MarginProblem, objective: pulp.LpAffineExpression, solver_name: str,
             time_limit: float, mip_gap: float, at_most: float | None = None) -> Solved:
    """Minimise ``objective`` over the encoded set, restricted to ``objective <= at_most`` if
    given (then 'infeasible' proves the minimum is above ``at_most``)."""
    problem = encoded.problem
    problem.setObjective(objective)
    if at_most is not None:
        problem += objective <= at_most, "at_most"
    try:
        problem.solve(make_solver(solver_name, time_limit, mip_gap))
    finally:
        problem.constraints.pop("at_most", None)
    if problem.status == pulp.LpStatusInfeasible:
        return Solved("infeasible")
    # sol_status 1 = an optimal solution was proven; "Optimal" status alone is not enough.
    if problem.status != pulp.LpStatusOptimal or problem.sol_status != pulp.LpSolutionOptimal:
        return Solved("undecided")
    x = np.array([v.varValue for v in encoded.x_vars], dtype=np.float64)
    return Solved("optimal", float(pulp.value(objective)), x)


def model_margins(model: torch.nn.Module, x: np.ndarray, label: int,
                  input_shape) -> np.ndarray:
    """logit_label - logit_j for every j (0 at j = label), by a plain forward pass."""
    device = next(model.parameters()).device
    point = torch.as_tensor(x, dtype=torch.float32, device=device).reshape(1, *input_shape)
    with torch.no_grad():
        logits = model(point)[0].double().cpu().numpy()
    return logits[label] - logits


def check_form_at(form: PiecewiseLinearForm, model, x: np.ndarray, where: str) -> None:
    """VfbenchError unless the affine form gives the model's logits at ``x``: an
    infeasibility proof (verified) rests on the encoding alone, so it is checked per image."""
    _, logits = form.evaluate(x)
    want = model_margins(model, x, 0, model.input_shape)  # logits[0] - logits
    got = logits[0] - logits
    if np.abs(got - want).max() > CONSISTENCY_TOLERANCE * (1 + np.abs(want).max()):
        raise VfbenchError(f"{where}: the MILP encoding's logits differ from the model's at the "
                           "image: the encoding is wrong")


def check_optimum(model, solved: Solved, label: int, other: int, input_shape, where: str
                  ) -> np.ndarray:
    """The model's margins at the minimiser; VfbenchError if the optimum is not the model's own
    margin there (an encoding or solver fault must never become a verdict)."""
    margins = model_margins(model, solved.x, label, input_shape)
    if abs(margins[other] - solved.value) > CONSISTENCY_TOLERANCE * (1 + abs(solved.value)):
        raise VfbenchError(f"{where}: the MILP optimum {solved.value:.6g} for class {other} is "
                           f"not the model's margin {margins[other]:.6g} at its minimiser")
    return margins


# --- the verifier ---------------------------------------------------------------------------

class MilpVerifier(Verifier):
    """Complete verification by one exact MILP per undecided class (options: MILP_DEFAULTS).

    Networks up to NET2 / cnn_4layer size: the encoding has a variable per pixel and per
    non-dead neuron, and a binary per unstable one.
    """

    OPTIONS = MILP_OPTIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        make_solver(self.options["solver"], 1, self.options["mip_gap"])  # available?
        self.form = piecewise_linear_form(self.model)

    def decide(self, x: torch.Tensor, label: int, eps: float, deadline: float) -> Decision:
        # Without ReLUs CROWN is exact and alpha-CROWN has nothing to optimise.
        method = self.options["bounds"] if self.model.relu_nodes else "crown"
        bounds = self.bounds(x, [label], eps, method)
        # The MILP's own tolerance on top of the margin's float tolerance (which covers
        # onnxruntime's float32 rounding): the bound shortcut and every solve decide against it.
        margin_tol = float(self.options["tolerance"]) + bounds.tol[0]
        proven = self.margins_proven(x, [label], eps, bounds.lower, margin_tol[None], bounds,
                                     method, f"verifier {self.name}",
                                     extra_tol=float(self.options["tolerance"]),
                                     deadline=deadline)[0]
        lower = bounds.lower[0].double().cpu().numpy()
        margin_tol = margin_tol.double().cpu().numpy()
        others = [j for j in range(self.model.num_classes) if j != label]
        common = {"bound_method": method, "pre_activation": bounds.pre_activation}
        if bool(proven.all()):
            return Decision("verified", margin_lb=float(lower.min()), **common)
        x_np = x.detach().cpu().double().numpy().reshape(-1)
        check_form_at(self.form, self.model, x_np, f"verifier {self.name}")
        # The big-M constants in float64: their tolerance is then ~1e-10 of their terms, not
        # float32's 1e-6, which on deep neurons would turn stable ones unstable
        # (vfbench.verify.tolerance). Only here: most images the float32 bound decides.
        exact = self.bounds(x, [label], eps, method, dtype=torch.float64)
        encoded = encode_ball(self.form, np.clip(x_np - eps, 0, 1), np.clip(x_np + eps, 0, 1),
                              [(lo[0], up[0]) for lo, up in exact.pre_activation],
                              [t[0] for t in exact.pre_tol])
        margin_lb = float(lower.min())
        for row in np.argsort(lower):
            if proven[row]:
                continue
            j, tol = others[row], float(margin_tol[row])
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return Decision("timeout", margin_lb=margin_lb, **common)
            # Only the sign matters: with margin <= tol imposed, infeasible proves margin > tol.
            solved = minimise(encoded, encoded.logits[label] - encoded.logits[j],
                              self.options["solver"], remaining, self.options["mip_gap"],
                              at_most=tol)
            if solved.status == "infeasible":
                continue
            if solved.status == "undecided":
                late = time.perf_counter() >= deadline
                return Decision("timeout" if late else "unknown", margin_lb=margin_lb, **common)
            margins = check_optimum(self.model, solved, label, j, self.model.input_shape,
                                    f"verifier {self.name}")
            if solved.value < -tol and margins[j] < 0:
                return Decision("falsified", margin_lb=margin_lb,
                                counterexample=torch.as_tensor(solved.x, dtype=torch.float32),
                                **common)
            return Decision("unknown", margin_lb=margin_lb, **common)  # |optimum| <= tol
        # Every class: margin > its bound where that proves it, else > its tolerance (MILP).
        return Decision("verified", margin_lb=float(np.where(proven.cpu().numpy(), lower,
                                                             margin_tol).min()), **common)
