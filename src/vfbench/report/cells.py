"""A table cell's value: one metric of one (model, verifier, eps), from ``vfbench.metrics``, and
the frame a layout's cells make; anything a campaign did not run is ``MISSING``, never a made-up
number."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from vfbench import metrics
from vfbench.errors import VfbenchError
from vfbench.report.selection import TIME_COLUMNS
from vfbench.results import CampaignResults, ModelKey

MISSING = "-"


@dataclass(frozen=True)
class Cell:
    results: CampaignResults
    key: ModelKey
    verifier: str
    eps: float

    @cached_property
    def records(self) -> pd.DataFrame | None:
        return self.results.records_for(self.key, self.verifier, self.eps)

    @cached_property
    def eval(self) -> dict | None:
        return self.results.evals.get(self.key)


def _percent_of_fraction(value, what: str, cell: Cell) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise VfbenchError(f"evaluate metrics of {'/'.join(cell.key)}: {what}={value} is not a "
                           "fraction in [0, 1]")
    return 100.0 * value


def _fraction(value, what: str, cell: Cell) -> float | None:
    percent = _percent_of_fraction(value, what, cell)
    return None if percent is None else percent / 100.0


def _from_records(metric: Callable[[pd.DataFrame], Any]) -> Callable[[Cell], Any]:
    return lambda cell: None if cell.records is None else metric(cell.records)


def _from_eval(metric: Callable[[Cell, dict], Any]) -> Callable[[Cell], Any]:
    return lambda cell: None if cell.eval is None else metric(cell, cell.eval)


def pgd_column(steps: int | None) -> Callable[[Cell], float | None]:
    """RA (%) at the cell's eps with PGD of ``steps`` steps (None: the evaluate step's setting)."""
    return _from_eval(lambda c, e: _percent_of_fraction(
        metrics.robust_accuracy(e, c.eps, steps), f"ra(steps={steps}, eps={c.eps})", c))


def _train_hours(cell: Cell) -> float | None:
    """Total training time in hours: base.json ``metrics.seconds_total`` (what
    ``vfbench.train.train_model`` reports) plus report.json ``seconds`` (the whole transform step
    as scripts/transform.py times it: scores computed in place and fine-tuning; nothing for
    transform ``none``); "-" when a step did not record its time."""
    dataset, arch, train, transform = cell.key
    base = cell.results.train_metrics.get((dataset, arch, train)) or {}
    seconds = base.get("seconds_total")
    if transform != "none" and seconds is not None:
        extra = (cell.results.reports.get(cell.key) or {}).get("seconds")
        seconds = None if extra is None else seconds + extra
    return None if seconds is None else float(seconds) / 3600.0


COLUMNS: dict[str, Callable[[Cell], Any]] = {
    "sa": _from_eval(lambda c, e: _percent_of_fraction(e.get("sa"), "sa", c)),
    "ra": pgd_column(None),
    "accuracy": _from_eval(lambda c, e: _fraction(e.get("sa"), "sa", c)),
    "fgsm": _from_eval(lambda c, e: _fraction(
        metrics.value_at_eps(e.get("fgsm"), c.eps), f"fgsm(eps={c.eps})", c)),
    "va": _from_records(metrics.verified_accuracy),
    "n_verified": _from_records(metrics.verified_count),
    "unr": _from_records(metrics.unstable_ratio),
    "stable": _from_records(metrics.stable_percent),
    "time_all": _from_records(lambda r: metrics.mean_time(r, "all")),
    "time_ut": _from_records(lambda r: metrics.mean_time(r, "u+t")),
    "time_000": _from_records(lambda r: metrics.mean_time(r, "paper000")),
    "solved": _from_records(metrics.solved_count),
    "images": _from_records(len),
    "errors": _from_records(lambda r: metrics.status_counts(r)["error"]),
    "train_hours": _train_hours,
}


def cell_value(results: CampaignResults, key: ModelKey, verifier: str, eps: float,
               column: str | Callable[[Cell], Any]) -> Any:
    fn = COLUMNS[column] if isinstance(column, str) else column
    return fn(Cell(results, key, verifier, eps))


def make_frame(rows: list[list], index: list[tuple], index_names: list[str],
               columns: list) -> pd.DataFrame:
    """A layout's cells as a DataFrame: a MultiIndex of row labels, grouped column labels when
    they are tuples."""
    index_obj = pd.MultiIndex.from_tuples(index, names=index_names) if index else \
        pd.MultiIndex.from_arrays([[] for _ in index_names], names=index_names)
    if columns and isinstance(columns[0], tuple):
        columns = pd.MultiIndex.from_tuples(columns)
    return pd.DataFrame(rows, index=index_obj, columns=columns, dtype=object)


def time_notes(keys: Iterable[str]) -> list[str]:
    """The footnote of each time column among ``keys``: which statuses its mean covers."""
    notes = []
    for key in keys:
        if key in TIME_COLUMNS:
            included = metrics.TIME_DEFINITIONS[TIME_COLUMNS[key]]
            statuses = [s for s in metrics.STATUSES if s in included]
            notes.append(f"Time ({TIME_COLUMNS[key]}) = mean seconds over {'+'.join(statuses)}")
    return notes
