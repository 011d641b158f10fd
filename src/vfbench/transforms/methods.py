"""The transform methods of the registry. Each is
``fn(model, ckpt, dataset, entry, device, scores) -> TransformResult``: ``entry`` a (resolved or
not) config entry, ``scores`` the loaded score outputs by id (``needs_scores``); a score that is
not given is computed in place (and the report says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from vfbench.errors import VfbenchError
from vfbench.metrics import clean_accuracy
from vfbench.models import GraftedReLU, count_parameters, count_relus
from vfbench.train import train_model
from vfbench.transforms import prune as P
from vfbench.transforms.entries import (
    PRESETS,
    graft_settings,
    preset_rho,
    resolve_transform_entry,
    score_specs,
)
from vfbench.transforms.finetune import base_train_entry, finetune_entry, graft_param_groups
from vfbench.transforms.graft import GradualStages, choose, gradual_counts, install_grafts
from vfbench.transforms.report import graft_sites, stats, totals, weight_counts
from vfbench.transforms.scores import SIGNIFICANCE, ScoreSet, compute_score
from vfbench.transforms.selection import chunk_size, decay_gammas, masks_from_indices


@dataclass
class TransformResult:
    """The transformed model, the arch kwargs that rebuild it, and the report (JSON-able)."""

    model: nn.Module
    arch_kwargs: dict
    report: dict


def _seed(ckpt: dict) -> int:
    return int((ckpt.get("config") or {}).get("seed", 0))


def _test_accuracy(model, dataset, device) -> float:
    x, y = dataset.tensors("test", device=device)
    return clean_accuracy(model, x, y)


def _finetune(model, dataset, entry, device, seed, **hooks) -> dict:
    """Run the fine-tuning (skipped at 0 epochs) and return its part of the report."""
    if entry is None:
        return {"epochs": 0}
    start = time.perf_counter()
    result = train_model(model, dataset, entry, device, seed=seed, **hooks)
    return {"epochs": entry["epochs"], "entry": entry, "history": result["history"],
            "metrics": result["metrics"], "seconds": time.perf_counter() - start}


def transform_none(model, ckpt, dataset, entry, device, scores=None) -> TransformResult:
    resolve_transform_entry(entry)
    return TransformResult(model, dict(ckpt["arch_kwargs"]), {"method": "none"})


# --- grafting and activation pruning (paper 000) ---------------------------------------------

def _score_values(kind: str, entry: dict, scores: dict[str, ScoreSet] | None, model, ckpt,
                  dataset, device, seed: int) -> tuple[dict | None, str]:
    """Raw per-site values of the entry's ``kind`` score ('instability' / 'significance') and
    where they came from."""
    spec = score_specs(entry).get(kind)
    if spec is None:
        if kind == "significance" and entry["significance"] == "random":
            rng = np.random.default_rng(seed)
            return SIGNIFICANCE["random"](model, None, None, 1, rng=rng), "random"
        return None, "not used"
    if scores and spec.id in scores:
        return scores[spec.id].raw, spec.id
    raw = compute_score(spec, model, dataset, device, entry["score_batch_size"], seed,
                        ckpt=ckpt)
    return raw, f"{spec.id} (computed in place)"


def _freeze_all_but_grafts(model) -> list:
    """Table 3's 'w.o. tuning weights': only (a, b) train. Returns the parameters frozen."""
    graft = {id(p) for m in model.modules() if isinstance(m, GraftedReLU) for p in (m.a, m.b)}
    frozen = [p for p in model.parameters() if id(p) not in graft and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _graft_finetune_entry(ckpt, e: dict) -> dict | None:
    """The base training with paper 000's fine-tuning schedule: cosine over ``epochs`` at the
    weights' lr ``lr_weight`` (the grafts' lr comes with their parameter group), plus any
    ``extra_losses`` (Table 4's regularisers)."""
    if e["epochs"] == 0:
        return None
    base = base_train_entry(ckpt)
    return finetune_entry(base, {"epochs": e["epochs"], "schedule": {"name": "cosine"},
                                 "early_stop_patience": None,
                                 "optimizer": {**base["optimizer"], "lr": e["lr_weight"]},
                                 "losses": {**base["losses"], **e["extra_losses"]}},
                          e["finetune"])


def _small_weight_pruning(model, threshold: float, dataset, device) -> dict:
    keep = P.threshold_keep_masks(model, threshold)
    P.attach_weight_masks(model, keep)
    P.bake_weight_masks(model)
    return {"threshold": threshold, "weights_zeroed": sum(int((~k).sum()) for k in keep.values()),
            "accuracy": _test_accuracy(model, dataset, device)}


def _graft(model, ckpt, dataset, entry, device, scores, method: str) -> TransformResult:
    e = graft_settings(entry)
    seed = _seed(ckpt)
    model = model.to(device).eval()
    raw_u, source_u = _score_values("instability", e, scores, model, ckpt, dataset, device,
                                     seed)
    raw_s, source_s = _score_values("significance", e, scores, model, ckpt, dataset, device,
                                     seed)
    layout, order = choose(model, e, raw_u, raw_s, np.random.default_rng(seed))
    report = {"method": method, "entry": e,
              "scores": {"instability": source_u, "significance": source_s},
              "selection": {"criterion": e["selection"], "ratio": e["ratio"], "scope": e["scope"],
                            "selected": int(len(order)), "neurons": layout.total}}
    if e["selection"] == "decay" and e["scope"] == "global":
        report["selection"]["gamma_chunks"] = decay_gammas(
            len(order), chunk_size(e["chunk"], layout.total), e["gamma_start"], e["gamma_end"])
    accuracy = {"base": _test_accuracy(model, dataset, device)}

    linear = e["activation"] == "linear"
    install_grafts(model, masks_from_indices(layout, order),
                   slope=e["a_init"] if linear else 0.0, intercept=e["b_init"] if linear else 0.0,
                   trainable=linear)
    accuracy["grafted"] = _test_accuracy(model, dataset, device)
    frozen = _freeze_all_but_grafts(model) if e["tune"] == "graft" else []
    hooks = {"param_groups": graft_param_groups(e["lr_graft"])}
    if e["gradual"]:
        hooks["on_epoch_start"] = GradualStages(model, layout, order,
                                                gradual_counts(len(order), e["epochs"]))
    report["finetune"] = _finetune(model, dataset, _graft_finetune_entry(ckpt, e), device, seed,
                                   **hooks)
    for p in frozen:
        p.requires_grad_(True)
    accuracy["finetuned"] = _test_accuracy(model, dataset, device)
    if e["gradual"]:
        stages = hooks["on_epoch_start"]
        report["gradual"] = {"schedule": stages.counts, "applied": stages.applied}
    if e["small_weight_threshold"] is not None:
        report["small_weight_pruning"] = _small_weight_pruning(
            model, e["small_weight_threshold"], dataset, device)
    sites = graft_sites(model)
    report.update(sites=sites, totals=totals(sites, "n_grafted"), accuracy=accuracy,
                  parameters=count_parameters(model), relus=count_relus(model))
    return TransformResult(model.eval(), dict(ckpt["arch_kwargs"]), report)


def transform_graft(model, ckpt, dataset, entry, device, scores=None) -> TransformResult:
    """Linearity grafting and its variants (module ``graft``)."""
    return _graft(model, ckpt, dataset, resolve_transform_entry(entry), device, scores, "graft")


def transform_activation_prune(model, ckpt, dataset, entry, device, scores=None
                               ) -> TransformResult:
    """SAP / GAP / Hydra activation pruning (paper 000 Table 1): the ``ratio`` least significant
    neurons are set to zero (a = b = 0, frozen), then the network is fine-tuned."""
    entry = resolve_transform_entry(entry)
    if entry["method"] != "activation_prune":
        raise VfbenchError(f"activation_prune got a {entry['method']!r} entry")
    return _graft(model, ckpt, dataset, entry, device, scores, "activation_prune")


# --- neuron and weight pruning (paper 002) ---------------------------------------------------

def _pruning_finetune_entry(ckpt, entry, drop_losses=()) -> dict | None:
    base = base_train_entry(ckpt)
    epochs = base["epochs"] if entry["epochs"] is None else entry["epochs"]
    if epochs == 0:
        return None
    return finetune_entry(base, {"epochs": epochs}, entry["finetune"], drop_losses)


def _sparse_bn_weight(ckpt) -> float:
    return float(base_train_entry(ckpt)["losses"].get("sparse_bn", 0.0))


def transform_neuron_prune(model, ckpt, dataset, entry, device, scores=None) -> TransformResult:
    """Paper 002 Algorithm 1 after its sparse training: sort |gamma| of every BatchNorm, remove
    the ``rho`` fraction with the smallest structurally (Linear/Conv rows, BN entries, the next
    layer's columns), rebuild from the registry with the new widths, fine-tune."""
    entry = resolve_transform_entry(entry)
    if entry["method"] != "neuron_prune":
        raise VfbenchError(f"neuron_prune got a {entry['method']!r} entry")
    arch, seed = ckpt["arch"], _seed(ckpt)
    rho = preset_rho(entry, arch, "rho_np")
    lam = _sparse_bn_weight(ckpt)
    if entry["require_sparse_training"] and lam <= 0:
        raise VfbenchError("neuron pruning (Algorithm 1) starts from a sparse_bn-trained model, "
                           "but the base training has no sparse_bn loss; train with it or set "
                           "require_sparse_training: false")
    model = model.to(device).eval()
    before = {"parameters": count_parameters(model), "relus": count_relus(model),
              **weight_counts(model), "accuracy": _test_accuracy(model, dataset, device)}
    units = P.prunable_units(model)
    keep = P.select_bn_neurons(units, rho)
    layers = {u.name: {"n": u.bn.num_features, "n_pruned": int((~keep[u.name]).sum()),
                       "n_kept": int(keep[u.name].sum()),
                       "mask": (~keep[u.name]).int().tolist(),
                       "gamma": stats(u.bn.weight.detach().abs().cpu().numpy())}
              for u in units}
    P.remove_neurons(model, keep)
    model, arch_kwargs = P.rebuild_pruned(model, arch, dict(ckpt["arch_kwargs"]))
    pruned_accuracy = _test_accuracy(model, dataset, device)
    drop = () if entry["keep_sparse_bn"] else ("sparse_bn",)
    finetune = _finetune(model, dataset, _pruning_finetune_entry(ckpt, entry, drop), device, seed)
    after = {"parameters": count_parameters(model), "relus": count_relus(model),
             **weight_counts(model), "accuracy": _test_accuracy(model, dataset, device)}
    report = {"method": "neuron_prune", "entry": entry, "rho": rho, "lambda_base": lam,
              "layers": layers, "totals": totals(layers, "n_pruned"),
              "before": before, "after": after,
              "accuracy": {"base": before["accuracy"], "pruned": pruned_accuracy,
                           "finetuned": after["accuracy"]},
              "finetune": finetune, "arch_kwargs": arch_kwargs}
    if entry["preset"] is not None:
        expected = PRESETS[entry["preset"]]["lambda"]
        report["lambda_preset"] = expected
        if not np.isclose(lam, expected):
            report["notes"] = [f"preset {entry['preset']} expects sparse_bn lambda {expected:g}, "
                               f"the base model was trained with {lam:g}"]
    return TransformResult(model.eval(), arch_kwargs, report)


def transform_weight_prune(model, ckpt, dataset, entry, device, scores=None) -> TransformResult:
    """Paper 002 Algorithm 2: one global magnitude threshold over all Linear/Conv weights zeroes
    the ``rho`` fraction with the smallest |w|; fine-tuned with the zeros kept by a mask."""
    entry = resolve_transform_entry(entry)
    if entry["method"] != "weight_prune":
        raise VfbenchError(f"weight_prune got a {entry['method']!r} entry")
    rho = preset_rho(entry, ckpt["arch"], "rho_wp")
    model = model.to(device).eval()
    accuracy = {"base": _test_accuracy(model, dataset, device)}
    keep = P.magnitude_keep_masks(model, rho)
    P.attach_weight_masks(model, keep)
    accuracy["pruned"] = _test_accuracy(model, dataset, device)
    finetune = _finetune(model, dataset, _pruning_finetune_entry(ckpt, entry), device,
                         _seed(ckpt))
    P.bake_weight_masks(model)
    accuracy["finetuned"] = _test_accuracy(model, dataset, device)
    layers = {name: {"n": c["weights"], "zeroed": c["zero"]}
              for name, c in P.zero_counts(model).items()}
    report = {"method": "weight_prune", "entry": entry, "rho": rho, "layers": layers,
              "totals": totals(layers, "zeroed"), "target_zeroed": int(
                  rho * sum(v.numel() for v in keep.values())),
              "accuracy": accuracy, "finetune": finetune, "parameters": count_parameters(model),
              **weight_counts(model)}
    return TransformResult(model.eval(), dict(ckpt["arch_kwargs"]), report)



TRANSFORMS: dict[str, Callable[..., TransformResult]] = {
    "none": transform_none,
    "graft": transform_graft,
    "activation_prune": transform_activation_prune,
    "neuron_prune": transform_neuron_prune,
    "weight_prune": transform_weight_prune,
}
