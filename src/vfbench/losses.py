"""Training losses: a registry of terms that a training entry sums with weights.

``losses: {natural: 1.0, nbc: 1.0}`` trains on ``1.0 * natural + 1.0 * nbc``; per-term options go
in ``loss_options: {nbc: {eps: 0.1}}`` and are checked against the term's declaration in
``vfbench.loss_options`` (an unknown option is an error). Two kinds of term:

* **data** terms are a whole classification objective each: ``natural`` (cross-entropy),
  ``pgd`` (Madry et al.), ``trades`` (Zhang et al., its CE included), ``fat_gradalign``
  (paper 000), ``crown_ibp`` (certified training through auto_LiRPA).
* **regularisers** are added to a data term, and their weight is the paper's coefficient:
  ``nbc`` (paper 001; weight = beta, so the paper's loss CE - beta*NBC is
  ``{natural: 1, nbc: beta}``), ``relu_stable`` (Xiao et al. 2019; its two coefficients are
  options, weight 1), ``sparse_bn`` (paper 002 Alg. 1 line 2; weight = lambda).

Inner maximisations (PGD, TRADES, FGSM, NBC's search) run with the model in eval mode, so
BatchNorm statistics see only the training forward, as in the papers' code; they return the last
iterate, as the training algorithms do (evaluation attacks keep the best of their restarts, see
``vfbench.attacks``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vfbench.errors import VfbenchError
from vfbench.models import GraftedReLU, Normalize, ResidualBlock, VfModel, get_site, site_names

# --- shared machinery ----------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def recorded_preactivations(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, every forward stores each activation site's input under its name."""
    record: dict[str, torch.Tensor] = {}
    hooks = [get_site(model, name).register_forward_hook(
        lambda mod, inp, out, name=name: record.__setitem__(name, inp[0]))
        for name in site_names(model)]
    try:
        yield record
    finally:
        for hook in hooks:
            hook.remove()


def forward_with_preactivations(model: nn.Module, x: torch.Tensor
                                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    with recorded_preactivations(model) as record:
        logits = model(x)
    return logits, dict(record)


def ball_box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf ball of radius eps around x, intersected with the pixel box [0, 1]."""
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def uniform_in_ball(x: torch.Tensor, eps: float) -> torch.Tensor:
    lo, hi = ball_box(x, eps)
    return lo + torch.rand_like(x) * (hi - lo)


def linf_search(model: nn.Module, x: torch.Tensor, start: torch.Tensor, eps: float, steps: int,
                step_size: float, objective: Callable[[torch.Tensor], torch.Tensor],
                ascend: bool = True, sign: bool = True) -> torch.Tensor:
    """``steps`` projected gradient steps on ``objective(x').sum()`` from ``start`` inside
    ``ball_box(x, eps)``: x' <- proj(x' +- step_size * (sign of) grad). Model in eval mode; the
    last iterate is returned, detached."""
    lo, hi = ball_box(x, eps)
    x_adv = torch.max(torch.min(start.detach(), hi), lo)
    direction = step_size if ascend else -step_size
    with eval_mode(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(x_adv).sum(), x_adv)
            step = grad.sign() if sign else grad
            x_adv = torch.max(torch.min(x_adv.detach() + direction * step, hi), lo)
    return x_adv.detach()


class Batch:
    """One training batch as the terms see it: the model (in train mode), x, y, and ``ramp`` in
    [0, 1], the eps ramp-up fraction. The clean forward (logits and pre-activations) is computed
    once and shared by every term that needs it."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ramp: float = 1.0):
        self.model, self.x, self.y, self.ramp = model, x, y, float(ramp)
        self._clean: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    def clean(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self._clean is None:
            self._clean = forward_with_preactivations(self.model, self.x)
        return self._clean

    def clean_logits(self) -> torch.Tensor:
        return self.clean()[0]

    @property
    def has_clean(self) -> bool:
        return self._clean is not None


@dataclass(frozen=True)
class LossTerm:
    """A registry entry: ``fn(batch, options) -> scalar``, its options declared in
    ``vfbench.loss_options.LOSS_OPTIONS`` (kind, defaults, choices); ``prepare(model, x)``, if
    any, runs before the batch's first forward (idempotent)."""

    fn: Callable[[Batch, dict], torch.Tensor]
    prepare: Callable[[nn.Module, torch.Tensor], object] | None = None


# --- data terms ------------------------------------------------------------------------------

def natural_loss(batch: Batch, opts: dict) -> torch.Tensor:
    return F.cross_entropy(batch.clean_logits(), batch.y)


def _ce_per_sample(model, y):
    return lambda x: F.cross_entropy(model(x), y, reduction="none")


def pgd_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """Madry et al.: CE at the PGD-k point (random start in the ball, signed steps)."""
    eps = opts["eps"] * batch.ramp
    x_adv = linf_search(batch.model, batch.x, uniform_in_ball(batch.x, eps), eps, opts["steps"],
                        opts["step_ratio"] * eps, _ce_per_sample(batch.model, batch.y))
    return F.cross_entropy(batch.model(x_adv), batch.y)


def _kl_per_sample(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) || softmax(q)) per sample."""
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits, dim=1))).sum(dim=1)


def trades_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising the KL
    from x + 0.001 * N(0, 1) by signed steps."""
    model, x = batch.model, batch.x
    eps = opts["eps"] * batch.ramp
    with torch.no_grad(), eval_mode(model):
        clean_eval = model(x)
    x_adv = linf_search(model, x, x + 0.001 * torch.randn_like(x), eps, opts["steps"],
                        opts["step_ratio"] * eps,
                        lambda xa: _kl_per_sample(clean_eval, model(xa)))
    logits = batch.clean_logits()
    return (F.cross_entropy(logits, batch.y)
            + opts["beta"] * _kl_per_sample(logits, model(x_adv)).mean())


def _input_gradient(model, x, y, create_graph: bool) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x, create_graph=create_graph)
    return grad


