"""Training a zoo model with a training entry of the config.

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

``resolve_train_entry`` fills the defaults and rejects unknown keys, losses and options;
``train_model`` runs it (each phase with a fresh optimizer and schedule) and returns the history
and metrics.
"""

from __future__ import annotations

import copy
import csv
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path
from vfbench.losses import LOSSES, Batch, eval_mode, resolve_loss_options, total_loss
from vfbench.runtime import describe_device, seed_everything

# name -> (factory(params, options), defaults)
OPTIMIZERS: dict[str, tuple[Callable, dict]] = {
    "sgd": (lambda params, o: torch.optim.SGD(
        params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
        weight_decay=o["weight_decay"]),
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    "adam": (lambda params, o: torch.optim.Adam(
        params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), weight_decay=o["weight_decay"]),
        {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0}),
}

# name -> (factory(optimizer, options, epochs), defaults). 'plateau' steps on the monitored loss
# once per epoch; the others once per epoch. multistep milestones are fractions of the epochs.
SCHEDULES: dict[str, tuple[Callable, dict]] = {
    "plateau": (lambda opt, o, epochs: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=o["factor"], patience=o["patience"]),
        {"factor": 0.1, "patience": 3}),
    "multistep": (lambda opt, o, epochs: torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=sorted({round(f * epochs) for f in o["milestones"]}), gamma=o["gamma"]),
        {"milestones": [0.5, 0.75], "gamma": 0.1}),
    "cosine": (lambda opt, o, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=epochs, eta_min=o["eta_min"]),
        {"eta_min": 0.0}),
    "none": (lambda opt, o, epochs: None, {}),
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


def _resolve_named(where: str, block: dict, registry: dict) -> dict:
    _check_keys(where, block, {"name", *(k for _, d in registry.values() for k in d)})
    name = block.get("name")
    if name not in registry:
        raise VfbenchError(f"{where}.name: {name!r} unknown; known: {sorted(registry)}")
    defaults = registry[name][1]
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
        if name not in LOSSES:
            raise VfbenchError(f"{where}.losses: unknown loss {name!r}; known: {sorted(LOSSES)}")
    weights = {name: _number(f"{where}.losses.{name}", w) for name, w in losses.items()}
    if not any(LOSSES[n].kind == "data" and w > 0 for n, w in weights.items()):
        data_terms = sorted(n for n, t in LOSSES.items() if t.kind == "data")
        raise VfbenchError(f"{where}.losses: needs a data term with a positive weight (one of "
                           f"{data_terms}); {sorted(weights)} are regularisers only")
    _check_keys(f"{where}.loss_options", e["loss_options"], LOSSES)
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
        "optimizer": _resolve_named(f"{where}.optimizer", e["optimizer"], OPTIMIZERS),
        "schedule": _resolve_named(f"{where}.schedule", e["schedule"], SCHEDULES),
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


# --- the loop --------------------------------------------------------------------------------

def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one sample joins the previous one (BatchNorm
    cannot normalise a single sample)."""
    chunks = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding, and a horizontal flip with probability 1/2, per image
    (the CIFAR-10 augmentation of papers 000 and 001)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index_n = torch.arange(n, device=x.device)[:, None, None, None]
    index_c = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[index_n, index_c, rows[:, None, :, None], cols[:, None, None, :]]


def _ramp(settings: dict, epoch: int, step: int, steps_per_epoch: int) -> float:
    start, length = settings["eps_ramp"]["start_epoch"], settings["eps_ramp"]["epochs"]
    progress = epoch + step / steps_per_epoch - start
    if progress < 0:
        return 0.0
    return 1.0 if length == 0 else min(1.0, progress / length)


@torch.no_grad()
def _clean_loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             batch_size: int = 512) -> tuple[float, float]:
    loss, correct = 0.0, 0
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            yb = y[start:start + batch_size]
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return loss / len(x), correct / len(x)


def _train_epoch(model, optimizer, settings, x, y, epoch, generator, label):
    """One pass over (x, y); returns the mean objective and per-term means, the accuracy on the
    clean batches as trained on, and the eps ramp reached."""
    model.train()
    chunks = _batches(len(x), settings["batch_size"], generator)
    sums = {"loss": 0.0, **{f"loss_{name}": 0.0 for name in settings["losses"]}}
    correct, ramp = 0, 0.0
    bar = tqdm(chunks, desc=label, leave=False, disable=None)
    for step, index in enumerate(bar):
        index = index.to(x.device)
        xb, yb = x[index], y[index]
        if settings["augment"] == "crop_flip":
            xb = crop_flip(xb, generator)
        ramp = _ramp(settings, epoch, step, len(chunks))
        batch = Batch(model, xb, yb, ramp)
        loss, values = total_loss(batch, settings["losses"], settings["loss_options"])
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise VfbenchError(f"{label}: the training loss became {loss_value} ({values}); "
                               "lower the learning rate or the loss weights")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch.has_clean:
            logits = batch.clean_logits().detach()
        else:
            with torch.no_grad(), eval_mode(model):
                logits = model(xb)
        correct += int((logits.argmax(1) == yb).sum())
        sums["loss"] += loss_value * len(yb)
        for name, value in values.items():
            sums[f"loss_{name}"] += value * len(yb)
        bar.set_postfix(loss=f"{loss_value:.4f}")
    return {k: v / len(x) for k, v in sums.items()}, correct / len(x), ramp


def _split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """(x_train, y_train, x_val, y_val): a seeded random ``fraction`` of the split held out."""
    n_val = int(round(fraction * len(x)))
    if n_val == 0:
        return x, y, None, None
    if n_val >= len(x) - 1:
        raise VfbenchError(f"val_fraction {fraction} leaves no training data ({len(x)} samples)")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


class _CsvLog:
    """The per-epoch log, rewritten whole (atomically) after every epoch."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None

    def write(self, rows: list[dict]) -> None:
        if self.path is None:
            return
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def _run_phase(model, settings, x_all, y_all, seed, phase, history, log, generator,
               param_groups=None, on_epoch_start=None) -> bool:
    """Train one phase, appending a row per epoch to ``history``; True if it stopped early."""
    x, y, x_val, y_val = _split(x_all, y_all, settings["val_fraction"], seed)
    make_optimizer, _ = OPTIMIZERS[settings["optimizer"]["name"]]
    params = param_groups(model) if param_groups is not None else model.parameters()
    optimizer = make_optimizer(params, settings["optimizer"])
    make_schedule, _ = SCHEDULES[settings["schedule"]["name"]]
    schedule = make_schedule(optimizer, settings["schedule"], settings["epochs"])
    best, since_best = math.inf, 0
    best_robust, best_state, stopped = -1.0, None, False
    for epoch in range(settings["epochs"]):
        if on_epoch_start is not None:
            on_epoch_start(len(history))
        label = f"phase {phase} epoch {epoch + 1}/{settings['epochs']}"
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        means, accuracy, ramp = _train_epoch(model, optimizer, settings, x, y, epoch,
                                             generator, label)
        seconds = time.perf_counter() - start
        row = {"phase": phase, "epoch": len(history) + 1, "phase_epoch": epoch + 1, "lr": lr,
               "eps_ramp": ramp, **means, "train_acc": accuracy, "seconds": seconds}
        monitored = means["loss"]
        if x_val is not None:
            row["val_loss"], row["val_acc"] = _clean_loss_and_accuracy(model, x_val, y_val)
            monitored = row["val_loss"]
            if settings["keep_best"] is not None:
                row["val_robust_acc"] = _robust_accuracy(model, x_val, y_val,
                                                         settings["keep_best"], seed)
                if row["val_robust_acc"] > best_robust:
                    best_robust, best_state = row["val_robust_acc"], copy.deepcopy(
                        model.state_dict())
                    row["best"] = True
        history.append(row)
        log.write(history)
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step(monitored)
        elif schedule is not None:
            schedule.step()
        if monitored < best:
            best, since_best = monitored, 0
        else:
            since_best += 1
        patience = settings["early_stop_patience"]
        if patience is not None and since_best >= patience:
            stopped = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return stopped


