"""The metrics of the three papers, defined once; every step and every table uses these.

Two kinds of input:

* a model and test tensors, for the accuracies the evaluate step writes to ``metrics.json``
  (SA, RA under PGD, FGSM robustness) -- fractions in [0, 1];
* verification records (one row per image; DataFrame of a merged parquet), for VA / UNSAT%, UNR,
  Stable%, the mean times and the solved counts -- percentages or seconds.

A record-level metric that has no image to average over returns ``None`` (a table shows "-"),
never a made-up number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vfbench.config import same_eps
from vfbench.errors import VfbenchError

if TYPE_CHECKING:
    import torch

STATUSES = ("verified", "falsified", "unknown", "timeout", "misclassified", "error")
RECORD_FIELDS = ("image", "label", "pred", "eps", "verifier", "status", "time_s", "margin_lb",
                 "n_relu", "n_unstable", "unstable_by_site", "domains", "depth",
                 "counterexample", "error", "unstable_bound")

# Which records each paper's mean time averages over (by status).
#   all      paper 001 "Time": every property the verifier was given; a misclassified image is a
#            property settled at once, an error is not a verification and is left out.
#   u+t      paper 001 "Time_U+T": properties that ended UNSAT (verified) or timed out.
#   paper000 paper 000 "Time": excludes images "classified incorrectly or attacked successfully"
#            (misclassified, falsified).
TIME_DEFINITIONS: dict[str, frozenset[str]] = {
    "all": frozenset({"verified", "falsified", "unknown", "timeout", "misclassified"}),
    "u+t": frozenset({"verified", "timeout"}),
    "paper000": frozenset({"verified", "unknown", "timeout"}),
}

# Paper 002 "solved within the timeout": the verifier decided the instance either way.
SOLVED_STATUSES = frozenset({"verified", "falsified"})


# --- accuracies of a model (evaluate step) ---------------------------------------------------
# torch is imported inside these three, so that the tables and plots (which never run a model)
# load without it.

def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def _accuracy(model, x, y, batch_size: int, perturb) -> float:
    import torch

    if len(x) == 0:
        raise VfbenchError("accuracy: no test images")
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for xb, yb in _batches(x, y, batch_size):
        xb, yb = xb.to(device), yb.to(device)
        xb = perturb(xb, yb)
        with torch.no_grad():
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(x)


def clean_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """SA: fraction of (x, y) the model classifies right."""
    return _accuracy(model, x, y, batch_size, lambda xb, yb: xb)


def pgd_accuracy(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                 restarts: int = 1, batch_size: int = 256,
                 generator: torch.Generator | None = None,
                 step_size: float | None = None) -> float:
    """RA: fraction still classified right under PGD with ``steps`` steps and ``restarts``
    random starts."""
    from vfbench.attacks import pgd_attack

    def attack(xb, yb):
        return pgd_attack(model, xb, yb, eps, steps=steps, step_size=step_size,
                          restarts=restarts, generator=generator)
    return _accuracy(model, x, y, batch_size, attack)


def fgsm_accuracy(model, x: torch.Tensor, y: torch.Tensor, eps: float,
                  batch_size: int = 256) -> float:
    """Paper 002's robustness: fraction still classified right after one FGSM step of size eps."""
    from vfbench.attacks import fgsm_attack

    return _accuracy(model, x, y, batch_size, lambda xb, yb: fgsm_attack(model, xb, yb, eps))


# --- looking up evaluate metrics by eps ------------------------------------------------------

def value_at_eps(by_eps: Mapping | None, eps: float) -> float | None:
    """The value of an ``{eps: value}`` mapping (keys may be strings, as in JSON) at ``eps``."""
    for key, value in (by_eps or {}).items():
        if same_eps(float(key), eps):
            return None if value is None else float(value)
    return None


def pgd_settings_of(eval_metrics: Mapping) -> dict:
    """The PGD settings an evaluate metrics.json ran ``ra`` with (``pgd`` or ``settings.pgd``)."""
    return dict(eval_metrics.get("pgd") or (eval_metrics.get("settings") or {}).get("pgd") or {})


