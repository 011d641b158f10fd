"""What a transform's report.json says per activation site or layer. The plots read ``sites``:
``{name: {shape, mask, slope, intercept}}`` with mask/slope/intercept flat lists over the site's
neurons (paper 000 Figure 7); the tables read the counts."""

from __future__ import annotations

import numpy as np

from vfbench.models import GraftedReLU, count_relus, get_site, site_shapes
from vfbench.transforms.prune import prunable_weights


def stats(values) -> dict[str, float | None]:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def graft_sites(model) -> dict[str, dict]:
    """Per activation site: ``n`` neurons, ``n_grafted``, the 0/1 ``mask``, every neuron's
    ``slope`` a and ``intercept`` b (meaningful where grafted; 0 at a plain ReLU site), and
    statistics ``a`` / ``b`` over the grafted neurons."""
    out = {}
    for name, shape in site_shapes(model).items():
        size = int(np.prod(shape))
        site = get_site(model, name)
        if isinstance(site, GraftedReLU):
            mask = site.mask.detach().cpu().numpy().reshape(-1) > 0.5
            slope = site.a.detach().cpu().numpy().reshape(-1)
            intercept = site.b.detach().cpu().numpy().reshape(-1)
        else:
            mask, slope, intercept = np.zeros(size, bool), np.zeros(size), np.zeros(size)
        out[name] = {"shape": list(shape), "n": size, "n_grafted": int(mask.sum()),
                     "mask": mask.astype(int).tolist(), "slope": slope.tolist(),
                     "intercept": intercept.tolist(),
                     "a": stats(slope[mask]), "b": stats(intercept[mask])}
    return out


def totals(per_site: dict[str, dict], count_key: str, size_key: str = "n") -> dict:
    """Summed counts over sites/layers and the fraction they make."""
    n = sum(s[size_key] for s in per_site.values())
    k = sum(s[count_key] for s in per_site.values())
    return {size_key: n, count_key: k, "fraction": k / n if n else 0.0}


def weight_counts(model) -> dict[str, int]:
    """Connections: every Linear/Conv weight, and those not zero (pruned ones are zero)."""
    layers = prunable_weights(model).values()
    return {"weights": sum(m.weight.numel() for m in layers),
            "nonzero_weights": sum(int((m.weight != 0).sum()) for m in layers)}


def network_sizes(model) -> dict[str, int]:
    """What paper 002 Table 4 lists: hidden (activation) neurons and connections."""
    return {"hidden_neurons": count_relus(model), **weight_counts(model)}
