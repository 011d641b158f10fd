"""Training entries of the config: every key with its default, checked without torch.

An entry (every key optional; the defaults are paper 002's natural training)::

    losses: {natural: 1.0}            # weighted sum of vfbench.losses.LOSSES terms
    loss_options: {}                  # per term, e.g. {pgd: {eps: 0.3}, nbc: {step: sign}}
    epochs: 100
    batch_size: 64
    optimizer: {name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1.0e-4}
    schedule: {name: plateau, factor: 0.1, patience: 3}
    early_stop_patience: null         # stop when the monitored loss has not improved for N epochs
    val_fraction: 0.0                 # held out of the training split; then val loss is monitored
    keep_best: null                   # or {eps, steps, restarts}: PGD accuracy on the held-out
                                      # split after every epoch; the phase ends with the weights
                                      # of its best epoch (paper 000's reference code)
    augment: none                     # or crop_flip (4-pixel zero-pad random crop + h-flip)
    eps_ramp: {start_epoch: 0, epochs: 0}   # eps of attack/certified terms: 0 until start_epoch,
                                            # then linear to full over `epochs` (per batch)
    phases: []                        # partial entries run in order, each over the entry above

``resolve_train_entry`` fills the defaults and rejects unknown keys, losses and options. Light on
purpose (no torch): the Snakefile checks every training entry of a campaign at start-up;
``vfbench.train`` runs the resolved entry.
"""

from __future__ import annotations

import copy

from vfbench.errors import VfbenchError
from vfbench.loss_options import LOSS_OPTIONS, resolve_loss_options

# The optimizers and schedules an entry may name, with their options' defaults (their factories
# are vfbench.train.OPTIMIZERS / SCHEDULES). multistep milestones are fractions of the epochs.
OPTIMIZER_DEFAULTS: dict[str, dict] = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0},
}
SCHEDULE_DEFAULTS: dict[str, dict] = {
    "plateau": {"factor": 0.1, "patience": 3},
    "multistep": {"milestones": [0.5, 0.75], "gamma": 0.1},
    "cosine": {"eta_min": 0.0},
    "none": {},
}

AUGMENTATIONS = ("none", "crop_flip")

ENTRY_DEFAULTS: dict = {
    "losses": {"natural": 1.0},
    "loss_options": {},
    "epochs": 100,
    "batch_size": 64,
    "optimizer": {"name": "sgd"},
    "schedule": {"name": "plateau"},
    "early_stop_patience": None,
    "val_fraction": 0.0,
    "keep_best": None,
    "augment": "none",
    "eps_ramp": {"start_epoch": 0, "epochs": 0},
    "phases": [],
}

# keys whose dict value a phase merges into the entry's (the others it replaces)
_MERGED_KEYS = ("loss_options", "optimizer", "schedule", "eps_ramp")


# --- resolving an entry ----------------------------------------------------------------------

def _check_keys(where: str, given: dict, allowed) -> None:
    if not isinstance(given, dict):
        raise VfbenchError(f"{where}: expected a mapping, got {given!r}")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise VfbenchError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def _number(where: str, value, minimum: float = 0.0, integer: bool = False):
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < minimum or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        raise VfbenchError(f"{where}: {value!r} must be {kind} >= {minimum}")
    return int(value) if integer else float(value)


def _resolve_named(where: str, block: dict, registry: dict[str, dict]) -> dict:
    _check_keys(where, block, {"name", *(k for d in registry.values() for k in d)})
    name = block.get("name")
    if name not in registry:
        raise VfbenchError(f"{where}.name: {name!r} unknown; known: {sorted(registry)}")
    defaults = registry[name]
    _check_keys(where, {k: v for k, v in block.items() if k != "name"}, defaults)
    resolved = {"name": name, **copy.deepcopy(defaults)}
    for key, value in block.items():
        if key == "name":
            continue
        if isinstance(defaults[key], bool):
            if not isinstance(value, bool):
                raise VfbenchError(f"{where}.{key}: {value!r} must be true or false")
        elif isinstance(defaults[key], list):
            if not isinstance(value, list) or not all(0 < _number(where, v) < 1 for v in value):
                raise VfbenchError(f"{where}.{key}: {value!r} must be fractions in (0, 1)")
        else:
            value = _number(f"{where}.{key}", value)
        resolved[key] = value
    return resolved