def _robust_accuracy(model, x, y, keep_best: dict, seed: int) -> float:
    """PGD accuracy on the held-out split, the same random starts every epoch (its own
    generator: the training's batches do not depend on whether keep_best is on)."""
    from vfbench.metrics import pgd_accuracy

    with eval_mode(model):
        return pgd_accuracy(model, x, y, keep_best["eps"], keep_best["steps"],
                            keep_best["restarts"], generator=torch.Generator().manual_seed(seed))


def collapsed_to_chance(accuracy: float, num_classes: int) -> bool:
    """Whether an accuracy is within half of chance level of it: a run that ends there learned
    nothing (e.g. a sparsity weight that drove every BatchNorm scale to zero)."""
    return accuracy < 1.5 / num_classes


def train_model(model: nn.Module, dataset, entry: dict, device, seed: int,
                log_csv: str | Path | None = None,
                param_groups: Callable[[nn.Module], list[dict]] | None = None,
                on_epoch_start: Callable[[int], None] | None = None) -> dict:
    """Train ``model`` in place on ``dataset``'s train split as ``entry`` says (resolved here if it
    is not yet), writing the per-epoch CSV log as it goes.

    For fine-tuning (vfbench.transforms): ``param_groups(model)`` gives the optimizer's parameter
    groups (a group's own lr / weight_decay override the entry's), made afresh for each phase;
    ``on_epoch_start(epoch)`` runs before every epoch (counted over all phases, from 0).

    Returns ``{"history": [row per epoch], "metrics": {...}, "hyperparameters": resolved}``;
    metrics: final train loss / accuracy (and val, if held out), epochs run, seconds per epoch,
    the device, the seed, and which phases stopped early.
    """
    settings = resolve_train_entry(entry)
    phases = settings["phases"] or [{k: v for k, v in settings.items() if k != "phases"}]
    device = torch.device(device)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    x, y = dataset.tensors("train", device=device)
    history: list[dict] = []
    log = _CsvLog(log_csv)
    stopped = [_run_phase(model, phase, x, y, seed, i, history, log, generator, param_groups,
                          on_epoch_start)
               for i, phase in enumerate(phases)]
    model.eval()
    last = history[-1]
    seconds = [row["seconds"] for row in history]
    metrics = {
        "train_loss": last["loss"],
        "train_acc": last["train_acc"],
        "epochs_run": len(history),
        "seconds_total": sum(seconds),
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "device": describe_device(device),
        "seed": seed,
        "stopped_early": stopped,
    }
    if "val_acc" in last:
        metrics.update(val_loss=last["val_loss"], val_acc=last["val_acc"])
    kept = [row["epoch"] for row in history if row.get("best")]
    if kept:  # keep_best: the weights are those of the last best epoch of the last phase
        metrics.update(best_epoch=kept[-1], best_val_robust_acc=max(
            row["val_robust_acc"] for row in history if row["epoch"] == kept[-1]))
    metrics["collapsed"] = collapsed_to_chance(last["train_acc"], dataset.num_classes)
    if metrics["collapsed"]:
        warnings.warn(f"training ended at train accuracy {last['train_acc']:.3f}, about chance "
                      f"for {dataset.num_classes} classes: the model collapsed (a loss weight or "
                      "the learning rate too large for this run?)", stacklevel=2)
    return {"history": history, "metrics": metrics, "hyperparameters": settings}
