"""Paper 002 (pruning): Tables 2-6, one row per (base architecture, setting, network)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from vfbench.report.cells import cell_value, make_frame, time_notes
from vfbench.report.entries import paper002_datasets, paper002_rows
from vfbench.report.selection import eps_label, labelled, pick_dataset, pick_eps, pick_verifier
from vfbench.results import CampaignResults


def _rows(options: dict, columns: list[tuple[Any, Any]],
          value: Callable[[str, str, str, Any], Any]) -> pd.DataFrame:
    """One row per ``paper002_rows`` entry; ``columns`` are (header, payload) and
    ``value(arch, train, transform, payload)`` fills a cell."""
    rows, index = [], []
    for labels, (arch, train, transform) in paper002_rows(options):
        rows.append([value(arch, train, transform, payload) for _, payload in columns])
        index.append(labels)
    return make_frame(rows, index, ["Base", "Param", "Network"], [h for h, _ in columns])


def accuracy(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Tables 2 and 3: test accuracy and FGSM robustness (fractions) per network."""
    dataset = pick_dataset(results, options["dataset"])
    eps = pick_eps(results, options["eps"], dataset)

    def value(arch, train, transform, column):
        return cell_value(results, (dataset, arch, train, transform), "", eps, column)
    frame = _rows(options, [("Accuracy", "accuracy"), ("Robustness", "fgsm")], value)
    frame.attrs["notes"] = [f"dataset {dataset}; FGSM at eps {eps_label(eps)}"]
    return frame


def sizes(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Table 4: hidden neurons and weights (connections not zero) per network, from the
    transform reports' ``sizes`` (scripts/transform.py)."""
    dataset = pick_dataset(results, options["dataset"])

    def value(arch, train, transform, key):
        report = results.reports.get((dataset, arch, train, transform)) or {}
        return (report.get("sizes") or {}).get(key)
    frame = _rows(options, [("# HL Neurons", "hidden_neurons"),
                            ("# Weights", "nonzero_weights")], value)
    frame.attrs["notes"] = [f"dataset {dataset}; before BN folding; # Weights counts the "
                            "Linear/Conv weights that are not zero"]
    return frame


def solved(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Table 5: instances solved within the timeout, per dataset and verifier."""
    verifiers = labelled(options["verifiers"] or results.verifiers())
    columns = [((d_label, v_label), (dataset, verifier))
               for d_label, dataset in paper002_datasets(results, options)
               for v_label, verifier in verifiers]

    def value(arch, train, transform, payload):
        dataset, verifier = payload
        eps = pick_eps(results, options["eps"], dataset)
        return cell_value(results, (dataset, arch, train, transform), verifier, eps, "solved")
    frame = _rows(options, columns, value)
    frame.attrs["notes"] = ["solved: verified or falsified within the verifier's timeout"]
    return frame


def mean_time(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Table 6: mean seconds per instance of one (incomplete) verifier, per dataset."""
    verifier = pick_verifier(results, options["verifier"])

    def value(arch, train, transform, dataset):
        eps = pick_eps(results, options["eps"], dataset)
        return cell_value(results, (dataset, arch, train, transform), verifier, eps, "time_all")
    frame = _rows(options, paper002_datasets(results, options), value)
    frame.attrs["notes"] = [f"verifier {verifier}"] + time_notes(["time_all"])
    return frame


TABLES = {
    "paper002_table2": accuracy,
    "paper002_table3": accuracy,
    "paper002_table4": sizes,
    "paper002_table5": solved,
    "paper002_table6": mean_time,
}
