"""Per-neuron scores that grafting and activation pruning select by (paper 000, Section 4).

* instability (r_u): on how many of N images a neuron's pre-activation bounds straddle zero over
  the eps ball, with a named bound method (IBP, CROWN or alpha-CROWN through auto_LiRPA);
* significance (r_s): GAP (mean |dL/d activation|), SAP (mean |activation|), Hydra, random.

Hydra (Sehwag et al. 2020) applied to activations: with every weight frozen and BatchNorm on its
running statistics, one score per neuron is learned so that the network keeping only the top-k
neurons by |score| (a 0/1 mask on the activations, gradient straight through to the scores)
minimises the model's own training objective. By default it learns on the whole training split
with the base model's training losses and options as recorded in its checkpoint (attack radii at
their final, fully ramped value; the base training's batch size and augmentation), like the
original's robust score learning; or on the N score images with cross-entropy (the
``hydra_images`` / ``hydra_loss`` options). Scores start from SAP scaled to [0, 1] per site
(Hydra's scaled-magnitude initialisation with activation magnitude for weight magnitude) and are
optimised by SGD (lr 0.1, momentum 0.9, weight decay 1e-4, cosine over the epochs), Hydra's
settings. The score file records the loss terms, images, epochs and the objective per epoch.

Raw values are kept per site (arrays of the site's shape); selection rank-normalises them.
Each score is its own DAG output (an npz named by ``ScoreSpec.id``, e.g. ``gap-n1000``,
``instability-crown-eps0.1-n1000``, ``hydra-train-base-keep0.5-e5``) so that several grafting
variants reuse one computation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path
from vfbench.losses import Batch, total_loss
from vfbench.models import get_site, site_names, site_shapes
from vfbench.train import crop_flip
from vfbench.transforms.finetune import base_train_entry
from vfbench.transforms.score_specs import (
    HYDRA_LOSSES,
    WHOLE_TRAIN_SPLIT,
    ScoreSpec,
    check_score_spec,
)
from vfbench.transforms.selection import SiteLayout, rank_normalise

# The N score images are a fixed random subset of the training set (like the reference code's
# seeded permutation), so every score of one model looks at the same images.
SCORE_IMAGE_SEED = 0

@dataclass
class ScoreSet:
    """A loaded score file: raw values per site, what produced them, and per site the
    rank-normalised scores in [0, 1] (the r_u / r_s that figures draw)."""

    spec: ScoreSpec
    raw: dict[str, np.ndarray]
    meta: dict
    normalised: dict[str, np.ndarray] = field(default_factory=dict)


def save_scores(path: str | os.PathLike, spec: ScoreSpec, raw: dict[str, np.ndarray],
                meta: dict | None = None) -> None:
    """npz with ``raw/<site>`` (counts or significance values), ``score/<site>`` (rank-normalised
    over all neurons: the r_u / r_s of the scatter plot) and ``meta`` (JSON: spec, site order)."""
    layout = SiteLayout.from_shapes({n: np.shape(v) for n, v in raw.items()})
    normalised = layout.split(rank_normalise(layout.flatten(raw)))
    arrays = {f"raw/{n}": np.asarray(v) for n, v in raw.items()}
    arrays |= {f"score/{n}": v.astype(np.float32) for n, v in normalised.items()}
    header = {"spec": asdict(spec), "id": spec.id, "sites": list(raw), **(meta or {})}
    arrays["meta"] = np.array(json.dumps(header, default=str))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load_scores(path: str | os.PathLike) -> ScoreSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            raw = {name: data[f"raw/{name}"] for name in meta["sites"]}
            normalised = {name: data[f"score/{name}"] for name in meta["sites"]}
            spec = ScoreSpec(**meta.pop("spec"))
    except FileNotFoundError as exc:
        raise VfbenchError(f"{path}: score file not found") from exc
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise VfbenchError(f"{path}: not a vfbench score file ({exc!r})") from exc
    return ScoreSet(spec=spec, raw=raw, meta=meta, normalised=normalised)


# --- the images scores look at -----------------------------------------------------------------

def score_images(dataset, n: int | str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training images (pixel space [0, 1]) and labels, a fixed random subset (the first
    ``n`` of one seeded permutation, in split order), or the whole split for ``'train'``."""
    total = len(dataset.y_train)
    if total == 0:
        raise VfbenchError(f"dataset {dataset.name!r} has no training images to score on")
    if n == WHOLE_TRAIN_SPLIT:
        return dataset.tensors("train", device)
    order = np.sort(np.random.default_rng(SCORE_IMAGE_SEED).permutation(total)[:min(n, total)])
    subset = replace(dataset, x_train=dataset.x_train[order], y_train=dataset.y_train[order])
    return subset.tensors("train", device)


