"""Paper 000 (linearity grafting): Tables 1-6 and A7, one row per method, one column group per
model."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from vfbench.report.cells import cell_value, make_frame, time_notes
from vfbench.report.entries import paper000_cells
from vfbench.results import CampaignResults

MAIN = {"UNR": "unr", "VA": "va", "SA": "sa", "RA": "ra", "Time": "time_000"}
ABLATION = {"UNR": "unr", "VA": "va", "SA": "sa", "RA": "ra"}


def _method_rows(results: CampaignResults, options: dict,
                 columns: Mapping[str, str]) -> pd.DataFrame:
    """One row per method (``methods``: {label: spec}), one column group per model with
    ``columns`` ({label: COLUMNS key})."""
    methods, verifier, groups = paper000_cells(results, options)
    rows = [[] for _ in methods]
    header = []
    for group, dataset, arch, eps in groups:
        header += [(group, label) for label in columns]
        for row, (_, (train, transform)) in zip(rows, methods, strict=True):
            key = (dataset, arch, train, transform)
            row += [cell_value(results, key, verifier, eps, k) for k in columns.values()]
    frame = make_frame(rows, [(label,) for label, _ in methods], ["Method"], header)
    frame.attrs["notes"] = time_notes(columns.values())
    return frame


def main(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 000 Tables 1 and A7: UNR, VA, SA, RA, Time per method and model."""
    return _method_rows(results, options, MAIN)


def ablation(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 000 Tables 2-5: UNR, VA, SA, RA per setting."""
    return _method_rows(results, options, ABLATION)


def training(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 000 Table 6: UNR, VA, SA, RA and total training time (hours) per setting; the note
    names the devices the training ran on (base.json ``metrics.device``)."""
    frame = _method_rows(results, options, {**ABLATION, "Training Time (h)": "train_hours"})
    devices = sorted({str(m["device"]) for m in results.train_metrics.values() if m.get("device")})
    if devices:
        frame.attrs["notes"] = frame.attrs.get("notes", []) + [f"trained on {', '.join(devices)}"]
    return frame


TABLES = {
    "paper000_table1": main,
    "paper000_table2": ablation,
    "paper000_table3": ablation,
    "paper000_table4": ablation,
    "paper000_table5": ablation,
    "paper000_table6": training,
    "paper000_tableA7": main,
}
