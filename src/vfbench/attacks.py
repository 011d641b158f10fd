"""Adversarial attacks inside an L-inf ball intersected with the pixel box [0, 1].

Shared by adversarial training, evaluation (RA, FGSM robustness) and the verifiers' falsifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample max_{j != y} z_j - z_y: positive exactly when the sample is misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(dim=1).values - true


ATTACK_LOSSES = {
    "ce": lambda logits, y: F.cross_entropy(logits, y, reduction="none"),
    "margin": margin_loss,
}


def _project(x_adv, lo, hi):
    return torch.max(torch.min(x_adv, hi), lo)


def pgd_attack(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
               step_size: float | None = None, restarts: int = 1, loss: str = "ce",
               random_start: bool = True, generator: torch.Generator | None = None,
               start: torch.Tensor | None = None) -> torch.Tensor:
    """PGD (Madry et al.) with random restarts; returns, per sample, the most adversarial point
    found (highest margin), always inside ``[x-eps, x+eps] ∩ [0, 1]``. ``start`` (shaped like
    ``x``), when given, is where the first restart begins (projected into the ball).

    The model's train/eval mode is left as the caller set it.
    """
    step_size = eps / 4 if step_size is None else step_size
    loss_fn = ATTACK_LOSSES[loss]
    lo = (x - eps).clamp(0, 1)
    hi = (x + eps).clamp(0, 1)
    best_x = x.detach().clone()
    with torch.no_grad():
        best_margin = margin_loss(model(best_x), y)
    for restart in range(max(restarts, 1)):
        if start is not None and restart == 0:
            x_adv = _project(start.detach().to(x.dtype), lo, hi)
        elif random_start:
            noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
            x_adv = lo + noise * (hi - lo)
        else:
            x_adv = x.detach().clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            objective = loss_fn(model(x_adv), y).sum()
            (grad,) = torch.autograd.grad(objective, x_adv)
            x_adv = _project(x_adv.detach() + step_size * grad.sign(), lo, hi)
        with torch.no_grad():
            margin = margin_loss(model(x_adv), y)
            better = margin > best_margin
            best_x[better] = x_adv[better]
            best_margin = torch.where(better, margin, best_margin)
    return best_x.detach()


def fgsm_attack(model, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size eps from x (Goodfellow et al.), clipped to [0, 1]."""
    x_adv = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
    return (x + eps * grad.sign()).clamp(0, 1).detach()
