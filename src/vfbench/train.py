"""Training a zoo model with a training entry of the config.

An entry, its defaults and its checks: ``vfbench.train_entry`` (``resolve_train_entry``).
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
from vfbench.losses import Batch, eval_mode, total_loss
from vfbench.runtime import describe_device, seed_everything
from vfbench.train_entry import resolve_train_entry

# name -> factory(params, options); the options and their defaults: vfbench.train_entry.
OPTIMIZERS: dict[str, Callable] = {
    "sgd": lambda params, o: torch.optim.SGD(
        params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
        weight_decay=o["weight_decay"]),
    "adam": lambda params, o: torch.optim.Adam(
        params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), weight_decay=o["weight_decay"]),
}

# name -> factory(optimizer, options, epochs). 'plateau' steps on the monitored loss once per
# epoch; the others once per epoch. multistep milestones are fractions of the epochs.
SCHEDULES: dict[str, Callable] = {
    "plateau": lambda opt, o, epochs: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=o["factor"], patience=o["patience"]),
    "multistep": lambda opt, o, epochs: torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=sorted({round(f * epochs) for f in o["milestones"]}), gamma=o["gamma"]),
    "cosine": lambda opt, o, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=epochs, eta_min=o["eta_min"]),
    "none": lambda opt, o, epochs: None,
}


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
    make_optimizer = OPTIMIZERS[settings["optimizer"]["name"]]
    params = param_groups(model) if param_groups is not None else model.parameters()
    optimizer = make_optimizer(params, settings["optimizer"])
    make_schedule = SCHEDULES[settings["schedule"]["name"]]
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