def _batches(n: int, batch_size: int, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, disable=None, leave=False)


# --- instability (r_u) -----------------------------------------------------------------------

@torch.no_grad()
def _predictions(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def site_bounds(model, bm, x: torch.Tensor, eps: float, method: str, labels: torch.Tensor
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per activation site, the (lower, upper) bounds (B, *site shape) of its ReLU's input over
    ``ball(x, eps)``. The bounded graph lists ReLU nodes in execution order, as ``site_names``
    lists sites; counts and shapes are checked."""
    from vfbench.verify.lirpa import compute_margin_bounds

    bounds = compute_margin_bounds(bm, x, eps, labels, method=method)
    shapes = site_shapes(model)
    if len(bounds.pre_activation) != len(shapes):
        raise VfbenchError(f"the bounded graph has {len(bounds.pre_activation)} ReLU nodes, the "
                           f"model {len(shapes)} activation sites: cannot match them")
    out = {}
    for (name, shape), (lower, upper) in zip(shapes.items(), bounds.pre_activation, strict=True):
        if tuple(lower.shape[1:]) != shape:
            raise VfbenchError(f"ReLU node bounds of shape {tuple(lower.shape[1:])} do not match "
                               f"site {name!r} of shape {shape}")
        out[name] = (lower, upper)
    return out


def unstable_by_site(model, bm, x: torch.Tensor, eps: float, method: str,
                     labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per site, a bool tensor (B, *site shape): pre-activation bounds with l < 0 < u.

    A grafted neuron's ReLU sees ``keep * x = 0``, so its bounds are [0, 0]: never unstable.
    """
    return {name: (lower < 0) & (upper > 0)
            for name, (lower, upper) in site_bounds(model, bm, x, eps, method, labels).items()}


def instability_counts(model, x: torch.Tensor, eps: float, method: str, batch_size: int,
                       device) -> dict[str, np.ndarray]:
    """Per neuron, the number of images of ``x`` on which it is unstable under ``method``.

    Labels for the margin spec are the model's predictions; the intermediate bounds of IBP and
    CROWN do not depend on them (alpha-CROWN optimises its slopes for that spec).
    """
    from vfbench.verify.lirpa import bounded_model

    model = model.eval().to(device)
    x = x.to(device)
    labels = _predictions(model, x, batch_size)
    bm = bounded_model(model, x[:1], device=device)
    counts = {name: np.zeros(shape, dtype=np.int64) for name, shape in site_shapes(model).items()}
    for start in _batches(len(x), batch_size, f"instability ({method})"):
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        for name, unstable in unstable_by_site(model, bm, xb, eps, method, yb).items():
            counts[name] += unstable.sum(0).cpu().numpy().astype(np.int64)
    return counts


def instability_score(model, x: torch.Tensor, eps: float, method: str, batch_size: int,
                      device) -> dict[str, np.ndarray]:
    """r_u per site: instability counts ranked over all neurons and normalised to [0, 1]."""
    counts = instability_counts(model, x, eps, method, batch_size, device)
    layout = SiteLayout.from_shapes({n: c.shape for n, c in counts.items()})
    return layout.split(rank_normalise(layout.flatten(counts)))


# --- significance (r_s) ----------------------------------------------------------------------

class _SiteOutputs:
    """Forward hooks keeping each site's output (with its gradient retained)."""

    def __init__(self, model, retain_grad: bool):
        self.outputs: dict[str, torch.Tensor] = {}
        self._hooks = [get_site(model, n).register_forward_hook(self._keeper(n, retain_grad))
                       for n in site_names(model)]

    def _keeper(self, name, retain_grad):
        def hook(module, inputs, output):
            if retain_grad and output.requires_grad:
                output.retain_grad()
            self.outputs[name] = output
        return hook

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def _mean_over_images(model, x, y, batch_size, desc, per_batch) -> dict[str, np.ndarray]:
    """Sum ``per_batch(outputs) -> {site: (B, *shape)}`` over batches, divided by len(x)."""
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    keeper = _SiteOutputs(model, retain_grad=True)
    try:
        for start in _batches(len(x), batch_size, desc):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            keeper.outputs.clear()
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb, reduction="sum")
            loss.backward()
            for name, values in per_batch(keeper.outputs).items():
                totals[name] = totals.get(name, 0) + values.detach().sum(0)
    finally:
        keeper.close()
        model.zero_grad(set_to_none=True)
    return {n: (t / len(x)).cpu().numpy() for n, t in totals.items()}


def gap_significance(model, x, y, batch_size, **_) -> dict[str, np.ndarray]:
    """GAP (Ye et al. 2020): mean |d CE / d activation| per neuron, the paper's default r_s."""
    return _mean_over_images(model, x, y, batch_size, "significance (gap)",
                             lambda outs: {n: o.grad.abs() for n, o in outs.items()})


def sap_significance(model, x, y, batch_size, **_) -> dict[str, np.ndarray]:
    """SAP (Dhillon et al. 2018): mean |activation| per neuron."""
    return _mean_over_images(model, x, y, batch_size, "significance (sap)",
                             lambda outs: {n: o.abs() for n, o in outs.items()})


def random_significance(model, x, y, batch_size, rng: np.random.Generator, **_):
    return {n: rng.random(shape) for n, shape in site_shapes(model).items()}


# Hydra's score optimiser (Sehwag et al. 2020): SGD, cosine schedule over the epochs.
HYDRA_SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}

