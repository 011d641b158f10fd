"""Transform entries of the config: each method's options with their defaults, checking, the
presets of paper 002 (SET1-SET3, Table 1), and which score outputs an entry reads.

Light on purpose (no torch): the Snakefile checks every transform entry of a campaign and lists
its score outputs at start-up."""

from __future__ import annotations

import copy

from vfbench.errors import VfbenchError
from vfbench.loss_options import LOSS_OPTIONS
from vfbench.train_entry import resolve_train_entry
from vfbench.transforms.score_specs import (
    HYDRA_LOSSES,
    SIGNIFICANCE_KINDS,
    WHOLE_TRAIN_SPLIT,
    ScoreSpec,
    check_score_spec,
)

# Grafting's selection criterion name -> (needs r_u, needs r_s); ``selection.CRITERIA`` has
# their functions. Table 2 of paper 000: -r_s, r_u - r_s, 2 r_u - r_s, r_u and the decayed
# gamma*r_u - r_s.
CRITERION_NEEDS: dict[str, tuple[bool, bool]] = {
    "decay": (True, True),
    "neg_rs": (False, True),
    "ru_minus_rs": (True, True),
    "2ru_minus_rs": (True, True),
    "ru": (True, False),
    "random": (False, False),
}


def criterion_needs(criterion: str) -> tuple[bool, bool]:
    """(needs r_u, needs r_s) of a criterion."""
    if criterion not in CRITERION_NEEDS:
        raise VfbenchError(f"unknown selection {criterion!r}; known: {sorted(CRITERION_NEEDS)}")
    return CRITERION_NEEDS[criterion]

_SCORING = {
    "significance": "gap",      # r_s: gap | sap | hydra | random
    "images": 1000,             # training images r_u, GAP and SAP look at
    "score_batch_size": 32,     # images per bound / gradient batch
    "hydra_epochs": 5,          # Hydra's score-learning epochs (reference code: 5)
    "hydra_images": WHOLE_TRAIN_SPLIT,  # Hydra learns on: train (the whole training split,
                                        # as Hydra) or N (the first N seeded score images)
    "hydra_loss": "base",       # base (the base model's training losses and options, eps
                                # fully ramped) | natural (cross-entropy)
    "scope": "global",          # global (rank all neurons, paper 000) | layer
}
_FINETUNE = {
    "epochs": 100,              # fine-tuning epochs (cosine schedule over them)
    "lr_weight": 0.001,         # lr of the network's weights
    "finetune": {},             # partial training entry merged over the base model's (as a
                                # training phase is: dict options merge, the rest replaces)
}

DEFAULTS: dict[str, dict] = {
    "none": {},
    "graft": {
        "ratio": 0.5,               # fraction of all activation neurons grafted
        "selection": "decay",       # CRITERION_NEEDS key
        "bound": "crown",           # bound method of the instability score r_u
        "eps": None,                # radius of r_u's ball (needed when the selection reads r_u)
        "chunk": 0.05,              # decay: gamma steps every `chunk` of the neurons
        "gamma_start": 2.0,
        "gamma_end": 0.0,
        "activation": "linear",     # linear a*x+b | zero (grafting zero, Table 5)
        "a_init": 0.4,              # reference code's initial slope (safe zone a in [0, 0.5])
        "b_init": 0.0,              # initial intercept (safe zone b in [-0.5, 0.5])
        "tune": "all",              # all | graft: only (a, b) are fine-tuned (Table 3)
        "gradual": False,           # grow the grafted set over the first half (Table 5)
        "lr_graft": 0.01,           # lr of (a, b)
        "small_weight_threshold": None,  # zero |w| below it after fine-tuning (Table 4)
        "extra_losses": {},         # loss -> weight added to the base loss when fine-tuning,
                                    # e.g. {relu_stable: 1.0} (Table 4; options via finetune)
        **_SCORING, **_FINETUNE,
    },
    "activation_prune": {"ratio": 0.5, **_SCORING, **_FINETUNE},
    "neuron_prune": {
        "preset": None,             # set1 | set2 | set3 (Table 1 of paper 002)
        "rho": None,                # neuron sparsity rate (instead of a preset)
        "epochs": None,             # fine-tuning epochs (None: the base training's)
        "keep_sparse_bn": False,    # fine-tune with the sparse_bn term still on
        "require_sparse_training": True,  # the base must have trained with sparse_bn (Alg. 1)
        "finetune": {},
    },
    "weight_prune": {
        "preset": None,
        "rho": None,                # weight sparsity rate (instead of a preset)
        "epochs": None,
        "finetune": {},
    },
}