def robust_accuracy(eval_metrics: Mapping, eps: float, steps: int | None = None) -> float | None:
    """RA at ``eps`` from an evaluate ``metrics.json``: ``ra`` ran PGD with the recorded settings;
    other step counts come from the optional ``ra_by_steps: {steps: {eps: value}}``."""
    if steps is None or int(pgd_settings_of(eval_metrics).get("steps", -1)) == int(steps):
        found = value_at_eps(eval_metrics.get("ra"), eps)
        if found is not None or steps is None:
            return found
    for key, by_eps in (eval_metrics.get("ra_by_steps") or {}).items():
        if int(key) == int(steps):
            return value_at_eps(by_eps, eps)
    return None


# --- verification records ---------------------------------------------------------------------

def check_records(records: pd.DataFrame, where: str) -> pd.DataFrame:
    """Raise a VfbenchError naming ``where`` unless ``records`` has the fields the metrics read and
    only known statuses."""
    missing = [f for f in ("image", "eps", "verifier", "status", "time_s") if f not in records]
    if missing:
        raise VfbenchError(f"{where}: verification records lack fields {missing}")
    unknown = sorted(set(records["status"]) - set(STATUSES))
    if unknown:
        raise VfbenchError(f"{where}: unknown statuses {unknown} (expected one of {STATUSES})")
    return records