def gradalign_regulariser(model, x, y, eps) -> torch.Tensor:
    """GradAlign (Andriushchenko & Flammarion 2020): 1 - cos(grad_x CE at x, at x + U(-eps, eps)),
    averaged over samples whose two gradients are non-zero; differentiable in the weights through
    the second gradient. The random point is not clipped to [0, 1], as in the reference code."""
    g1 = _input_gradient(model, x, y, create_graph=False).flatten(1)
    g2 = _input_gradient(model, x + (torch.rand_like(x) * 2 - 1) * eps, y,
                         create_graph=True).flatten(1)
    nonzero = (g1.norm(dim=1) > 0) & (g2.norm(dim=1) > 0)
    if not nonzero.any():
        return g2.sum() * 0.0
    cos = F.cosine_similarity(g1[nonzero], g2[nonzero], dim=1)
    return 1.0 - cos.mean()


def fat_gradalign_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """Paper 000's base training: fast adversarial training (one FGSM step of alpha = 1.25 eps
    from a random start, Wong et al. 2020) plus lambda * GradAlign."""
    model, x, y = batch.model, batch.x, batch.y
    eps = opts["eps"] * batch.ramp
    x_adv = linf_search(model, x, uniform_in_ball(x, eps), eps, 1, opts["alpha_ratio"] * eps,
                        _ce_per_sample(model, y))
    loss = F.cross_entropy(model(x_adv), y)
    if opts["gradalign_lambda"] > 0 and eps > 0:
        loss = loss + opts["gradalign_lambda"] * gradalign_regulariser(model, x, y, eps)
    return loss


# auto_LiRPA wrappers per model, built once (the graph is fixed during training; the wrapper
# shares the model's parameters). Building one reloads the model's state dict in place, which
# invalidates any forward already taken: ``prepare`` builds it before the batch's forwards.
_BOUNDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bounded_for_training(model: nn.Module, x: torch.Tensor):
    from vfbench.verify.lirpa import BoundedModule

    if model not in _BOUNDED:
        opts = {"conv_mode": "patches", "sparse_features_alpha": False, "verbosity": 0}
        try:
            with eval_mode(model):  # tracing one image through a train-mode BatchNorm fails
                _BOUNDED[model] = BoundedModule(model, x[:1], bound_opts=opts,
                                                device=str(x.device))
        except (TypeError, AssertionError, NotImplementedError, RuntimeError) as exc:
            raise VfbenchError(f"crown_ibp: auto_LiRPA cannot bound {type(model).__name__} "
                               f"with layers {sorted({type(m).__name__ for m in model.modules()})}"
                               f" ({type(exc).__name__}: {exc})") from exc
    bounded = _BOUNDED[model]
    bounded.train(model.training)
    return bounded