# Paper 002 Table 1. rho_np of SET1 is 0.75 for NET1 and 0.8 for NET2 (and 0.75 elsewhere);
# lambda is the sparse_bn weight of the base training that neuron pruning expects.
PRESETS: dict[str, dict] = {
    "set1": {"rho_np": {"net2": 0.8, "*": 0.75}, "rho_wp": 0.9, "lambda": 1e-1},
    "set2": {"rho_np": {"*": 0.5}, "rho_wp": 0.7, "lambda": 1e-4},
    "set3": {"rho_np": {"*": 0.25}, "rho_wp": 0.5, "lambda": 0.5e-4},
}

_CHOICES = {
    "selection": tuple(CRITERION_NEEDS),
    "significance": SIGNIFICANCE_KINDS,
    "scope": ("global", "layer"),
    "activation": ("linear", "zero"),
    "tune": ("all", "graft"),
    "preset": (None, *PRESETS),
    "hydra_loss": HYDRA_LOSSES,
}


def _number(where: str, value, lo: float | None = None, hi: float | None = None,
            integer: bool = False, open_lo: bool = False):
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = int(value) == value
    if ok and lo is not None:
        ok = value > lo if open_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        low = "" if lo is None else f" {'>' if open_lo else '>='} {lo}"
        high = "" if hi is None else f" <= {hi}"
        raise VfbenchError(f"{where}: {value!r} must be {'an integer' if integer else 'a number'}"
                           f"{low}{high}")
    return int(value) if integer else float(value)


def _check_values(method: str, e: dict) -> None:
    for key, choices in _CHOICES.items():
        if key in e and e[key] not in choices:
            raise VfbenchError(f"{key}: {e[key]!r} unknown; expected one of "
                               f"{[c for c in choices if c is not None]}")
    for key in ("ratio", "chunk"):
        if key in e:
            e[key] = _number(key, e[key], 0.0, 1.0, open_lo=(key == "chunk"))
    for key in ("images", "score_batch_size", "hydra_epochs"):
        if key in e:
            e[key] = _number(key, e[key], 1, integer=True)
    if e.get("hydra_images", WHOLE_TRAIN_SPLIT) != WHOLE_TRAIN_SPLIT:
        if isinstance(e["hydra_images"], str):
            raise VfbenchError(f"hydra_images: {e['hydra_images']!r} must be "
                               f"{WHOLE_TRAIN_SPLIT!r} or a number of images")
        e["hydra_images"] = _number("hydra_images", e["hydra_images"], 1, integer=True)
    for key in ("gamma_start", "gamma_end", "a_init", "b_init"):
        if key in e:
            e[key] = _number(key, e[key])
    for key in ("lr_graft", "lr_weight"):
        if key in e:
            e[key] = _number(key, e[key], 0.0, open_lo=True)
    if e.get("epochs") is not None:
        e["epochs"] = _number("epochs", e["epochs"], 0, integer=True)
    for key in ("gradual", "keep_sparse_bn", "require_sparse_training"):
        if key in e and not isinstance(e[key], bool):
            raise VfbenchError(f"{key}: {e[key]!r} must be true or false")
    if "finetune" in e:
        if not isinstance(e["finetune"], dict):
            raise VfbenchError(f"finetune: expected a partial training entry, got "
                               f"{e['finetune']!r}")
        if "epochs" in e["finetune"] or "phases" in e["finetune"]:
            raise VfbenchError("finetune: set the fine-tuning length with the method's 'epochs' "
                               "option; 'epochs'/'phases' are not allowed here")
        resolve_train_entry({"phases": [e["finetune"]]})  # unknown keys, losses, options
    if "extra_losses" in e:
        if not isinstance(e["extra_losses"], dict):
            raise VfbenchError(f"extra_losses: expected loss -> weight, got {e['extra_losses']!r}")
        for name, weight in e["extra_losses"].items():
            if name not in LOSS_OPTIONS:
                raise VfbenchError(f"extra_losses: unknown loss {name!r}; "
                                   f"known: {sorted(LOSS_OPTIONS)}")
            e["extra_losses"][name] = _number(f"extra_losses.{name}", weight, 0.0)
    if method == "graft":
        _check_graft(e)
    if method in ("neuron_prune", "weight_prune"):
        _check_prune(e)