# Base training terms left out of Hydra's objective: with the weights frozen they are constant in
# the scores (no gradient reaches them), so computing them would only cost time.
_HYDRA_CONSTANT_TERMS = {
    "sparse_bn": "an L1 penalty on the frozen BatchNorm weights",
    "relu_stable": "its interval bounds walk the layers without the Hydra mask, and its L1 is on "
                   "the frozen weights",
}
# Terms that cannot see the mask, so their gradient would be wrong rather than zero.
_HYDRA_UNSUPPORTED_TERMS = {
    "crown_ibp": "auto_LiRPA traces the model without the learned activation mask",
}


@dataclass(frozen=True)
class HydraObjective:
    """What Hydra's scores minimise: weighted ``vfbench.losses`` terms at full eps (ramp 1), with
    the batch size (None: the score batch size) and augmentation of the training it copies."""

    losses: dict[str, float]
    loss_options: dict[str, dict]
    batch_size: int | None = None
    augment: str = "none"
    left_out: tuple[str, ...] = ()   # base terms dropped as constant (_HYDRA_CONSTANT_TERMS)


NATURAL_OBJECTIVE = HydraObjective({"natural": 1.0}, {"natural": {}})


def hydra_objective(loss: str, ckpt: dict | None) -> HydraObjective:
    """Hydra's objective for ``hydra_loss`` ``loss``: 'natural' is cross-entropy; 'base' is the
    base model's final training phase as its checkpoint records it (losses and their options,
    batch size, augmentation)."""
    if loss == "natural":
        return NATURAL_OBJECTIVE
    if loss != "base":
        raise VfbenchError(f"hydra score: loss {loss!r} unknown; known: {list(HYDRA_LOSSES)}")
    if ckpt is None:
        raise VfbenchError("hydra score with loss 'base' needs the base model's checkpoint (its "
                           "recorded training entry)")
    base = base_train_entry(ckpt)
    unsupported = sorted(set(base["losses"]) & set(_HYDRA_UNSUPPORTED_TERMS))
    if unsupported:
        reasons = "; ".join(f"{n}: {_HYDRA_UNSUPPORTED_TERMS[n]}" for n in unsupported)
        raise VfbenchError(f"hydra score with loss 'base': the base training's {unsupported} "
                           f"cannot drive the scores ({reasons}); use hydra_loss: natural")
    left_out = tuple(sorted(set(base["losses"]) & set(_HYDRA_CONSTANT_TERMS)))
    losses = {n: w for n, w in base["losses"].items() if n not in left_out}
    return HydraObjective(losses=losses,
                          loss_options={n: base["loss_options"][n] for n in losses},
                          batch_size=base["batch_size"], augment=base["augment"],
                          left_out=left_out)