def certified_margin_lower_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                                 crown_weight: float) -> torch.Tensor:
    """Lower bounds on f_y - f_j over the ball (B, K-1): IBP bounds, mixed with CROWN-IBP bounds
    by ``crown_weight`` (Zhang et al. 2020's beta); differentiable in the weights."""
    from vfbench.verify.lirpa import ball, margin_spec

    bounded = _bounded_for_training(model, x)
    spec = margin_spec(y, model.num_classes).to(x.device)
    region = ball(x, eps)
    lower, _ = bounded.compute_bounds(x=(region,), C=spec, method="IBP", bound_upper=False)
    if crown_weight > 1e-5:
        crown, _ = bounded.compute_bounds(x=(region,), C=spec, method="CROWN-IBP",
                                          bound_upper=False)
        lower = crown_weight * crown + (1 - crown_weight) * lower
    return lower


def crown_ibp_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """CROWN-IBP (Zhang et al. 2020): kappa * CE(f(x), y) + (1 - kappa) * CE of the worst-case
    logits built from the margin lower bounds; beta (CROWN weight) and kappa move linearly from
    their start to their end values as eps ramps up."""
    ramp = batch.ramp
    eps = opts["eps"] * ramp
    kappa = opts["kappa_start"] + (opts["kappa_end"] - opts["kappa_start"]) * ramp
    crown_weight = opts["beta_start"] + (opts["beta_end"] - opts["beta_start"]) * ramp
    loss = kappa * F.cross_entropy(batch.clean_logits(), batch.y) if kappa > 0 else 0.0
    if kappa < 1:
        lower = certified_margin_lower_bound(batch.model, batch.x, batch.y, eps, crown_weight)
        # worst-case logits relative to the true class: 0 for it, -lower for every other class
        worst = torch.cat([torch.zeros_like(lower[:, :1]), -lower], dim=1)
        target = torch.zeros_like(batch.y)
        loss = loss + (1 - kappa) * F.cross_entropy(worst, target)
    return loss


# --- regularisers ----------------------------------------------------------------------------

def _hidden_layer_weights(sizes: list[int], scheme: str) -> list[float]:
    """Paper 001's gamma[i] divisors per hidden layer. r[i] = the rank of layer i's neuron count
    among the hidden layers' counts, smallest = 1 (equal counts share the lower rank).
    'pow2_rank': 2^r[i] (the paper's choice); 'one': 1; 'rank_size': r[i] * m[i] (Table 9)."""
    ranks = [1 + sum(other < size for other in sizes) for size in sizes]
    if scheme == "pow2_rank":
        return [2.0 ** r for r in ranks]
    if scheme == "one":
        return [1.0] * len(sizes)
    return [float(r * m) for r, m in zip(ranks, sizes, strict=True)]


def neuron_behaviour_consistency(logits: torch.Tensor, pre: dict[str, torch.Tensor],
                                 logits_adv: torch.Tensor, pre_adv: dict[str, torch.Tensor],
                                 scheme: str = "pow2_rank") -> torch.Tensor:
    """Paper 001 Algorithm 1, per sample: sum over hidden layers of
    cos(v_i(x), v_i(x')) / gamma[i], minus KL(f(x) || f(x')) on the output."""
    names = list(pre)
    sizes = [pre[n][0].numel() for n in names]
    score = -_kl_per_sample(logits, logits_adv)
    for name, gamma in zip(names, _hidden_layer_weights(sizes, scheme), strict=True):
        cos = F.cosine_similarity(pre[name].flatten(1), pre_adv[name].flatten(1), dim=1)
        score = score + cos / gamma
    return score


def nbc_search(model: nn.Module, x: torch.Tensor, eps: float, steps: int, step_size: float,
               step: str = "gradient", scheme: str = "pow2_rank") -> torch.Tensor:
    """Paper 001 Algorithm 2 lines 1-6: x' from a random start in the ball, then ``steps``
    descent steps x' <- clip(x' - alpha * dNBC/dx') ('gradient', as printed) or with the gradient's
    sign ('sign', PGD-style).

    Reading: with alpha = eps/10, the printed raw-gradient step hardly moves x' (the gradient of
    a cosine similarity is small: on M1, mean |x' - start| = 0.15% of eps, NBC 0.8551 -> 0.8548),
    so the search is a no-op and x' stays a random point of the ball. The full-scale configs
    therefore run 'sign', reading alpha as PGD's signed step of eps/10 like the paper's other
    10-step searches; 'gradient' (the default, the literal text) stays available."""
    with torch.no_grad(), eval_mode(model):
        logits, pre = forward_with_preactivations(model, x)

    def objective(x_adv):
        logits_adv, pre_adv = forward_with_preactivations(model, x_adv)
        return neuron_behaviour_consistency(logits, pre, logits_adv, pre_adv, scheme)

    return linf_search(model, x, uniform_in_ball(x, eps), eps, steps, step_size, objective,
                       ascend=False, sign=(step == "sign"))


