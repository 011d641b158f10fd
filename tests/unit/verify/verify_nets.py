"""Tiny networks, exported to ONNX the way vfbench's export step does, and ball sampling: shared
by the verification tests (fixtures in conftest.py)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from vfbench.fold import fold_batchnorm
from vfbench.models import GraftedReLU, build_model, set_site, site_shapes
from vfbench.transforms.prune import prunable_units, remove_neurons, select_bn_neurons

SHAPE = (1, 6, 6)
CLASSES = 3


def export(model: torch.nn.Module, path, example: torch.Tensor) -> str:
    """Exactly the export call vfbench's export step makes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), example, str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return str(path)


def small_cnn(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("cnn_4layer", input_shape=(1, 8, 8), num_classes=CLASSES, mean=(0.4,),
                        std=(0.25,), channels=(4, 8), hidden=(16,))
    return model.eval()


def graft_first_site(model, fraction: float = 0.5, seed: int = 0):
    """Graft a random ``fraction`` of the first site's neurons with random a, b; returns the
    mask."""
    name, shape = next(iter(site_shapes(model).items()))
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(shape, generator=gen) < fraction).float()
    site = GraftedReLU(shape, mask)
    with torch.no_grad():
        site.a.copy_(torch.rand(shape, generator=gen) * 2 - 1)
        site.b.copy_(torch.rand(shape, generator=gen) * 0.2 - 0.1)
    set_site(model, name, site)
    return mask


def sample_ball(x: torch.Tensor, eps: float, n: int, seed: int = 0) -> torch.Tensor:
    """n points of [x - eps, x + eps] ∩ [0, 1]: half uniform, half on random vertices."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    u = torch.rand((n, *x.shape), generator=gen)
    u[n // 2:] = (u[n // 2:] > 0.5).float()
    return lo + u * (hi - lo)


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32)


def mlp_variants(trained_mlp) -> dict[str, torch.nn.Module]:
    """The trained BatchNorm MLP as the export step sees it: plain (BN folded), grafted (a third
    of the first site's neurons linear, slope 0.5, intercept 0.05) and neuron-pruned (30% by BN
    scale, then folded)."""
    plain = fold_batchnorm(trained_mlp)[0]
    grafted = copy.deepcopy(plain)
    shape = site_shapes(grafted)["body.3"]
    set_site(grafted, "body.3", GraftedReLU(shape, (torch.arange(shape[0]) % 3 == 0).float(),
                                            slope=0.5, intercept=0.05))
    pruned = copy.deepcopy(trained_mlp)
    remove_neurons(pruned, select_bn_neurons(prunable_units(pruned), 0.3))
    return {"mlp": plain, "grafted": grafted, "neuron-pruned": fold_batchnorm(pruned)[0]}