def _check_graft(e: dict) -> None:
    needs_u, _ = criterion_needs(e["selection"])
    if needs_u:
        if e["eps"] is None:
            raise VfbenchError(f"eps: selection {e['selection']!r} reads the instability score "
                               "r_u, which needs the eps of its ball")
        e["eps"] = _number("eps", e["eps"], 0.0, open_lo=True)
    if e["small_weight_threshold"] is not None:
        e["small_weight_threshold"] = _number("small_weight_threshold",
                                              e["small_weight_threshold"], 0.0, open_lo=True)
    if e["activation"] == "zero" and e["tune"] == "graft":
        raise VfbenchError("tune: 'graft' tunes only (a, b), which grafting zero freezes")
    if e["activation"] == "zero" and e["gradual"]:
        raise VfbenchError("gradual: supported for the linear graft only")
    for spec in score_specs(e).values():
        check_score_spec(spec)


def _check_prune(e: dict) -> None:
    if (e["preset"] is None) == (e["rho"] is None):
        raise VfbenchError(f"give either preset (one of {sorted(PRESETS)}) or rho, not "
                           f"{'both' if e['rho'] is not None else 'neither'}")
    if e["rho"] is not None:
        e["rho"] = _number("rho", e["rho"], 0.0, 1.0)
        if e["rho"] >= 1.0:
            raise VfbenchError("rho: must be below 1 (nothing would remain)")


def resolve_transform_entry(entry: dict) -> dict:
    """The entry with every default filled in and every value checked (idempotent). An unknown
    method or option is a VfbenchError naming it and what is allowed."""
    if not isinstance(entry, dict) or "method" not in entry:
        raise VfbenchError(f"transform entry {entry!r}: expected a mapping with a 'method' "
                           f"(one of {sorted(DEFAULTS)})")
    method = entry["method"]
    if method not in DEFAULTS:
        raise VfbenchError(f"unknown transform method {method!r}; known: {sorted(DEFAULTS)}")
    options = {k: v for k, v in entry.items() if k != "method"}
    unknown = sorted(set(options) - set(DEFAULTS[method]))
    if unknown:
        raise VfbenchError(f"transform {method!r}: unknown options {unknown}; allowed (with "
                           f"defaults): {DEFAULTS[method]}")
    resolved = {**copy.deepcopy(DEFAULTS[method]), **copy.deepcopy(options)}
    try:
        _check_values(method, resolved)
    except VfbenchError as exc:
        raise VfbenchError(f"transform {method!r}: {exc}") from exc
    return {"method": method, **resolved}


def graft_settings(entry: dict) -> dict:
    """The graft options an activation-pruning entry stands for: grafting zero of the least
    significant neurons (criterion -r_s), fine-tuned like grafting."""
    if entry["method"] == "graft":
        return entry
    return resolve_transform_entry({
        **{k: v for k, v in entry.items() if k != "method"},
        "method": "graft", "selection": "neg_rs", "activation": "zero"})


def score_specs(entry: dict) -> dict[str, ScoreSpec]:
    """{'instability': spec, 'significance': spec} for the scores a graft entry reads (random
    significance is drawn in place, so it has none)."""
    e = entry
    needs_u, needs_s = criterion_needs(e["selection"])
    specs = {}
    if needs_u:
        specs["instability"] = ScoreSpec("instability", images=e["images"], bound=e["bound"],
                                         eps=float(e["eps"]))
    if needs_s and e["significance"] == "hydra":
        specs["significance"] = ScoreSpec("hydra", images=e["hydra_images"],
                                          keep=round(1.0 - e["ratio"], 6),
                                          epochs=e["hydra_epochs"], loss=e["hydra_loss"])
    elif needs_s and e["significance"] != "random":
        specs["significance"] = ScoreSpec(e["significance"], images=e["images"])
    return specs


def needs_scores(entry: dict) -> list[str]:
    """Ids of the score outputs (``scores/.../{id}.npz`` from scripts/scores.py) the entry reads."""
    entry = resolve_transform_entry(entry)
    if entry["method"] not in ("graft", "activation_prune"):
        return []
    return [spec.id for spec in score_specs(graft_settings(entry)).values()]


def preset_rho(entry: dict, arch: str, kind: str) -> float:
    """rho of a pruning entry: its own, or its preset's (``kind`` 'rho_np' / 'rho_wp')."""
    if entry["rho"] is not None:
        return entry["rho"]
    value = PRESETS[entry["preset"]][kind]
    return value.get(arch, value["*"]) if isinstance(value, dict) else value