def nbc_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """-NBC(f, x, x') averaged over the batch (Algorithm 2 line 7 without its CE, which the data
    term provides); gradients flow through both x's and x''s activations."""
    eps = opts["eps"] * batch.ramp
    x_adv = nbc_search(batch.model, batch.x, eps, opts["steps"], opts["step_ratio"] * eps,
                       opts["step"], opts["layer_weights"])
    logits, pre = batch.clean()
    logits_adv, pre_adv = forward_with_preactivations(batch.model, x_adv)
    return -neuron_behaviour_consistency(logits, pre, logits_adv, pre_adv,
                                         opts["layer_weights"]).mean()


@torch.no_grad()
def _nbc_no_grad(model, x, x_adv, scheme):
    logits, pre = forward_with_preactivations(model, x)
    logits_adv, pre_adv = forward_with_preactivations(model, x_adv)
    return neuron_behaviour_consistency(logits, pre, logits_adv, pre_adv, scheme)


def mean_nbc(model: nn.Module, x: torch.Tensor, eps: float, steps: int = 10,
             step_ratio: float = 0.1, step: str = "gradient", scheme: str = "pow2_rank") -> float:
    """Mean NBC (Algorithm 1) between x and its Algorithm-2 adversarial x', model in eval mode:
    how consistent the network's neurons are inside the ball (higher = more consistent)."""
    x_adv = nbc_search(model, x, eps, steps, step_ratio * eps, step, scheme)
    with eval_mode(model):
        return float(_nbc_no_grad(model, x, x_adv, scheme).mean())


def _interval_affine(layer: nn.Module, lo: torch.Tensor, hi: torch.Tensor):
    center, radius = (hi + lo) / 2, (hi - lo) / 2
    if isinstance(layer, nn.Linear):
        center, radius = layer(center), F.linear(radius, layer.weight.abs())
    elif isinstance(layer, nn.Conv2d):
        radius = F.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding,
                          layer.dilation, layer.groups)
        center = layer(center)
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
        # the BN as the affine map of its running statistics
        scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
        shift = layer.bias - layer.running_mean * scale
        shape = (1, -1) + (1,) * (center.dim() - 2)
        center = center * scale.view(shape) + shift.view(shape)
        radius = radius * scale.abs().view(shape)
    else:  # Normalize: per-channel (x - mean) / std with std > 0
        center, radius = layer(center), radius / layer.std
    return center - radius, center + radius


def _interval_activation(site: nn.Module, lo, hi, record: list):
    if isinstance(site, GraftedReLU):
        # what the ReLU itself sees: a grafted neuron's ReLU input is 0, stable by construction,
        # so ReLU-stability training does not spend effort on it
        record.append((site.keep * lo, site.keep * hi))
        lin_lo, lin_hi = _interval_affine_elementwise(site.a, site.b, lo, hi)
        return (torch.relu(site.keep * lo) + site.mask * lin_lo,
                torch.relu(site.keep * hi) + site.mask * lin_hi)
    record.append((lo, hi))
    return torch.relu(lo), torch.relu(hi)


def _interval_affine_elementwise(a, b, lo, hi):
    center, radius = (hi + lo) / 2, (hi - lo) / 2
    return a * center + b - a.abs() * radius, a * center + b + a.abs() * radius


_AFFINE = (nn.Linear, nn.Conv2d, nn.modules.batchnorm._BatchNorm, Normalize)
_SHAPE_ONLY = (nn.Flatten, nn.ZeroPad2d, nn.Identity)


def _interval_forward(module: nn.Module, lo, hi, record: list):
    if isinstance(module, VfModel):
        lo, hi = _interval_affine(module.normalize, lo, hi)
        return _interval_forward(module.body, lo, hi, record)
    if isinstance(module, nn.Sequential):
        for child in module:
            lo, hi = _interval_forward(child, lo, hi, record)
        return lo, hi
    if isinstance(module, ResidualBlock):
        a_lo, a_hi = _interval_affine(module.conv1, lo, hi)
        a_lo, a_hi = _interval_activation(module.relu1, a_lo, a_hi, record)
        a_lo, a_hi = _interval_affine(module.conv2, a_lo, a_hi)
        s_lo, s_hi = _interval_forward(module.shortcut, lo, hi, record)
        return _interval_activation(module.relu2, a_lo + s_lo, a_hi + s_hi, record)
    if isinstance(module, _AFFINE):
        return _interval_affine(module, lo, hi)
    if isinstance(module, (nn.ReLU, GraftedReLU)):
        return _interval_activation(module, lo, hi, record)
    if isinstance(module, _SHAPE_ONLY):
        return module(lo), module(hi)
    raise VfbenchError(f"interval bounds: no rule for layer type {type(module).__name__}")


