"""Batch-norm folding (paper 002, eq. 8): a BatchNorm that follows a Linear or Conv2d becomes part
of that layer's weights and bias, so verifiers see plain affine layers.

    W' = W * gamma / sqrt(var + eps)          (per output unit / channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vfbench.errors import VfbenchError

_PAIRS = ((nn.Linear, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d))


def _folded_layer(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    new = copy.deepcopy(layer)
    if new.bias is None:  # a conv without bias before its BN gets one now
        new.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], device=layer.weight.device))
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        new.weight.copy_(layer.weight.detach() * scale.view(shape))
        new.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return new


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """Return (a folded copy of ``model``, number of BatchNorms folded).

    Folds every (Linear, BatchNorm1d) / (Conv2d, BatchNorm2d) pair that is adjacent in an
    ``nn.Sequential``; a BatchNorm anywhere else is an error (the zoo keeps BN right after its
    layer so that this is the only case).
    """
    model = copy.deepcopy(model).eval()
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:], strict=False):
            layer, bn = seq._modules[first], seq._modules[second]
            if any(isinstance(layer, lt) and isinstance(bn, bt) for lt, bt in _PAIRS):
                if not bn.track_running_stats or bn.running_mean is None:
                    raise VfbenchError(f"BatchNorm {second!r} has no running statistics to fold")
                seq._modules[first] = _folded_layer(layer, bn)
                seq._modules[second] = nn.Identity()
                folded += 1
    leftover = [n for n, m in model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise VfbenchError(f"BatchNorm layers not directly after a Linear/Conv2d: {leftover}")
    return model, folded


def strip_batchnorm(model: nn.Module, state_dict: dict) -> None:
    """Give a freshly built model the structure of its folded checkpoint (BN -> Identity, biases
    where the folded state dict has them) so ``load_state_dict`` fits."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for name, module in list(seq._modules.items()):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                seq._modules[name] = nn.Identity()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d) and module.bias is None \
                and f"{name}.bias" in state_dict:
            module.bias = nn.Parameter(torch.zeros(module.weight.shape[0]))


@torch.no_grad()
def max_output_difference(a: nn.Module, b: nn.Module, x: torch.Tensor, batch_size: int = 512
                          ) -> float:
    a.eval()
    b.eval()
    worst = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        worst = max(worst, (a(xb) - b(xb)).abs().max().item())
    return worst
