"""The campaign summary: one row per model, verifier and eps."""

from __future__ import annotations

import pandas as pd

from vfbench.report.cells import cell_value, make_frame, time_notes
from vfbench.report.entries import SUMMARY_COLUMNS, summary_columns, summary_rows
from vfbench.report.selection import eps_label
from vfbench.results import CampaignResults


def summary(results: CampaignResults, options: dict) -> pd.DataFrame:
    """One row per model, verifier and eps: SA, RA, VA, UNR, mean Time, images tried, errors."""
    keys = summary_columns(options)
    rows, index = [], []
    for key, verifier, eps in summary_rows(results, options):
        rows.append([cell_value(results, key, verifier, eps, k) for k in keys])
        index.append((*key, verifier, eps_label(eps)))
    frame = make_frame(rows, index, ["dataset", "arch", "train", "transform", "verifier", "eps"],
                       list(SUMMARY_COLUMNS))
    frame.attrs["notes"] = time_notes(keys)
    return frame


TABLES = {"summary": summary}