def interval_bounds(model: VfModel, x: torch.Tensor, eps: float
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Naive interval-arithmetic bounds (lower, upper) of every activation site's input over
    ``ball_box(x, eps)``, in forward order; differentiable in the weights."""
    record: list = []
    _interval_forward(model, *ball_box(x, eps), record)
    return record


_L1_SCALES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _l1_scaled_layers(model: VfModel) -> list[tuple[nn.Module, int]]:
    """(layer, scale) for Xiao et al.'s L1 penalty: every conv, scaled by its output positions
    (the dense matrix it stands for), and every Linear but the output layer."""
    if model not in _L1_SCALES:
        positions: dict[nn.Module, int] = {}
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        hooks = [c.register_forward_hook(
            lambda mod, inp, out: positions.__setitem__(mod, out.shape[-1] * out.shape[-2]))
            for c in convs]
        with torch.no_grad(), eval_mode(model):
            device = next(model.parameters()).device
            model(torch.zeros((1, *model.input_shape), device=device))
        for hook in hooks:
            hook.remove()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
        _L1_SCALES[model] = [(c, positions[c]) for c in convs] + [(m, 1) for m in linears]
    return _L1_SCALES[model]


def relu_stability_term(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """One ReLU layer's RS term, normalised as the reference (MadryLab/relu_stable,
    ``_l_relu_stable``: ``-reduce_mean(reduce_sum(tanh(1 + l*u), axis=-1))`` on NHWC tensors):
    -tanh(1 + l*u) summed over the neurons of a dense layer, over the channels of a conv layer and
    averaged over its H*W positions, then averaged over the batch. (Summing over all C*H*W conv
    neurons instead makes the conv terms H*W times stronger: 196x and 49x on paper 001's M1.)"""
    per_neuron = -torch.tanh(1.0 + lo * hi)
    per_sample = per_neuron.sum(dim=1)
    if per_sample.dim() > 1:  # conv: (N, H, W) after the channel sum
        per_sample = per_sample.flatten(1).mean(dim=1)
    return per_sample.mean()


def relu_stable_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """Xiao et al. (2019): rs_weight * RS + l1_weight * L1. RS adds ``relu_stability_term`` over
    every ReLU input's interval bounds on the ball; the bounds use the full eps throughout, as
    in the reference code, whatever the attack's ramp-up."""
    bounds = interval_bounds(batch.model, batch.x, opts["eps"])
    rs = sum(relu_stability_term(lo, hi) for lo, hi in bounds)
    l1 = sum(scale * layer.weight.abs().sum() for layer, scale in _l1_scaled_layers(batch.model))
    return opts["rs_weight"] * rs + opts["l1_weight"] * l1


def sparse_bn_loss(batch: Batch, opts: dict) -> torch.Tensor:
    """Paper 002 Alg. 1 line 2: sum of |gamma| over every BatchNorm (the weight is lambda)."""
    gammas = [m.weight for m in batch.model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not gammas:
        raise VfbenchError("sparse_bn: the model has no BatchNorm layer to sparsify")
    return sum(g.abs().sum() for g in gammas)


# --- the registry ----------------------------------------------------------------------------

LOSSES: dict[str, LossTerm] = {
    "natural": LossTerm(natural_loss),
    "pgd": LossTerm(pgd_loss),
    "trades": LossTerm(trades_loss),
    "fat_gradalign": LossTerm(fat_gradalign_loss),
    "crown_ibp": LossTerm(crown_ibp_loss, prepare=_bounded_for_training),
    "nbc": LossTerm(nbc_loss),
    "relu_stable": LossTerm(relu_stable_loss),
    "sparse_bn": LossTerm(sparse_bn_loss),
}


def total_loss(batch: Batch, weights: dict[str, float], options: dict[str, dict]
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """sum_w weight * term(batch); also each term's (unweighted) value as a float."""
    total = torch.zeros((), device=batch.x.device)
    values: dict[str, float] = {}
    for name in weights:
        if LOSSES[name].prepare is not None:
            LOSSES[name].prepare(batch.model, batch.x)
    for name, weight in weights.items():
        value = LOSSES[name].fn(batch, options[name])
        values[name] = float(value.detach())
        total = total + weight * value
    return total, values