def _merge(base: dict, update: dict) -> dict:
    """A phase over the entry: merged dict keys merge one level deep, unless the phase names a
    different optimizer / schedule; every other key is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        old = merged.get(key)
        same_named = not (isinstance(value, dict) and isinstance(old, dict)
                          and "name" in value and value["name"] != old.get("name"))
        if key in _MERGED_KEYS and isinstance(value, dict) and isinstance(old, dict) and same_named:
            merged[key] = {**old, **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_single(entry: dict, where: str) -> dict:
    """One phase's (or a phase-less entry's) complete settings."""
    _check_keys(where, entry, set(ENTRY_DEFAULTS) - {"phases"})
    e = _merge({k: v for k, v in ENTRY_DEFAULTS.items() if k != "phases"}, entry)

    losses = e["losses"]
    if not isinstance(losses, dict) or not losses:
        raise VfbenchError(f"{where}.losses: expected a non-empty mapping loss -> weight")
    for name in losses:
        if name not in LOSS_OPTIONS:
            raise VfbenchError(f"{where}.losses: unknown loss {name!r}; "
                               f"known: {sorted(LOSS_OPTIONS)}")
    weights = {name: _number(f"{where}.losses.{name}", w) for name, w in losses.items()}
    if not any(LOSS_OPTIONS[n].kind == "data" and w > 0 for n, w in weights.items()):
        data_terms = sorted(n for n, t in LOSS_OPTIONS.items() if t.kind == "data")
        raise VfbenchError(f"{where}.losses: needs a data term with a positive weight (one of "
                           f"{data_terms}); {sorted(weights)} are regularisers only")
    _check_keys(f"{where}.loss_options", e["loss_options"], LOSS_OPTIONS)
    options = {}
    for name in sorted(set(weights) | set(e["loss_options"])):
        try:
            options[name] = resolve_loss_options(name, e["loss_options"].get(name))
        except VfbenchError as exc:
            raise VfbenchError(f"{where}.loss_options: {exc}") from exc

    ramp = e["eps_ramp"]
    _check_keys(f"{where}.eps_ramp", ramp, ENTRY_DEFAULTS["eps_ramp"])
    fraction = _number(f"{where}.val_fraction", e["val_fraction"])
    if fraction >= 1:
        raise VfbenchError(f"{where}.val_fraction: {fraction} must be below 1")
    if e["augment"] not in AUGMENTATIONS:
        raise VfbenchError(f"{where}.augment: {e['augment']!r}; expected one of {AUGMENTATIONS}")
    patience = e["early_stop_patience"]
    keep_best = e["keep_best"]
    if keep_best is not None:
        keep_best = _resolve_keep_best(f"{where}.keep_best", keep_best, fraction)
    return {
        "losses": weights,
        "loss_options": options,
        "epochs": _number(f"{where}.epochs", e["epochs"], 1, integer=True),
        "batch_size": _number(f"{where}.batch_size", e["batch_size"], 2, integer=True),
        "optimizer": _resolve_named(f"{where}.optimizer", e["optimizer"], OPTIMIZER_DEFAULTS),
        "schedule": _resolve_named(f"{where}.schedule", e["schedule"], SCHEDULE_DEFAULTS),
        "early_stop_patience": None if patience is None else _number(
            f"{where}.early_stop_patience", patience, 1, integer=True),
        "val_fraction": fraction,
        "keep_best": keep_best,
        "augment": e["augment"],
        "eps_ramp": {k: _number(f"{where}.eps_ramp.{k}", v, 0, integer=True)
                     for k, v in ramp.items()},
    }


KEEP_BEST_DEFAULTS = {"eps": None, "steps": 10, "restarts": 1}


def _resolve_keep_best(where: str, block, val_fraction: float) -> dict:
    if not isinstance(block, dict):
        raise VfbenchError(f"{where}: expected {{eps, steps, restarts}} or null, got {block!r}")
    _check_keys(where, block, KEEP_BEST_DEFAULTS)
    e = {**KEEP_BEST_DEFAULTS, **block}
    if e["eps"] is None or not 0 < _number(f"{where}.eps", e["eps"]) < 1:
        raise VfbenchError(f"{where}.eps: {e['eps']!r} must be a radius in (0, 1)")
    if val_fraction <= 0:
        raise VfbenchError(f"{where}: picks the best epoch on the held-out split; set "
                           "val_fraction above 0")
    return {"eps": float(e["eps"]),
            "steps": _number(f"{where}.steps", e["steps"], 1, integer=True),
            "restarts": _number(f"{where}.restarts", e["restarts"], 1, integer=True)}


def resolve_train_entry(entry: dict | None) -> dict:
    """The entry with every default filled in; ``phases`` becomes the list of complete phase
    settings (each phase merged over the entry). Idempotent. Bad keys, losses, options or values
    are VfbenchErrors naming them."""
    entry = {} if entry is None else entry
    _check_keys("train entry", entry, ENTRY_DEFAULTS)
    phases = entry.get("phases") or []
    if not isinstance(phases, list):
        raise VfbenchError(f"train entry.phases: expected a list, got {phases!r}")
    base = {k: v for k, v in entry.items() if k != "phases"}
    resolved = _resolve_single(base, "train entry")
    resolved["phases"] = []
    for i, phase in enumerate(phases):
        _check_keys(f"train entry.phases[{i}]", phase, set(ENTRY_DEFAULTS) - {"phases"})
        resolved["phases"].append(_resolve_single(_merge(base, phase), f"phases[{i}]"))
    return resolved