def status_counts(records: pd.DataFrame) -> dict[str, int]:
    counts = records["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def verified_accuracy(records: pd.DataFrame) -> float | None:
    """VA = UNSAT%: percentage of images tried that were verified. Misclassified, falsified,
    unknown, timeout and error all count as not verified."""
    if len(records) == 0:
        return None
    return 100.0 * float((records["status"] == "verified").sum()) / len(records)


def verified_count(records: pd.DataFrame) -> int:
    """#UNSAT of paper 001 Table 8."""
    return int((records["status"] == "verified").sum())


def _unstable_fractions(records: pd.DataFrame) -> np.ndarray:
    """Per image, unstable / all ReLU neurons, for images whose bound pass counted them."""
    if "n_relu" not in records or "n_unstable" not in records:
        return np.array([])
    n_relu = pd.to_numeric(records["n_relu"], errors="coerce")
    n_unstable = pd.to_numeric(records["n_unstable"], errors="coerce")
    counted = n_relu.notna() & n_unstable.notna() & (n_relu > 0)
    return (n_unstable[counted] / n_relu[counted]).to_numpy(dtype=float)


def unstable_ratio(records: pd.DataFrame) -> float | None:
    """UNR (paper 000): unstable ReLU neurons / all ReLU neurons in %, averaged over the images
    whose counts the fixed bound method (``verify.unstable_bound``) produced."""
    fractions = _unstable_fractions(records)
    return 100.0 * float(fractions.mean()) if fractions.size else None


def stable_percent(records: pd.DataFrame) -> float | None:
    """Stable% (paper 001): mean over properties i of s_i, the stable-neuron ratio of property i,
    in %. Over the same images as UNR, so Stable% = 100 - UNR."""
    fractions = _unstable_fractions(records)
    return 100.0 * float((1.0 - fractions).mean()) if fractions.size else None


def mean_time(records: pd.DataFrame, definition: str = "all") -> float | None:
    """Mean ``time_s`` over the records whose status the named paper definition includes (see
    ``TIME_DEFINITIONS``); ``None`` when none is included."""
    try:
        statuses = TIME_DEFINITIONS[definition]
    except KeyError as exc:
        raise VfbenchError(f"time definition {definition!r} unknown; "
                           f"known: {sorted(TIME_DEFINITIONS)}") from exc
    times = pd.to_numeric(records.loc[records["status"].isin(statuses), "time_s"], errors="coerce")
    times = times.dropna()
    return float(times.mean()) if len(times) else None


def solved_count(records: pd.DataFrame) -> int:
    """Paper 002 Table 5: instances solved within the timeout, i.e. decided either way (verified
    or falsified); a verifier that runs out of time records ``timeout`` instead."""
    return int(records["status"].isin(SOLVED_STATUSES).sum())


def verified_within(records: pd.DataFrame, thresholds: Sequence[float]) -> list[float]:
    """Paper 000 Fig. A9: VA (%) if every image had to be verified within each time threshold."""
    n = len(records)
    if n == 0:
        return [float("nan")] * len(thresholds)
    times = pd.to_numeric(records["time_s"], errors="coerce")
    verified = records["status"] == "verified"
    return [100.0 * float((verified & (times <= t)).sum()) / n for t in thresholds]


def mean_lower_bound(records: pd.DataFrame) -> float | None:
    """Paper 000 Fig. 4: the verifier's final lower bound on the margin, averaged over the images
    that have one (misclassified and errored images have none)."""
    if "margin_lb" not in records:
        return None
    bounds = pd.to_numeric(records["margin_lb"], errors="coerce")
    bounds = bounds[np.isfinite(bounds)]
    return float(bounds.mean()) if len(bounds) else None


# --- per-site instability (paper 000 Fig. 3) -----------------------------------------------------

def site_map(value) -> dict:
    """``unstable_by_site`` of one record as a dict, however the merge step stored it: a dict, a
    JSON string, or the list of (key, value) pairs pyarrow gives for a map column."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    return {k: v for k, v in value}


def unstable_counts_by_site(records: pd.DataFrame) -> dict[str, list[int]]:
    """Per site, the number of unstable neurons of each image. A record's site entry is either that
    number or the list of the unstable neurons' flat indices."""
    per_site: dict[str, list[int]] = {}
    for value in records.get("unstable_by_site", pd.Series(dtype=object)):
        for site, entry in site_map(value).items():
            count = len(entry) if _is_index_list(entry) else int(entry)
            per_site.setdefault(site, []).append(count)
    return per_site


def neuron_instability(records: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """Per site, for each neuron that was unstable at least once, the number of images for which
    it was unstable (paper 000 Fig. 3's x axis). ``None`` when the records hold only per-site counts
    rather than the unstable neurons' indices."""
    per_site: dict[str, dict[int, int]] = {}
    for value in records.get("unstable_by_site", pd.Series(dtype=object)):
        for site, entry in site_map(value).items():
            if not _is_index_list(entry):
                return None
            counter = per_site.setdefault(site, {})
            for index in entry:
                counter[int(index)] = counter.get(int(index), 0) + 1
    return {site: np.array(sorted(c.values()), dtype=int) for site, c in per_site.items()}


def _is_index_list(entry) -> bool:
    return isinstance(entry, (list, tuple, np.ndarray))


# --- paper 001 Fig. 2 -----------------------------------------------------------------------------

def normalised_scores(values: pd.DataFrame, method_col: str, group_cols: Iterable[str],
                      metrics: Mapping[str, bool]) -> pd.DataFrame:
    """Paper 001 Fig. 2: within each group (e.g. model and eps) the best value of a metric becomes
    100 and the others are scaled proportionally, then each method's scores are averaged over the
    groups. ``metrics`` maps a metric column to whether lower is better (times: their reciprocal is
    scaled, as in the paper). Returns columns ``method_col``, ``metric``, ``score``."""
    group_cols = list(group_cols)
    rows = []
    for metric, lower_is_better in metrics.items():
        column = pd.to_numeric(values[metric], errors="coerce")
        if lower_is_better:
            column = 1.0 / column.where(column > 0)
        frame = values[group_cols + [method_col]].assign(value=column).dropna(subset=["value"])
        best = frame.groupby(group_cols)["value"].transform("max")
        frame = frame.assign(score=100.0 * frame["value"] / best.where(best > 0))
        for method, scores in frame.groupby(method_col, sort=False)["score"]:
            rows.append({method_col: method, "metric": metric, "score": float(scores.mean())})
    return pd.DataFrame(rows, columns=[method_col, "metric", "score"])
