"""VNN-COMP-style results: the cactus plot and the per-verifier score table.

Statuses are vfbench record statuses (verified, falsified, unknown, timeout, error) or VNN-COMP
result words (unsat = verified, sat = falsified); ``misclassified`` images are not instances
(VNN-COMP benchmarks leave them out) and are skipped. An instance is *solved* when verified or
falsified. Score as VNN-COMP: +10 per solved instance, -150 per wrong one (its verdict
contradicts the reference verdict, where one is given).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

WORDS = {"unsat": "verified", "holds": "verified", "sat": "falsified", "violated": "falsified"}
SOLVED = ("verified", "falsified")
COLUMNS = ("verifier", "instances", "verified", "falsified", "unknown", "timeout", "error",
           "wrong", "score")
RIGHT, WRONG = 10, -150


def status_of(word: str) -> str:
    return WORDS.get(word, word)


def solved_times(statuses: Iterable[str], times: Iterable[float]) -> np.ndarray:
    """Sorted times of the solved instances."""
    return np.sort([float(t) for s, t in zip(statuses, times, strict=True)
                    if status_of(s) in SOLVED])


def draw_cactus(ax, series: Mapping[str, tuple[list[str], list[float]]],
                timeout_s: float | None = None) -> None:
    """One step line per verifier: instances solved (y) within a time (x, log scale)."""
    for name, (statuses, times) in series.items():
        solved = solved_times(statuses, times)
        solved = np.maximum(solved, 1e-3)  # a log axis has no 0
        ax.step(np.concatenate([[1e-3], solved]), np.arange(len(solved) + 1), where="post",
                label=f"{name} ({len(solved)})")
    ax.set_xscale("log")
    if timeout_s:
        ax.axvline(timeout_s, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("instances solved (verified + falsified)")
    ax.legend(fontsize="small", loc="upper left")


def score_table(runs: Mapping[str, Mapping[object, str]],
                reference: Mapping[object, str] | None = None) -> pd.DataFrame:
    """Per verifier: counts by status, wrong verdicts (against ``reference``: instance ->
    status, decided entries only) and the VNN-COMP score. ``runs``: verifier -> {instance:
    status}."""
    rows = []
    for name, results in runs.items():
        statuses = {k: status_of(v) for k, v in results.items() if v != "misclassified"}
        counts = pd.Series(list(statuses.values()), dtype=object).value_counts()
        wrong = sum(1 for k, s in statuses.items() if s in SOLVED and reference
                    and status_of(reference.get(k, "")) in SOLVED
                    and status_of(reference[k]) != s)
        solved = sum(int(counts.get(s, 0)) for s in SOLVED)
        rows.append({"verifier": name, "instances": len(statuses),
                     **{s: int(counts.get(s, 0)) for s in
                        ("verified", "falsified", "unknown", "timeout", "error")},
                     "wrong": wrong, "score": RIGHT * (solved - wrong) + WRONG * wrong})
    return pd.DataFrame(rows, columns=list(COLUMNS))
