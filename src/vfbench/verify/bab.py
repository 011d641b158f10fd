"""Complete verification by branch and bound over ReLU splits, bounded by beta-CROWN.

Per image: CROWN, then alpha-CROWN at the root; every margin (y_label - y_j) still not proven
positive becomes a root domain. A domain is the ball restricted by ReLU splits (neuron input >= 0
or <= 0). Each round takes the domains with the lowest lower bounds and splits each on a neuron:
the BaBSR-style scores name a few candidates and a probe (one CROWN pass on their children) picks
the one whose children it bounds highest. All children are bounded in one batch with auto_LiRPA
0.3's beta-CROWN: intermediate bounds are the root's, with each split neuron's bound clamped at 0
(sound on the domain), and every split enters the final bound as a Lagrangian term beta * (sign *
z) with beta >= 0 optimised jointly with the alpha slopes (0.3's sparse betas on each ReLU node,
set through ``lirpa.set_split_betas``: ``lirpa`` is the one module that touches 0.3's node
state). Small nodes' bounds are recomputed per domain first, by
CROWN with the splits' betas. A root margin is proven by ``Verifier.margins_proven``: above its
tolerance, or, in (0, tol] and where every ReLU node is small (``refine_max_neurons``), by the
float certificate (``vfbench.verify.float_certificate``: CROWN after the root CROWN, alpha-CROWN
after the root alpha-CROWN); those rows are not searched. A
domain whose float32 lower bound is above its margin's tolerance (``vfbench.verify.tolerance``;
domains keep that rule, no certificate per domain), or whose bounds are
inverted beyond the neurons' tolerances (infeasible), is closed; a non-finite bound is an error,
never a closed domain. The point that minimises each child's linear lower bound is run through the
model (an attack guided by the bound). A domain with no unstable neuron left is decided exactly by
an LP (``milp``). The image is verified when no domain is left; a counterexample (re-checked by
onnxruntime, here and in the base) makes it falsified; the deadline and the caps on open domains
and memory end it as timeout / unknown.

Large nodes (conv layers) keep CROWN's bounds at the root at first; an image still open after
``escalate_after`` branches gets alpha-CROWN on every layer, where that fits in memory, and a
fresh search from those tighter bounds.

Options for deeper networks (benchmarks/deep_mlp): ``domain_refine: none`` keeps the root's
intermediate bounds for every domain (many more domains per second on deep MLPs); ``domain_refine:
alpha`` re-optimises the small nodes' bounds per domain after the CROWN pass: 0.3's CROWN-Optimized
recomputes them at every step, their slopes (one per pair of neurons, from the root's alpha-CROWN)
optimised with the final bound's and the betas, and the tighter of those and the CROWN pass's is
kept (on deep_mlp at 30 CPU s: 39 of 60 decided against 40 with ``crown``, the bounds of the same
domains +0.12 to +0.26 on average at 34-47x the CPU time; benchmarks/README.md); ``branching:
fsb`` adds BaBSR's bias score to the candidates the probe chooses between; ``attack_every`` runs
PGD from the minimisers of the worst domains' linear bounds (a counterexample it finds is
re-checked like any other); ``domain_batch: auto`` sizes the rounds to the machine.

Branching on conv layers needs ``conv_mode='matrix'`` (0.3 ignores beta in patches mode): the
root CROWN uses the verifier's ``conv_mode``, the domains a matrix-mode copy of the graph.
Neurons whose ReLU input is identically 0 (grafted or pruned) are never branched on.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vfbench.attacks import pgd_attack
from vfbench.verify import lirpa, milp, tolerance
from vfbench.verify.base import Decision, Verifier
from vfbench.verify.options import BAB_OPTIONS, defaults_of

# Options and their defaults: vfbench.verify.options.BAB_OPTIONS (checked at start-up).
BRANCHING = BAB_OPTIONS["branching"].choices
DOMAIN_REFINE = BAB_OPTIONS["domain_refine"].choices
BAB_DEFAULTS: dict[str, Any] = defaults_of(BAB_OPTIONS)
# domain_batch 'auto': parents per round per CPU thread, and on a GPU (measured: benchmarks/
# README.md, deep_mlp).
AUTO_DOMAIN_BATCH = {"cpu_thread": 64, "cuda": 1024}


@dataclass(order=True)
class Domain:
    """An open domain: ``lower`` bounds margin row ``spec`` over the ball restricted by
    ``splits`` ((relu node, flat neuron, +1 for input >= 0 / -1 for <= 0), in split order).
    ``betas`` (one per split), ``alphas`` (per node) and ``refined`` bounds are where its last
    bounding left them; ``candidates`` are the neurons to try splitting next (none: a leaf)."""

    lower: float
    order: int
    spec: int = field(compare=False)
    splits: tuple[tuple[int, int, int], ...] = field(compare=False)
    betas: tuple[float, ...] = field(compare=False)
    alphas: list[torch.Tensor] = field(compare=False)
    refined: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(compare=False)
    candidates: list[tuple[int, int]] = field(compare=False, default_factory=list)


class _Search:
    """Branch and bound for one image: the domain pool and the bounding of batches."""

    def __init__(self, verifier: BabVerifier, x: torch.Tensor, label: int, eps: float,
                 deadline: float, root_pre: list[tuple[torch.Tensor, torch.Tensor]],
                 tol: torch.Tensor, pre_tol: list[torch.Tensor], budget: int | None = None,
                 root_slopes: dict[tuple[int, int], torch.Tensor] | None = None):
        self.v, self.x, self.label, self.eps, self.deadline = verifier, x, label, eps, deadline
        # Tolerances (vfbench.verify.tolerance): per margin row, and per ReLU node's neuron.
        self.tol = tol.reshape(-1).tolist()
        self.pre_tol = [t[0].reshape(-1) for t in pre_tol]
        self.budget = budget  # branches after which run() gives up with 'budget'
        # domain_refine 'alpha': the root's slopes of node j for node k's bounds, (2, n_k, n_j).
        self.root_slopes = root_slopes or {}
        self.opts = verifier.options
        self.bm = verifier.bab_bm
        self.relus = lirpa.relu_nodes(self.bm)
        self.names = [lirpa.relu_input_name(r) for r in self.relus]
        self.shapes = [tuple(lo.shape[1:]) for lo, _ in root_pre]
        # Root pre-activation bounds, flattened (n_k,), and the neurons never to branch on.
        self.lower0 = [lo[0].reshape(-1) for lo, _ in root_pre]
        self.upper0 = [up[0].reshape(-1) for _, up in root_pre]
        self.frozen = [torch.zeros_like(lo, dtype=torch.bool) if z is None
                       else z.to(lo.device).expand(shape).reshape(-1)
                       for lo, z, shape in zip(self.lower0, verifier.model.zero_input,
                                               self.shapes, strict=True)]
        self.bias = [lirpa.pre_activation_bias(relu, shape).to(lo.device)
                     for relu, shape, lo in zip(self.relus, self.shapes, self.lower0, strict=True)]
        self.refine = [k for k, lo in enumerate(self.lower0)
                       if 0 < lo.numel() <= self.opts["refine_max_neurons"] and k > 0
                       and self.opts["domain_refine"] != "none"]
        self.C = lirpa.margin_spec(torch.tensor([label]), verifier.model.num_classes
                                   ).to(x.device)[0]
        # Open domains the memory cap allows: each holds slopes for every neuron and the
        # refined nodes' bounds.
        neurons = sum(lo.numel() for lo in self.lower0)
        per_domain = 4 * (neurons + 2 * sum(self.lower0[k].numel() for k in self.refine)) + 512
        self.max_open = min(self.opts["max_domains"], verifier._memory // per_domain)
        # Bounding a batch holds, per domain, some 16 copies of its slopes (lower/upper, grads,
        # optimiser state, the graph): parents per round so that a quarter of the memory cap
        # covers their probed children.
        per_child = 64 * neurons + 2**14
        if self.opts["domain_refine"] == "alpha":
            # Each step recomputes the refined nodes' unstable neurons (at most the root's)
            # through every earlier node, with gradients, and holds a slope per pair of
            # neurons (value, gradient, two Adam moments): some 16 bytes each.
            unstable = [int(((lo < 0) & (up > 0)).sum()) for lo, up
                        in zip(self.lower0, self.upper0, strict=True)]
            per_child += 16 * sum((unstable[k] + 2 * self.lower0[k].numel())
                                  * sum(lo.numel() for lo in self.lower0[:k])
                                  for k in self.refine)
        children = max(2, verifier._memory // 4 // per_child)
        probed = 2 * self.opts["branch_candidates"] * (2 if self.opts["branching"] == "fsb" else 1)
        self.domain_batch = max(1, min(verifier.domain_batch, children // probed))
        self.pool: list[Domain] = []
        self.counter = itertools.count()
        self.domains = 0
        self.depth = 0
        self.proven = float("inf")  # the least lower bound of the domains closed by a bound
        self.counterexample: torch.Tensor | None = None
        self.undecided_leaf = False
        self.warm = False
        # Minimisers of the linear bounds of the last batch's lowest-bounded domains.
        self.attack_starts: torch.Tensor | None = None
        # The image's float64 CROWN bounds, widened, flattened (for leaf LPs; when first asked).
        self._root64: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    # --- bounding a batch of domains ---------------------------------------------------------

    def _domain_bounds(self, domains: list[Domain]):
        """Per ReLU node: (lower, upper) of shape (N, n_k) for the batch: root bounds, refined
        ones where a domain has them, each split neuron's clamped at 0; and which domains are
        infeasible (some lower > upper beyond the tolerance). An inversion within the
        tolerance (rounding) is undone, lower and upper swapped, so bounding stays sound."""
        out = []
        infeasible = torch.zeros(len(domains), dtype=torch.bool, device=self.x.device)
        for k in range(len(self.relus)):
            if any(k in d.refined for d in domains):
                lower = torch.stack([d.refined[k][0] if k in d.refined else self.lower0[k]
                                     for d in domains])
                upper = torch.stack([d.refined[k][1] if k in d.refined else self.upper0[k]
                                     for d in domains])
            else:
                lower = self.lower0[k].expand(len(domains), -1).clone()
                upper = self.upper0[k].expand(len(domains), -1).clone()
            for sign, bound, clamp in ((1, lower, {"min": 0}), (-1, upper, {"max": 0})):
                where = [(n, neuron) for n, d in enumerate(domains)
                         for node, neuron, s in d.splits if node == k and s == sign]
                if where:
                    rows, cols = torch.tensor(where, device=lower.device).T
                    bound[rows, cols] = bound[rows, cols].clamp(**clamp)
            infeasible |= tolerance.infeasible(lower, upper, self.pre_tol[k]).any(dim=1)
            out.append((torch.minimum(lower, upper), torch.maximum(lower, upper)))
        return out, infeasible

    def _set_state(self, domains: list[Domain]) -> None:
        """Betas (split neurons, signs, multipliers; padding has sign 0) and alphas on every
        ReLU node.
        Every node gets betas, splits or not: 0.3 indexes its saved betas by node position."""
        device = self.x.device
        for k, relu in enumerate(self.relus):
            per = [[(neuron, float(sign), beta) for (node, neuron, sign), beta
                    in zip(d.splits, d.betas, strict=True) if node == k] for d in domains]
            width = max(1, max(len(p) for p in per))
            padded = [p + [(0, 0.0, 0.0)] * (width - len(p)) for p in per]
            loc = torch.tensor([[q[0] for q in p] for p in padded], dtype=torch.long,
                               device=device)
            sign = torch.tensor([[q[1] for q in p] for p in padded], device=device)
            beta = torch.tensor([[q[2] for q in p] for p in padded], device=device)
            lirpa.set_split_betas(relu, loc, sign, beta)
            lirpa.set_final_slopes(self.bm, relu, torch.stack([d.alphas[k] for d in domains])
                                   .view(len(domains), *self.shapes[k]))

    def _read_betas(self, domains: list[Domain]) -> list[tuple[float, ...]]:
        per_node = [lirpa.split_betas(relu).cpu().tolist() for relu in self.relus]
        out = []
        for n, d in enumerate(domains):
            seen = [0] * len(self.relus)
            betas = []
            for node, _, _ in d.splits:
                betas.append(max(0.0, per_node[node][n][seen[node]]))
                seen[node] += 1
            out.append(tuple(betas))
        return out

    def _refine(self, domains, ball, C, bounds, fixed) -> list[int]:
        """CROWN (with the splits' betas) on the small nodes after a split; keeps the tighter of
        that and the domain's bounds, in ``bounds`` and ``fixed``. Returns the nodes refined."""
        nodes = [k for k in self.refine
                 if any(node < k for d in domains for node, _, _ in d.splits)]
        if not nodes:
            return nodes
        # aux_reference_bounds: only the neurons unstable on the domain are bounded again
        # (0.3's sparse intermediate bounds); the others keep the domain's own bounds.
        self.bm.compute_bounds(x=(ball,), C=C, method="backward", bound_upper=False,
                               intermediate_layer_bounds=self._given(nodes, fixed),
                               reference_bounds=fixed, aux_reference_bounds=dict(fixed))
        self._tighten(nodes, bounds, fixed)
        return nodes

    def _given(self, nodes: list[int], fixed: dict) -> dict:
        """``fixed`` without the bounds of ``nodes`` (which 0.3 then computes)."""
        return {self.names[k]: fixed[self.names[k]] for k in range(len(self.relus))
                if k not in nodes}

    def _tighten(self, nodes: list[int], bounds, fixed) -> None:
        """The tighter of the bounds 0.3 last computed on ``nodes`` and the domains' (each
        split neuron's clamp included), in ``bounds`` and ``fixed``."""
        for k in nodes:
            lower, upper = lirpa.relu_input_bounds(self.relus[k])
            for value in (lower, upper):
                tolerance.check_finite(value, f"verifier {self.v.name}: refined "
                                       f"bounds of ReLU node {self.relus[k].name}")
            N = bounds[k][0].shape[0]
            lo = torch.maximum(lower.reshape(N, -1), bounds[k][0])
            up = torch.minimum(upper.reshape(N, -1), bounds[k][1])
            bounds[k] = (lo, up)
            fixed[self.names[k]] = [lo.view(N, *self.shapes[k]), up.view(N, *self.shapes[k])]

    def _intermediate_slopes(self, nodes: list[int], bounds) -> None:
        """domain_refine 'alpha': slopes on every ReLU node before each refined node, for that
        node's bounds (one per pair of neurons), started at the root's alpha-CROWN ones where
        it optimised them (``root_slopes``), else at CROWN's (1 where u > -l, else 0)."""
        for k in nodes:
            n_k = self.lower0[k].numel()
            for j in range(k):
                lo, up = bounds[j]
                root = self.root_slopes.get((j, k))
                if root is None:
                    root = (up > -lo).to(lo.dtype)[None, None].expand(2, n_k, *lo.shape)
                else:
                    root = root[:, :, None].expand(2, n_k, *lo.shape)
                lirpa.set_intermediate_slopes(self.relus[j], self.names[k], root.reshape(
                    2, n_k, lo.shape[0], *self.shapes[j]))

    def bound(self, domains: list[Domain], optimise: bool) -> tuple[torch.Tensor, list[Domain]]:
        """Lower bounds of the domains' margins; with ``optimise``, alpha/beta are optimised
        and the domains are returned updated (bounds, slopes, betas, candidates), and the
        minimisers of their linear bounds are checked as counterexamples. Without, one CROWN
        pass with the slopes and betas the domains carry (a probe)."""
        N = len(domains)
        ball = lirpa.ball(self.x.expand(N, *self.x.shape[1:]), self.eps)
        C = self.C[[d.spec for d in domains]].unsqueeze(1)
        bounds, infeasible = self._domain_bounds(domains)
        fixed = {self.names[k]: [lo.view(N, *self.shapes[k]), up.view(N, *self.shapes[k])]
                 for k, (lo, up) in enumerate(bounds)}
        self._set_state(domains)
        final = lirpa.final_node(self.bm)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # 0.3 prints progress; torch warns on deprecations
            if not optimise or not self.warm:
                # A plain pass first also sets marks 0.3's optimiser reads.
                lower, _ = self.bm.compute_bounds(
                    x=(ball,), C=C, method="backward", bound_upper=False, reuse_alpha=True,
                    intermediate_layer_bounds=fixed)
                self.warm = True
                self._set_state(domains)
            refined = []
            if optimise:
                refined = self._refine(domains, ball, C, bounds, fixed)
                # domain_refine 'alpha': the refined nodes are computed again at every
                # optimisation step, their slopes optimised with the final bound's and the
                # betas (alpha-beta-CROWN's joint optimisation); each step's bounds are sound
                # (any slopes in [0, 1], betas >= 0), 0.3 keeps per domain the tightest seen,
                # and reference_bounds intersects them with ``_refine``'s.
                alpha = bool(refined) and self.opts["domain_refine"] == "alpha"
                if alpha:
                    self._intermediate_slopes(refined, bounds)
                # Without ReLUs CROWN is exact and there is nothing to optimise.
                lower, _, A = self.bm.compute_bounds(
                    x=(ball,), C=C, method="CROWN-Optimized" if self.relus else "backward",
                    bound_upper=False, return_A=True, needed_A_dict={final: [self.v.input_node]},
                    intermediate_layer_bounds=self._given(refined, fixed) if alpha else fixed,
                    reference_bounds=fixed if alpha else None,
                    aux_reference_bounds=dict(fixed) if alpha else None)
                if alpha:
                    self._tighten(refined, bounds, fixed)
        lower = lower.detach()[:, 0]
        tolerance.check_finite(lower, f"verifier {self.v.name}: a domain's margin lower bound")
        lower = torch.where(infeasible, torch.full_like(lower, float("inf")), lower)
        if not optimise:
            return lower, domains
        # The minimiser of each domain's linear lower bound: a candidate counterexample.
        coeff = lirpa.input_coefficients(self.bm, A)[:, 0].detach()
        points = torch.where(coeff > 0, ball.ptb.x_L, ball.ptb.x_U)
        self._check_points(points)
        if self.opts["attack_every"]:
            worst = lower.argsort()[:self.opts["attack_domains"]]
            self.attack_starts = points[worst]
        betas = self._read_betas(domains)
        candidates = self._candidates(bounds, N)
        updated = []
        for n, d in enumerate(domains):
            kept = dict(d.refined)
            kept.update({k: (bounds[k][0][n], bounds[k][1][n]) for k in refined})
            updated.append(Domain(
                lower=float(lower[n]), order=d.order, spec=d.spec, splits=d.splits,
                betas=betas[n], refined=kept, candidates=candidates[n],
                alphas=[lirpa.final_slopes(self.bm, relu)[0, n].reshape(-1)
                        for relu in self.relus]))
        return lower, updated

    def _candidates(self, bounds, N) -> list[list[tuple[int, int]]]:
        """Per domain: the unstable (node, neuron)s with the best branching scores, best first;
        an empty list when none is unstable."""
        if not bounds:
            return [[] for _ in range(N)]
        branching = self.opts["branching"]
        scores, bias_scores, widths = [], [], []
        for k, (lo, up) in enumerate(bounds):
            unstable = (lo < 0) & (up > 0) & ~self.frozen[k]
            slope = up / (up - lo).clamp(min=1e-12)
            intercept = torch.where(unstable, slope * (-lo), torch.zeros_like(lo))
            widths.append(intercept)
            lA = lirpa.last_lower_coefficients(self.relus[k])
            if branching in ("babsr", "fsb") and lA is not None:
                lA = lA.detach().reshape(N, -1)
                scores.append((-lA).clamp(min=0) * intercept)
                if branching == "fsb":
                    # BaBSR (Bunel et al.): how the bound's bias and intercept terms change
                    # when the neuron is fixed, |min(b lA (s - 1), b lA s) + min(lA, 0) i|.
                    bias = self.bias[k] * lA
                    change = torch.minimum(bias * (slope - 1), bias * slope)
                    bias_scores.append(torch.where(
                        unstable, (change + lA.clamp(max=0) * intercept).abs(),
                        torch.zeros_like(lo)))
            else:
                scores.append(intercept)
        width = torch.cat(widths, dim=1)
        ranked = [self._top(torch.cat(scores, dim=1), width)]
        if bias_scores:
            ranked.append(self._top(torch.cat(bias_scores, dim=1), width))
        offsets = np.cumsum([0] + [lo.shape[1] for lo, _ in bounds])
        out = []
        for n in range(N):
            picks: list[tuple[int, int]] = []
            for top_score, top in ranked:
                for value, flat in zip(top_score[n].tolist(), top[n].tolist(), strict=True):
                    if value <= 0:
                        break
                    node = int(np.searchsorted(offsets, flat, side="right") - 1)
                    if (node, int(flat - offsets[node])) not in picks:
                        picks.append((node, int(flat - offsets[node])))
            out.append(picks)
        return out

    def _top(self, score: torch.Tensor, width: torch.Tensor):
        """The branch_candidates best of ``score`` per domain (values, flat indices). Where no
        unstable neuron scores above 0 (e.g. lA >= 0 on all), the widths rank instead; ties
        rank by width, so a candidate is always unstable."""
        score = torch.where(score.max(dim=1, keepdim=True).values > 0, score, width)
        score = score + 1e-9 * width
        return score.topk(min(self.opts["branch_candidates"], score.shape[1]), dim=1)

    # --- the search --------------------------------------------------------------------------

    def _check_points(self, points: torch.Tensor) -> None:
        """Run candidate points through the model; keep one onnxruntime confirms."""
        with torch.no_grad():
            logits = self.v.model(points)
        others = logits.clone()
        others[:, self.label] = float("-inf")
        wrong = (others.max(dim=1).values > logits[:, self.label]).nonzero().flatten().tolist()
        for n in wrong:
            point = self.v.confirm_counterexample(points[n], self.x[0], self.eps, self.label)
            if point is not None:
                self.counterexample = torch.as_tensor(point)
                return

    def _attack(self) -> None:
        """PGD from the minimisers of the worst domains' linear bounds (BaB attack): where
        the bound is weakest the model is likeliest to be wrong nearby."""
        if self.attack_starts is None:
            return
        starts = self.attack_starts.to(self.x.dtype)
        n = len(starts)
        with torch.enable_grad():
            points = pgd_attack(self.v.model, self.x.expand(n, *self.x.shape[1:]),
                                torch.full((n,), self.label, device=self.x.device), self.eps,
                                steps=self.opts["attack_steps"], loss="margin", start=starts)
        self.attack_starts = None
        self._check_points(points)

    def _close_or_pool(self, domains: list[Domain], lower: torch.Tensor) -> None:
        for d, value in zip(domains, lower.tolist(), strict=True):
            self.domains += 1
            self.depth = max(self.depth, len(d.splits))
            if value > self.tol[d.spec]:  # (tolerance.proven's rule; inf: infeasible)
                self.proven = min(self.proven, value)
            else:
                heapq.heappush(self.pool, d)

    def _split(self, parent: Domain, neuron: tuple[int, int]) -> list[Domain]:
        node, index = neuron
        return [Domain(lower=parent.lower, order=next(self.counter), spec=parent.spec,
                       splits=parent.splits + ((node, index, sign),),
                       betas=parent.betas + (0.0,), alphas=parent.alphas,
                       refined=parent.refined)
                for sign in (1, -1)]

    def _branch(self, parents: list[Domain]) -> list[Domain]:
        """Children of each parent on its best candidate: with several candidates, the one whose
        children a probe bounds highest (sum of their negative parts). Children the probe
        already proves are closed."""
        if self.opts["branch_candidates"] == 1 and self.opts["branching"] != "fsb":
            return [c for p in parents for c in self._split(p, p.candidates[0])]
        trials = [(p, c) for p in parents for c in p.candidates]
        children = [child for p, c in trials for child in self._split(p, c)]
        lower = self.bound(children, optimise=False)[0].view(-1, 2)
        best: dict[int, tuple[float, int]] = {}
        for t, (p, _) in enumerate(trials):
            # The children's total distance below 0: the candidate that shrinks it most.
            gain = float(lower[t].clamp(max=0).sum())
            if p.order not in best or gain > best[p.order][0]:
                best[p.order] = (gain, t)
        open_children = []
        for _, t in best.values():
            for child, value in zip(children[2 * t:2 * t + 2], lower[t].tolist(), strict=True):
                if value > self.tol[child.spec]:
                    self._close_or_pool([child], torch.tensor([value]))
                else:
                    open_children.append(child)
        return open_children

    def run(self, roots: list[Domain]) -> str:
        """'verified', 'falsified', 'timeout', 'unknown', or 'budget' (open domains left after
        ``budget`` branches)."""
        lower, roots = self.bound(roots, optimise=True)
        self._close_or_pool(roots, lower)
        self.domains -= len(roots)  # the roots are not branches
        for rounds in itertools.count(1):
            if not self.pool or self.counterexample is not None:
                break
            if time.perf_counter() >= self.deadline:
                return "timeout"
            if len(self.pool) > self.max_open:
                return "unknown"
            if self.budget is not None and self.domains >= self.budget:
                return "budget"
            batch = [heapq.heappop(self.pool)
                     for _ in range(min(self.domain_batch, len(self.pool)))]
            for leaf in [d for d in batch if not d.candidates]:
                self._leaf(leaf)
            parents = [d for d in batch if d.candidates]
            if self.counterexample is None and parents:
                children = self._branch(parents)
                if children:
                    lower, children = self.bound(children, optimise=True)
                    if self.counterexample is None:
                        self._close_or_pool(children, lower)
            every = self.opts["attack_every"]
            if every and rounds % every == 0 and self.counterexample is None:
                self._attack()
        if self.counterexample is not None:
            return "falsified"
        if self.undecided_leaf:  # an LP that ran out of time, or an optimum within tolerance
            return "timeout" if time.perf_counter() >= self.deadline else "unknown"
        return "verified"

    def _leaf_bounds(self, domain: Domain) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Bounds on the domain's neurons safe to encode (already widened, float64, flat): its
        float32 ones widened by their tolerance, intersected with the image's float64 CROWN
        ones widened by theirs (both contain the exact values). A neuron that float64 proves
        stable gets no binary however close to 0 its float32 bound is."""
        if self._root64 is None:
            exact = self.v.bounds(self.x, [self.label], self.eps, "crown", dtype=torch.float64)
            self._root64 = [tolerance.widen(lo[0].reshape(-1), up[0].reshape(-1),
                                            tol[0].reshape(-1).double())
                            for (lo, up), tol in zip(exact.pre_activation, exact.pre_tol,
                                                     strict=True)]
        bounds, _ = self._domain_bounds([domain])
        out = []
        for (lo, up), tol, (lo64, up64) in zip(bounds, self.pre_tol, self._root64, strict=True):
            lo, up = tolerance.widen(lo[0].double(), up[0].double(), tol.double())
            out.append((torch.maximum(lo, lo64), torch.minimum(up, up64)))
        return out

    def _leaf(self, domain: Domain) -> None:
        """A domain with every neuron stable: an LP decides it exactly."""
        bounds = self._leaf_bounds(domain)
        x = self.x[0].detach().double().cpu().numpy().reshape(-1)
        milp.check_form_at(self.v.form, self.v.model, x, f"verifier {self.v.name}")
        encoded = milp.encode_ball(
            self.v.form, np.clip(x - self.eps, 0, 1), np.clip(x + self.eps, 0, 1),
            bounds, [torch.zeros_like(lo) for lo, _ in bounds],
            phases={(node, neuron): sign for node, neuron, sign in domain.splits})
        other = [j for j in range(self.v.model.num_classes) if j != self.label][domain.spec]
        tol = milp.MILP_DEFAULTS["tolerance"] + self.tol[domain.spec]
        solved = milp.minimise(encoded, encoded.logits[self.label] - encoded.logits[other],
                               self.opts["leaf_solver"], self.deadline - time.perf_counter(),
                               0.0, at_most=tol)
        if solved.status == "infeasible":
            self.proven = min(self.proven, tol)
            return
        if solved.status == "optimal":
            margins = milp.check_optimum(self.v.model, solved, self.label, other,
                                         self.v.model.input_shape, f"verifier {self.v.name}")
            if solved.value < -tol and margins[other] < 0:
                self._check_points(torch.as_tensor(solved.x, dtype=torch.float32,
                                                   device=self.x.device).view_as(self.x))
                if self.counterexample is not None:
                    return
        self.undecided_leaf = True

    def lower_bound(self) -> float | None:
        """The least lower bound over every domain not closed yet, or over the closed ones."""
        return min((d.lower for d in self.pool), default=None)


def auto_domain_batch(device: torch.device) -> int:
    """Domains split per round for this machine: AUTO_DOMAIN_BATCH["cuda"] on a GPU, else
    AUTO_DOMAIN_BATCH["cpu_thread"] per torch thread (the memory cap still applies)."""
    if device.type == "cuda":
        return AUTO_DOMAIN_BATCH["cuda"]
    return AUTO_DOMAIN_BATCH["cpu_thread"] * torch.get_num_threads()


def _full_alpha_bytes(sizes: list[int]) -> int:
    """About the memory of alpha-CROWN with every layer optimised: lower and upper slopes of
    each ReLU node for every later node's neurons (the start nodes of its bounds)."""
    return 8 * sum(sizes[i] * sizes[j] for i in range(len(sizes))
                   for j in range(i + 1, len(sizes)))


class BabVerifier(Verifier):
    """Branch and bound with beta-CROWN (options: BAB_DEFAULTS)."""

    OPTIONS = BAB_OPTIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.domain_batch = auto_domain_batch(self.device) \
            if self.options["domain_batch"] == "auto" else self.options["domain_batch"]
        milp.make_solver(self.options["leaf_solver"], 1, 0.0)
        # Its own bounded module: the domains' bound options and per-node state (betas, alphas)
        # must not leak into the root bounds, which use ``self.bm``.
        self.bab_bm = lirpa.bounded_model(
            self.model, torch.zeros((1, *self.model.input_shape), device=self.device),
            conv_mode="matrix", device=self.device)
        self.input_node = lirpa.input_node(self.bab_bm)
        self._memory = int(self.options["max_memory_mb"]) * 2**20
        # torch.optim's first optimiser imports torch._dynamo (seconds): pay it at start-up, not
        # in the first image's time.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        self._form: milp.PiecewiseLinearForm | None = None
        self._stop_tol = 0.0  # the image's largest margin tolerance (set per image)
        self._deadline: float | None = None  # the image's deadline (set per image)

    @property
    def form(self) -> milp.PiecewiseLinearForm:
        """The model as affine maps (for leaf LPs), measured when first needed."""
        if self._form is None:
            self._form = milp.piecewise_linear_form(self.model)
        return self._form

    def _bab_opts(self, root: bool) -> None:
        """The matrix-mode module's optimiser: alpha-CROWN at the root, joint alpha/beta below
        it; slopes always come from the caller (root: ``init_slope``; domains: their own)."""
        iterations = self.options["root_iterations" if root else "iterations"]
        self.bab_bm.set_bound_opts({"optimize_bound_args": {
            "enable_beta_crown": not root, "enable_alpha_crown": True, "init_alpha": False,
            "iteration": iterations, "lr_alpha": self.options["lr_alpha"],
            "lr_beta": self.options["lr_beta"], "fix_intermediate_layer_bounds": True,
            # Optimisation stops once the bounds prove the margins (any row's tolerance).
            "stop_criterion_func": lirpa.stop_criterion(
                (lambda lower: (lower > self._stop_tol).all(dim=1, keepdim=True)) if root
                else (lambda lower: lower > self._stop_tol), self._deadline)}})

    def _alpha_root(self, x, label, eps, crown: lirpa.MarginBounds):
        """alpha-CROWN at the root on the matrix-mode module: the final bound's slopes, and
        those of ReLU nodes up to ``refine_max_neurons`` (the others keep CROWN's bounds, which
        are costly to optimise). Returns (margin lower bounds, pre-activation bounds, per node
        (specs, n_k) slopes of the final bound)."""
        bm = self.bab_bm
        lirpa.clear_split_betas(bm)
        names = [lirpa.relu_input_name(relu) for relu in lirpa.relu_nodes(bm)]
        reference = {n: [lo, up] for n, (lo, up) in zip(names, crown.pre_activation, strict=True)}
        fixed = {n: b for n, b in reference.items()
                 if b[0][0].numel() > self.options["refine_max_neurons"]}
        C = lirpa.margin_spec(torch.tensor([label]), self.model.num_classes).to(x.device)
        ball = lirpa.ball(x, eps)
        self._bab_opts(root=True)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            # Slopes initialised here, by a CROWN pass that keeps the large nodes fixed (0.3's
            # own initialisation re-bounds every node: in matrix mode, gigabytes on a big CNN).
            bm.init_slope((ball,), c=C, intermediate_layer_bounds=fixed or None)
            lower, _ = bm.compute_bounds(x=(ball,), C=C, method="CROWN-Optimized",
                                         bound_upper=False, reference_bounds=reference,
                                         intermediate_layer_bounds=fixed or None)
        self._bab_opts(root=False)
        tolerance.check_finite(lower.detach(), f"verifier {self.name}: alpha-CROWN at the root")
        pre = lirpa.pre_activation_bounds(bm, f"verifier {self.name}: alpha-CROWN at the root")
        pre = [(torch.maximum(lo, c_lo), torch.minimum(up, c_up))
               for (lo, up), (c_lo, c_up) in zip(pre, crown.pre_activation, strict=True)]
        relus = lirpa.relu_nodes(bm)
        slopes = [lirpa.final_slopes(bm, relu)[:, 0].reshape(C.shape[1], -1).clone()
                  for relu in relus]
        # domain_refine 'alpha' starts each domain's intermediate slopes from these.
        inter = {}
        if self.options["domain_refine"] == "alpha":
            for j, relu in enumerate(relus):
                for start, alpha in lirpa.intermediate_slopes(bm, relu).items():
                    inter[(j, names.index(start))] = alpha.reshape(2, alpha.shape[1], -1)
        return lower.detach()[0], pre, slopes, inter

    def decide(self, x: torch.Tensor, label: int, eps: float, deadline: float) -> Decision:
        crown = self.bounds(x, [label], eps, "crown")
        common = {"bound_method": "crown", "pre_activation": crown.pre_activation}
        lower, tol, where = crown.lower[0], crown.tol[0], f"verifier {self.name}: root"
        # The float certificate (a float64 matrix-mode pass) only where every ReLU node is
        # small (refine_max_neurons): there it costs less than an alpha-CROWN root (0.4 s on
        # mnist_256x6) and saves rows whose tol (5-12 there) no domain bound would beat; on
        # cnn_4layer it cost 3.3 s for a row the search closed anyway (benchmarks/README.md,
        # deep_mlp). Elsewhere rows in (0, tol] are searched like any other.
        certify = all(lo[0].numel() <= self.options["refine_max_neurons"]
                      for lo, _ in crown.pre_activation)

        def margins_proven(bounds_lower, method, **kwargs):
            if not certify:
                return tolerance.proven(bounds_lower[0], tol, where) | kwargs.get(
                    "already", torch.zeros_like(bounds_lower, dtype=torch.bool))[0]
            return self.margins_proven(x, [label], eps, bounds_lower, tol[None], crown,
                                       method, where, deadline=deadline, **kwargs)[0]

        proven = margins_proven(crown.lower, "crown")
        if bool(proven.all()):
            return Decision("verified", margin_lb=float(lower.min()), domains=0, depth=0,
                            **common)
        pre, slopes, inter = crown.pre_activation, [], {}
        self._stop_tol = float(tol.max())
        self._deadline = deadline
        if lirpa.relu_nodes(self.bab_bm):  # else CROWN is exact already
            alpha_lower, pre, slopes, inter = self._alpha_root(x, label, eps, crown)
            lower = torch.maximum(lower, alpha_lower)
        sizes = [lo[0].numel() for lo, _ in pre]
        some_fixed = any(n > self.options["refine_max_neurons"] for n in sizes)
        budget = (self.options["escalate_after"]
                  if some_fixed and _full_alpha_bytes(sizes) <= self._memory else None)
        searches = []
        alpha_options = {"iterations": self.options["root_iterations"],
                         "lr_alpha": self.options["lr_alpha"], "early_stop": True,
                         "optimize_intermediate": False}
        tried = torch.zeros_like(proven)  # rows whose alpha-CROWN certificate failed
        while True:
            proven = margins_proven(lower[None], "alpha_crown", options=alpha_options,
                                    already=proven[None], tried=tried[None])
            # (the certificate rests on ``crown``'s bounds only: no use trying a row again)
            tried |= lower > 0
            if bool(proven.all()):
                status = "verified"
                break
            search, roots = self._search_from(x, label, eps, deadline, crown, budget,
                                              lower, pre, slopes, inter, ~proven)
            searches.append(search)
            status = search.run(roots)
            if status != "budget":
                break
            # Hard for the cheap root: optimise every layer's bounds (alpha-CROWN in the
            # verifier's conv_mode) and search again from those.
            lower, pre, slopes = self._full_alpha_root(x, label, eps, lower, pre, slopes)
            budget, inter = None, {}  # (those slopes were for the root's bounds)
        domains = sum(s.domains for s in searches)
        depth = max((s.depth for s in searches), default=0)
        last = searches[-1] if searches else None
        if status == "verified":
            margin_lb = min([last.proven if last else float("inf")]
                            + [float(v) for v, p in zip(lower, proven, strict=True) if p])
        else:
            margin_lb = min(v for v in (last.lower_bound(), float(lower.min())) if v is not None)
        return Decision(status, margin_lb=margin_lb, domains=domains, depth=depth,
                        counterexample=last.counterexample if last else None, **common)

    def root_search(self, x, label, eps, deadline, budget=None):
        """The search ``decide`` starts from its root alpha-CROWN, with the root domains of the
        rows left open (no certificate, no escalation): to study the search's bounding alone."""
        crown = self.bounds(x, [label], eps, "crown")
        self._stop_tol, self._deadline = float(crown.tol.max()), deadline
        lower, pre, slopes, inter = self._alpha_root(x, label, eps, crown)
        return self._search_from(x, label, eps, deadline, crown, budget, lower, pre, slopes,
                                 inter, lower <= crown.tol[0])

    def _search_from(self, x, label, eps, deadline, crown, budget, lower, pre, slopes, inter,
                     rows):
        """A search from root bounds ``lower``/``pre`` and slopes, and a root domain per spec
        row selected by the boolean mask ``rows``."""
        search = _Search(self, x, label, eps, deadline, pre, crown.tol[0], crown.pre_tol, budget,
                         inter)
        roots = [Domain(lower=float(lower[j]), order=next(search.counter), spec=j, splits=(),
                        betas=(), alphas=[s[j] for s in slopes], refined={})
                 for j in range(len(lower)) if rows[j]]
        return search, roots

    def _full_alpha_root(self, x, label, eps, lower, pre, slopes):
        """alpha-CROWN with every intermediate layer optimised (on ``self.bm``), combined with
        the bounds so far (the tighter of each); its final-bound slopes where they fit."""
        with contextlib.redirect_stdout(io.StringIO()):  # 0.3 prints its progress
            full = self.bounds(x, [label], eps, "alpha_crown", {
                "iterations": self.options["root_iterations"],
                "lr_alpha": self.options["lr_alpha"], "early_stop": True,
                "optimize_intermediate": True}, deadline=self._deadline)
        lower = torch.maximum(lower, full.lower[0])
        pre = [(torch.maximum(lo, f_lo), torch.minimum(up, f_up))
               for (lo, up), (f_lo, f_up) in zip(pre, full.pre_activation, strict=True)]
        new_slopes = []
        for relu, old in zip(lirpa.relu_nodes(self.bm), slopes, strict=True):
            slope = lirpa.final_slopes(self.bm, relu)
            fits = slope is not None and slope[:, 0].numel() == old.numel()
            new_slopes.append(slope[:, 0].reshape(old.shape).clone() if fits else old)
        return lower, pre, new_slopes
