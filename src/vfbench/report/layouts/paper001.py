"""Paper 001 (NBC): Tables 1, 2 and 4-9 and 11, metrics per eps, model and training method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from vfbench.report.cells import cell_value, make_frame, pgd_column, time_notes
from vfbench.report.entries import (
    paper001_sweep_cells,
    paper001_table8_cells,
    paper001_table11_cells,
    paper001_variant_cells,
)
from vfbench.report.selection import eps_label, labelled, row_spec
from vfbench.results import CampaignResults


def _pgd_label(results: CampaignResults, steps: int | None) -> str:
    if steps is None:
        known = {s.get("steps") for s in results.pgd_settings()}
        steps = known.pop() if len(known) == 1 else None
    return "PGD" if steps is None else f"PGD_{steps}"


def _metric_rows(results: CampaignResults, options: dict) -> list[tuple[str, Any]]:
    return [("UNSAT%", "va"), ("Stable%", "stable"), ("Time (s)", "time_all"),
            ("Time_U+T (s)", "time_ut"),
            (_pgd_label(results, options["pgd_steps"]), pgd_column(options["pgd_steps"]))]


def _eps_sweep(results: CampaignResults, options: dict, column_specs: list[tuple[str, Any]],
               value: Callable[..., Any]) -> pd.DataFrame:
    """Tables 1-2 and 4-7: a Test Acc. row, then per eps UNSAT%, Stable%, Time, Time_U+T, PGD;
    one column per (model, method). ``value(verifier, dataset, arch, spec, eps, column)``."""
    verifier, dataset, archs, eps_values = paper001_sweep_cells(results, options)
    header = [(model, method) for model, _ in archs for method, _ in column_specs]
    metric_rows = _metric_rows(results, options)
    index, rows = [("", "Test Acc.")], []
    rows.append([value(verifier, dataset, arch, spec, eps_values[0] if eps_values else 0.0, "sa")
                 for _, arch in archs for _, spec in column_specs])
    for eps in eps_values:
        for label, column in metric_rows:
            index.append((f"eps={eps_label(eps)}", label))
            rows.append([value(verifier, dataset, arch, spec, eps, column)
                         for _, arch in archs for _, spec in column_specs])
    frame = make_frame(rows, index, ["eps", "Metric"], header)
    frame.attrs["notes"] = [f"dataset {dataset}"] + time_notes(["time_all", "time_ut"])
    return frame


def eps_sweep(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Tables 1, 4, 5: each method's metrics per eps and model."""
    def value(verifier, dataset, arch, spec, eps, column):
        key = (dataset, arch, *row_spec(spec, transform=options["transform"]))
        return cell_value(results, key, verifier, eps, column)
    return _eps_sweep(results, options, labelled(options["methods"]), value)


def differences(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Tables 2, 6, 7: metric of (method + NBC) minus metric of the method alone; the columns
    named in ``relative`` (Tables 6 and 7: Test Acc., printed there as "-7.7%") as the relative
    change in percent, 100 (a - b) / b. (Table 2 prints Test Acc. as a difference; the other rows
    of Tables 6 and 7 cannot be relative: Time_U+T falls by more than 100 there.)"""
    relative = set(options["relative"])

    def value(verifier, dataset, arch, pair, eps, column):
        combined, alone = (row_spec(s, transform=options["transform"]) for s in pair)
        a = cell_value(results, (dataset, arch, *combined), verifier, eps, column)
        b = cell_value(results, (dataset, arch, *alone), verifier, eps, column)
        if a is None or b is None:
            return None
        if column in relative:
            return None if b == 0 else 100.0 * (a - b) / b
        return a - b
    frame = _eps_sweep(results, options, labelled(options["pairs"]), value)
    names = {"sa": "Test Acc."} | {c: label for label, c in _metric_rows(results, options)
                                   if isinstance(c, str)}
    if relative:
        frame.attrs["notes"].append("relative change (%) of the method alone: "
                                    + ", ".join(names.get(c, c) for c in sorted(relative)))
    return frame


def _metric_columns(results: CampaignResults, options: dict, with_count: bool) -> dict:
    steps = options["pgd_steps"]
    pgd = {_pgd_label(results, s): pgd_column(s) for s in (steps if steps else [None])}
    columns = {"Test Acc": "sa", "UNSAT%": "va"}
    if with_count:
        columns["#UNSAT"] = "n_verified"
    return {**columns, "Time": "time_all", "Time_U+T": "time_ut", **pgd, "Stable%": "stable"}


def table8(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Table 8: per model and method, Test Acc, UNSAT%, #UNSAT, Time, Time_U+T, PGD accuracies
    (``pgd_steps``), Stable% at one eps."""
    verifier, dataset, eps, archs, methods = paper001_table8_cells(results, options)
    columns = _metric_columns(results, options, with_count=True)
    rows, index = [], []
    for model, arch in archs:
        for method, spec in methods:
            key = (dataset, arch, *spec)
            rows.append([cell_value(results, key, verifier, eps, c) for c in columns.values()])
            index.append((model, method))
    frame = make_frame(rows, index, ["Model", "Method"], list(columns))
    frame.attrs["notes"] = [f"dataset {dataset}, eps {eps_label(eps)}"] + \
        time_notes(["time_all", "time_ut"])
    return frame


def table9(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Table 9: per model, eps and NBC layer-weight variant (gamma[i]): Test Acc, UNSAT%, Time,
    Time_U+T, PGD, Stable%."""
    verifier, variants, groups = paper001_variant_cells(results, options, options["models"])
    columns = _metric_columns(results, options, with_count=False)
    rows, index = [], []
    for model, dataset, arch, eps in groups:
        for label, (train, transform) in variants:
            key = (dataset, arch, train, transform)
            rows.append([cell_value(results, key, verifier, eps, c) for c in columns.values()])
            index.append((model, eps_label(eps), label))
    frame = make_frame(rows, index, ["Model", "eps", "gamma[i]"], list(columns))
    frame.attrs["notes"] = time_notes(["time_all", "time_ut"])
    return frame


def table11(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Table 11: one model trained with NBC at several beta; metrics as rows."""
    verifier, variants, [(_, dataset, arch, eps)] = paper001_table11_cells(results, options)
    metric_rows = [("Test Acc", "sa")] + _metric_rows(results, options)
    rows = [[cell_value(results, (dataset, arch, *spec), verifier, eps, column)
             for _, spec in variants] for _, column in metric_rows]
    frame = make_frame(rows, [(label,) for label, _ in metric_rows], ["beta"],
                       [label for label, _ in variants])
    frame.attrs["notes"] = [f"{arch} on {dataset}, eps {eps_label(eps)}"] + \
        time_notes(["time_all", "time_ut"])
    return frame


TABLES = {
    "paper001_table1": eps_sweep,
    "paper001_table2": differences,
    "paper001_table4": eps_sweep,
    "paper001_table5": eps_sweep,
    "paper001_table6": differences,
    "paper001_table7": differences,
    "paper001_table8": table8,
    "paper001_table9": table9,
    "paper001_table11": table11,
}