class _HydraGates:
    """Hydra's top-k mask over activations: each site's output times a 0/1 mask keeping the
    ``keep`` fraction of neurons with the largest |score| (exactly k, global over sites); the
    gradient reaches the scores straight through the mask (Sehwag et al. 2020's GetSubnet)."""

    def __init__(self, model, init: dict[str, np.ndarray], keep: float, device):
        self.scores = {n: torch.tensor(v, dtype=torch.float32, device=device, requires_grad=True)
                       for n, v in init.items()}
        total = sum(s.numel() for s in self.scores.values())
        self.k = max(1, int(round(keep * total)))
        self._masks: dict[str, torch.Tensor] = {}
        self._hooks = [model.register_forward_pre_hook(lambda m, args: self._refresh())]
        self._hooks += [get_site(model, n).register_forward_hook(self._gate(n))
                        for n in self.scores]

    def hard_masks(self) -> dict[str, torch.Tensor]:
        """Per site, the 0/1 mask of the current scores."""
        flat = torch.cat([s.detach().abs().reshape(-1) for s in self.scores.values()])
        hard = torch.zeros_like(flat)
        hard[torch.topk(flat, self.k).indices] = 1.0
        sizes = [s.numel() for s in self.scores.values()]
        return {n: h.view_as(s) for (n, s), h in zip(self.scores.items(), hard.split(sizes),
                                                      strict=True)}

    def _refresh(self) -> None:
        self._masks = {n: hard + self.scores[n].abs() - self.scores[n].abs().detach()
                       for n, hard in self.hard_masks().items()}

    def _gate(self, name):
        return lambda module, inputs, output: output * self._masks[name]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def hydra_significance(model, x, y, batch_size, keep: float, epochs: int,
                       rng: np.random.Generator, objective: HydraObjective = NATURAL_OBJECTIVE,
                       meta: dict | None = None, **_) -> dict[str, np.ndarray]:
    """Hydra applied to activations: with every weight frozen (eval mode, BN statistics fixed),
    learn one score per neuron so the top-``keep`` mask minimises ``objective`` on ``x``; the
    significance is |score|. Loss terms with inner attacks run them through the masked network.

    ``meta``, if given, receives what was optimised: loss terms, images, epochs, batch size,
    the optimiser, the mean objective (and each term) per epoch, and the fraction of neurons
    whose membership of the kept set changed from the initial scores.
    """
    sap = sap_significance(model, x, y, batch_size)
    init = {n: v / max(float(v.max()), 1e-12) for n, v in sap.items()}
    batch_size = objective.batch_size or batch_size
    augment = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    gates = _HydraGates(model, init, keep, x.device)
    initial_masks = gates.hard_masks()
    optimizer = torch.optim.SGD(list(gates.scores.values()), **HYDRA_SGD)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = []
    model.eval()
    try:
        for epoch in range(epochs):
            lr = optimizer.param_groups[0]["lr"]
            sums = dict.fromkeys(["objective", *objective.losses], 0.0)
            order = torch.from_numpy(rng.permutation(len(x))).to(x.device)
            for start in _batches(len(x), batch_size, f"hydra scores, epoch {epoch + 1}"):
                idx = order[start:start + batch_size]
                xb, yb = x[idx], y[idx]
                if objective.augment == "crop_flip":
                    xb = crop_flip(xb, augment)
                loss, values = total_loss(Batch(model, xb, yb, ramp=1.0), objective.losses,
                                          objective.loss_options)
                if not torch.isfinite(loss):
                    raise VfbenchError(f"hydra scores, epoch {epoch + 1}: the objective became "
                                       f"{float(loss)} ({values})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for name, value in {"objective": float(loss.detach()), **values}.items():
                    sums[name] += value * len(idx)
            schedule.step()
            history.append({"epoch": epoch + 1, "lr": lr,
                            **{n: v / len(x) for n, v in sums.items()}})
        final_masks = gates.hard_masks()
    finally:
        gates.close()
        for p in frozen:
            p.requires_grad_(True)
    if meta is not None:
        changed = sum(int((final_masks[n] != initial_masks[n]).sum()) for n in final_masks)
        meta["hydra"] = {
            "loss_terms": objective.losses, "loss_options": objective.loss_options,
            "left_out_terms": {n: _HYDRA_CONSTANT_TERMS[n] for n in objective.left_out},
            "eps_ramp": 1.0, "images": len(x), "epochs": epochs, "batch_size": batch_size,
            "augment": objective.augment, "keep": keep, "kept": gates.k,
            "optimizer": {"name": "sgd", **HYDRA_SGD, "schedule": "cosine"},
            "history": history,
            "mask_changed": changed / sum(m.numel() for m in final_masks.values()),
        }
    return {n: s.detach().abs().cpu().numpy() for n, s in gates.scores.items()}


SIGNIFICANCE: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "gap": gap_significance,
    "sap": sap_significance,
    "hydra": hydra_significance,
    "random": random_significance,
}



def compute_score(spec: ScoreSpec, model, dataset, device, batch_size: int = 32,
                  seed: int = 0, ckpt: dict | None = None,
                  meta: dict | None = None) -> dict[str, np.ndarray]:
    """The raw per-site values of one score (what ``save_scores`` writes). ``ckpt`` is the
    model's checkpoint dict (Hydra with loss 'base' reads its training entry); ``meta``, if
    given, receives what the computation records (the number of images; Hydra's objective)."""
    check_score_spec(spec)
    model = model.to(device).eval()
    x, y = score_images(dataset, spec.images, device)
    if meta is not None:
        meta["images"] = len(x)
    if spec.kind == "instability":
        return instability_counts(model, x, spec.eps, spec.bound, batch_size, device)
    objective = hydra_objective(spec.loss, ckpt) if spec.kind == "hydra" else None
    return SIGNIFICANCE[spec.kind](model, x, y, batch_size, keep=spec.keep, epochs=spec.epochs,
                                   rng=np.random.default_rng(seed), objective=objective,
                                   meta=meta)
