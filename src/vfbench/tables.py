"""The campaign summary and the three papers' tables, built from a campaign's results.

The results come loaded by ``vfbench.results`` (``CampaignResults``).
A layout is a function ``(results, options) -> DataFrame`` in ``TABLES``; its options and their
defaults are in ``vfbench.report_entries.TABLE_DEFAULTS`` (an unknown option is an error). One
writer renders any such frame to CSV, Markdown and LaTeX (booktabs) with a provenance footer,
plus a JSON sidecar.

Rows and columns come from the options (which {train}/{transform} short names fill them), cells
from ``vfbench.metrics``; anything a campaign did not run is "-", never a made-up number.
A row spec is ``"train/transform"``, or a bare name that fills the layout's varying part (the
transform in paper 000's layouts, the training in paper 001's).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from vfbench import metrics
from vfbench.config import config_hash
from vfbench.errors import VfbenchError
from vfbench.io import atomic_path, git_commit, write_json
from vfbench.report_entries import table_entries
from vfbench.results import CampaignResults, ModelKey, parse_model_id

MISSING = "-"


# --- cells: the metrics of one (model, verifier, eps) --------------------------------------------

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

TIME_COLUMNS = {"time_all": "all", "time_ut": "u+t", "time_000": "paper000"}


def cell_value(results: CampaignResults, key: ModelKey, verifier: str, eps: float,
               column: str | Callable[[Cell], Any]) -> Any:
    fn = COLUMNS[column] if isinstance(column, str) else column
    return fn(Cell(results, key, verifier, eps))


# --- option helpers ---------------------------------------------------------------------------

def row_spec(value: str, *, train: str | None = None, transform: str = "none") -> tuple[str, str]:
    """``"train/transform"`` as is; a bare name is the transform when ``train`` is given (paper
    000's layouts), else the training (paper 001's, with ``transform``)."""
    parts = str(value).split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    if len(parts) == 1 and parts[0]:
        return (train, parts[0]) if train is not None else (parts[0], transform)
    raise VfbenchError(f"row spec {value!r}: expected 'train/transform' or one short name")


def labelled(option) -> list[tuple[str, Any]]:
    """A {label: value} mapping, or a list whose items are their own labels."""
    if isinstance(option, Mapping):
        return [(str(k), v) for k, v in option.items()]
    return [(str(v), v) for v in option]


def pick_eps(results: CampaignResults, option, dataset: str) -> float:
    """``eps`` option: a number, ``{dataset: number}``, or ``"min"`` / ``"max"`` of the campaign's
    eps values."""
    if isinstance(option, Mapping):
        if dataset not in option:
            raise VfbenchError(f"table option eps: no value for dataset {dataset!r}")
        option = option[dataset]
    if option in ("min", "max"):
        values = results.eps_values()
        if not values:
            raise VfbenchError("table option eps: the campaign has no verify.eps")
        return min(values) if option == "min" else max(values)
    try:
        return float(option)
    except (TypeError, ValueError) as exc:
        raise VfbenchError(f"table option eps: {option!r} is not a number, a {{dataset: number}} "
                           "mapping, 'min' or 'max'") from exc


def pick_verifier(results: CampaignResults, option: str | None) -> str:
    if option is not None:
        return str(option)
    verifiers = results.verifiers()
    if not verifiers:
        raise VfbenchError("tables: the campaign names no verifier (verify.verifiers)")
    return verifiers[0]


def _pick_models(results: CampaignResults, option,
                 specs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(label, dataset, arch) column groups: the ``models`` option ({label: "dataset/arch"} or a
    list), else every (dataset, arch) that has at least one of the rows' (train, transform)."""
    if option is not None:
        return [(label, *parse_model_id(value, parts=2)) for label, value in labelled(option)]
    present = set(results.models())
    pairs = [(d, a) for d, a in results.model_pairs()
             if any((d, a, t, x) in present for t, x in specs)] or results.model_pairs()
    return [(f"{a}, {d}", d, a) for d, a in pairs]


def _pick_dataset(results: CampaignResults, option: str | None) -> str:
    if option is not None:
        return str(option)
    datasets = results.datasets()
    if not datasets:
        raise VfbenchError("tables: no results were given")
    return datasets[0]


def _archs(results: CampaignResults, option, dataset: str) -> list[tuple[str, str]]:
    if option is not None:
        return labelled(option)
    return [(a, a) for d, a in results.model_pairs() if d == dataset]


def _pgd_label(results: CampaignResults, steps: int | None) -> str:
    if steps is None:
        known = {s.get("steps") for s in results.pgd_settings()}
        steps = known.pop() if len(known) == 1 else None
    return "PGD" if steps is None else f"PGD_{steps}"


def eps_label(eps: float) -> str:
    """0.1 -> "0.1"; 2/255 -> "2/255"."""
    short = f"{eps:g}"
    if len(short) <= 6:
        return short
    k = eps * 255
    return f"{round(k)}/255" if math.isclose(k, round(k), abs_tol=1e-6) else short


def _frame(rows: list[list], index: list[tuple], index_names: list[str],
           columns: list) -> pd.DataFrame:
    index_obj = pd.MultiIndex.from_tuples(index, names=index_names) if index else \
        pd.MultiIndex.from_arrays([[] for _ in index_names], names=index_names)
    if columns and isinstance(columns[0], tuple):
        columns = pd.MultiIndex.from_tuples(columns)
    return pd.DataFrame(rows, index=index_obj, columns=columns, dtype=object)


def _time_notes(keys: Iterable[str]) -> list[str]:
    notes = []
    for key in keys:
        if key in TIME_COLUMNS:
            included = metrics.TIME_DEFINITIONS[TIME_COLUMNS[key]]
            statuses = [s for s in metrics.STATUSES if s in included]
            notes.append(f"Time ({TIME_COLUMNS[key]}) = mean seconds over {'+'.join(statuses)}")
    return notes


# --- layouts ------------------------------------------------------------------------------------

SUMMARY_COLUMNS = {"SA": "sa", "RA": "ra", "VA": "va", "UNR": "unr", "Time": None,
                   "Images": "images", "Errors": "errors"}


def summary(results: CampaignResults, options: dict) -> pd.DataFrame:
    """One row per model, verifier and eps: SA, RA, VA, UNR, mean Time, images tried, errors."""
    time_keys = {v: k for k, v in TIME_COLUMNS.items()}
    if options["time"] not in time_keys:
        raise VfbenchError(f"tables.summary: time {options['time']!r} unknown; "
                           f"known: {sorted(time_keys)}")
    time_key = time_keys[options["time"]]
    keys = [time_key if k is None else k for k in SUMMARY_COLUMNS.values()]
    rows, index = [], []
    for key in results.models():
        for verifier in options["verifiers"] or results.verifiers(key):
            for eps in options["eps"] or results.eps_values(key):
                rows.append([cell_value(results, key, verifier, float(eps), k) for k in keys])
                index.append((*key, verifier, eps_label(float(eps))))
    frame = _frame(rows, index, ["dataset", "arch", "train", "transform", "verifier", "eps"],
                   list(SUMMARY_COLUMNS))
    frame.attrs["notes"] = _time_notes(keys)
    return frame


def _method_rows(results: CampaignResults, options: dict,
                 columns: Mapping[str, str]) -> pd.DataFrame:
    """Paper 000 layouts: one row per method (``methods``: {label: spec}), one column group per
    model with ``columns`` ({label: COLUMNS key})."""
    methods = [(label, row_spec(spec, train=options["train"]))
               for label, spec in labelled(options["methods"])]
    verifier = pick_verifier(results, options["verifier"])
    groups = _pick_models(results, options["models"], [s for _, s in methods])
    rows = [[] for _ in methods]
    header = []
    for group, dataset, arch in groups:
        eps = pick_eps(results, options["eps"], dataset)
        header += [(group, label) for label in columns]
        for row, (_, (train, transform)) in zip(rows, methods, strict=True):
            key = (dataset, arch, train, transform)
            row += [cell_value(results, key, verifier, eps, k) for k in columns.values()]
    frame = _frame(rows, [(label,) for label, _ in methods], ["Method"], header)
    frame.attrs["notes"] = _time_notes(columns.values())
    return frame


PAPER000_MAIN = {"UNR": "unr", "VA": "va", "SA": "sa", "RA": "ra", "Time": "time_000"}
PAPER000_ABLATION = {"UNR": "unr", "VA": "va", "SA": "sa", "RA": "ra"}


def paper000_main(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 000 Tables 1 and A7: UNR, VA, SA, RA, Time per method and model."""
    return _method_rows(results, options, PAPER000_MAIN)


def paper000_ablation(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 000 Tables 2-5: UNR, VA, SA, RA per setting."""
    return _method_rows(results, options, PAPER000_ABLATION)


def paper000_training(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 000 Table 6: UNR, VA, SA, RA and total training time (hours) per setting; the note
    names the devices the training ran on (base.json ``metrics.device``)."""
    frame = _method_rows(results, options,
                         {**PAPER000_ABLATION, "Training Time (h)": "train_hours"})
    devices = sorted({str(m["device"]) for m in results.train_metrics.values() if m.get("device")})
    if devices:
        frame.attrs["notes"] = frame.attrs.get("notes", []) + [f"trained on {', '.join(devices)}"]
    return frame


def _paper001_rows(results: CampaignResults, options: dict) -> list[tuple[str, Any]]:
    return [("UNSAT%", "va"), ("Stable%", "stable"), ("Time (s)", "time_all"),
            ("Time_U+T (s)", "time_ut"),
            (_pgd_label(results, options["pgd_steps"]), pgd_column(options["pgd_steps"]))]


def _eps_sweep(results: CampaignResults, options: dict, column_specs: list[tuple[str, Any]],
               value: Callable[[str, Any, float, Any], Any]) -> pd.DataFrame:
    """Paper 001 Tables 1-2 and 4-7: a Test Acc. row, then per eps UNSAT%, Stable%, Time,
    Time_U+T, PGD; one column per (model, method). ``value(arch, spec, eps, column)``."""
    dataset = _pick_dataset(results, options["dataset"])
    archs = _archs(results, options["models"], dataset)
    eps_values = [float(e) for e in (options["eps"] or results.eps_values())]
    header = [(model, method) for model, _ in archs for method, _ in column_specs]
    metric_rows = _paper001_rows(results, options)
    index, rows = [("", "Test Acc.")], []
    rows.append([value(arch, spec, eps_values[0] if eps_values else 0.0, "sa")
                 for _, arch in archs for _, spec in column_specs])
    for eps in eps_values:
        for label, column in metric_rows:
            index.append((f"eps={eps_label(eps)}", label))
            rows.append([value(arch, spec, eps, column)
                         for _, arch in archs for _, spec in column_specs])
    frame = _frame(rows, index, ["eps", "Metric"], header)
    frame.attrs["notes"] = [f"dataset {dataset}"] + _time_notes(["time_all", "time_ut"])
    return frame


def paper001_eps_sweep(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 001 Tables 1, 4, 5: each method's metrics per eps and model."""
    verifier = pick_verifier(results, options["verifier"])
    dataset = _pick_dataset(results, options["dataset"])

    def value(arch, spec, eps, column):
        train, transform = row_spec(spec, transform=options["transform"])
        return cell_value(results, (dataset, arch, train, transform), verifier, eps, column)
    return _eps_sweep(results, options, labelled(options["methods"]), value)


def paper001_differences(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 001 Tables 2, 6, 7: metric of (method + NBC) minus metric of the method alone; the
    columns named in ``relative`` (Tables 6 and 7: Test Acc., printed there as "-7.7%") as the
    relative change in percent, 100 (a - b) / b. (Table 2 prints Test Acc. as a difference; the
    other rows of Tables 6 and 7 cannot be relative: Time_U+T falls by more than 100 there.)"""
    verifier = pick_verifier(results, options["verifier"])
    dataset = _pick_dataset(results, options["dataset"])
    relative = set(options["relative"])

    def value(arch, pair, eps, column):
        combined, alone = (row_spec(s, transform=options["transform"]) for s in pair)
        a = cell_value(results, (dataset, arch, *combined), verifier, eps, column)
        b = cell_value(results, (dataset, arch, *alone), verifier, eps, column)
        if a is None or b is None:
            return None
        if column in relative:
            return None if b == 0 else 100.0 * (a - b) / b
        return a - b
    frame = _eps_sweep(results, options, labelled(options["pairs"]), value)
    names = {"sa": "Test Acc."} | {c: label for label, c in _paper001_rows(results, options)
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


def paper001_table8(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 001 Table 8: per model and method, Test Acc, UNSAT%, #UNSAT, Time, Time_U+T, PGD
    accuracies (``pgd_steps``), Stable% at one eps."""
    verifier = pick_verifier(results, options["verifier"])
    dataset = _pick_dataset(results, options["dataset"])
    eps = pick_eps(results, options["eps"], dataset)
    columns = _metric_columns(results, options, with_count=True)
    rows, index = [], []
    for model, arch in _archs(results, options["models"], dataset):
        for method, spec in labelled(options["methods"]):
            key = (dataset, arch, *row_spec(spec, transform=options["transform"]))
            rows.append([cell_value(results, key, verifier, eps, c) for c in columns.values()])
            index.append((model, method))
    frame = _frame(rows, index, ["Model", "Method"], list(columns))
    frame.attrs["notes"] = [f"dataset {dataset}, eps {eps_label(eps)}"] + \
        _time_notes(["time_all", "time_ut"])
    return frame


def paper001_table9(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 001 Table 9: per model, eps and NBC layer-weight variant (gamma[i]): Test Acc,
    UNSAT%, Time, Time_U+T, PGD, Stable%."""
    verifier = pick_verifier(results, options["verifier"])
    variants = [(label, row_spec(spec, transform=options["transform"]))
                for label, spec in labelled(options["variants"])]
    columns = _metric_columns(results, options, with_count=False)
    rows, index = [], []
    for model, dataset, arch in _pick_models(results, options["models"], [s for _, s in variants]):
        eps = pick_eps(results, options["eps"], dataset)
        for label, (train, transform) in variants:
            key = (dataset, arch, train, transform)
            rows.append([cell_value(results, key, verifier, eps, c) for c in columns.values()])
            index.append((model, eps_label(eps), label))
    frame = _frame(rows, index, ["Model", "eps", "gamma[i]"], list(columns))
    frame.attrs["notes"] = _time_notes(["time_all", "time_ut"])
    return frame


def paper001_table11(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 001 Table 11: one model trained with NBC at several beta; metrics as rows."""
    verifier = pick_verifier(results, options["verifier"])
    variants = [(label, row_spec(spec, transform=options["transform"]))
                for label, spec in labelled(options["variants"])]
    _, dataset, arch = _pick_models(results, options["model"] and [options["model"]],
                                    [s for _, s in variants])[0]
    eps = pick_eps(results, options["eps"], dataset)
    metric_rows = [("Test Acc", "sa")] + _paper001_rows(results, options)
    rows = [[cell_value(results, (dataset, arch, *spec), verifier, eps, column)
             for _, spec in variants] for _, column in metric_rows]
    frame = _frame(rows, [(label,) for label, _ in metric_rows], ["beta"],
                   [label for label, _ in variants])
    frame.attrs["notes"] = [f"{arch} on {dataset}, eps {eps_label(eps)}"] + \
        _time_notes(["time_all", "time_ut"])
    return frame


def _paper002_table(options: dict, columns: list[tuple[Any, Any]],
                    value: Callable[[str, str, str, Any], Any]) -> pd.DataFrame:
    """Paper 002 layouts: rows (base, param, network) for each base architecture (``bases``:
    {label: arch}) and each ``rows`` entry [param, network, spec]; ``columns`` are (header,
    payload) and ``value(arch, train, transform, payload)`` fills a cell."""
    rows, index = [], []
    for base, arch in labelled(options["bases"]):
        for param, network, spec in options["rows"]:
            train, transform = row_spec(spec)
            rows.append([value(arch, train, transform, payload) for _, payload in columns])
            index.append((base, str(param), str(network)))
    return _frame(rows, index, ["Base", "Param", "Network"], [h for h, _ in columns])


def paper002_table2(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 002 Tables 2 and 3: test accuracy and FGSM robustness (fractions) per network."""
    dataset = _pick_dataset(results, options["dataset"])
    eps = pick_eps(results, options["eps"], dataset)

    def value(arch, train, transform, column):
        return cell_value(results, (dataset, arch, train, transform), "", eps, column)
    frame = _paper002_table(options, [("Accuracy", "accuracy"), ("Robustness", "fgsm")], value)
    frame.attrs["notes"] = [f"dataset {dataset}; FGSM at eps {eps_label(eps)}"]
    return frame


def paper002_table4(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 002 Table 4: hidden neurons and weights (connections not zero) per network, from
    the transform reports' ``sizes`` (scripts/transform.py)."""
    dataset = _pick_dataset(results, options["dataset"])

    def value(arch, train, transform, key):
        report = results.reports.get((dataset, arch, train, transform)) or {}
        return (report.get("sizes") or {}).get(key)
    frame = _paper002_table(options, [("# HL Neurons", "hidden_neurons"),
                                      ("# Weights", "nonzero_weights")], value)
    frame.attrs["notes"] = [f"dataset {dataset}; before BN folding; # Weights counts the "
                            "Linear/Conv weights that are not zero"]
    return frame


def paper002_table5(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 002 Table 5: instances solved within the timeout, per dataset and verifier."""
    datasets = labelled(options["datasets"] or results.datasets())
    verifiers = labelled(options["verifiers"] or results.verifiers())
    columns = [((d_label, v_label), (dataset, verifier))
               for d_label, dataset in datasets for v_label, verifier in verifiers]

    def value(arch, train, transform, payload):
        dataset, verifier = payload
        eps = pick_eps(results, options["eps"], dataset)
        return cell_value(results, (dataset, arch, train, transform), verifier, eps, "solved")
    frame = _paper002_table(options, columns, value)
    frame.attrs["notes"] = ["solved: verified or falsified within the verifier's timeout"]
    return frame


def paper002_table6(results: CampaignResults, options: dict) -> pd.DataFrame:
    """Paper 002 Table 6: mean seconds per instance of one (incomplete) verifier, per dataset."""
    verifier = pick_verifier(results, options["verifier"])
    datasets = labelled(options["datasets"] or results.datasets())

    def value(arch, train, transform, dataset):
        eps = pick_eps(results, options["eps"], dataset)
        return cell_value(results, (dataset, arch, train, transform), verifier, eps, "time_all")
    frame = _paper002_table(options, datasets, value)
    frame.attrs["notes"] = [f"verifier {verifier}"] + _time_notes(["time_all"])
    return frame


TABLES: dict[str, Callable[[CampaignResults, dict], pd.DataFrame]] = {
    "summary": summary,
    "paper000_table1": paper000_main,
    "paper000_table2": paper000_ablation,
    "paper000_table3": paper000_ablation,
    "paper000_table4": paper000_ablation,
    "paper000_table5": paper000_ablation,
    "paper000_table6": paper000_training,
    "paper000_tableA7": paper000_main,
    "paper001_table1": paper001_eps_sweep,
    "paper001_table2": paper001_differences,
    "paper001_table4": paper001_eps_sweep,
    "paper001_table5": paper001_eps_sweep,
    "paper001_table6": paper001_differences,
    "paper001_table7": paper001_differences,
    "paper001_table8": paper001_table8,
    "paper001_table9": paper001_table9,
    "paper001_table11": paper001_table11,
    "paper002_table2": paper002_table2,
    "paper002_table3": paper002_table2,
    "paper002_table4": paper002_table4,
    "paper002_table5": paper002_table5,
    "paper002_table6": paper002_table6,
}

# --- provenance ---------------------------------------------------------------------------------

def campaign_provenance(results: CampaignResults) -> dict:
    """What every table and figure of a campaign states about where its numbers come from."""
    input_commits = sorted({str(e["provenance"]["git_commit"])
                            for e in results.evals.values()
                            if isinstance(e.get("provenance"), Mapping)
                            and e["provenance"].get("git_commit")})
    verify = results.config.get("verify", {})
    return {
        "campaign": results.config.get("campaign"),
        "config_sha256": config_hash(results.config),
        "commit": git_commit(),
        "input_commits": input_commits,
        "unstable_bound": verify.get("unstable_bound"),
        "timeouts_s": {v: results.timeout(v) for v in results.verifiers()},
        "images": verify.get("images"),
        "image_selection": verify.get("image_selection", "first"),
        "verifiers": {v: verifier_setting(verify, v) for v in results.verifiers()},
        "pgd": results.pgd_settings(),
        "time_definitions": {k: sorted(v) for k, v in metrics.TIME_DEFINITIONS.items()},
        "inputs": list(results.inputs),
    }


def verifier_setting(verify: Mapping, verifier: str) -> dict:
    """A verifier's bound method and falsifier as the campaign ran it: its entry's ``method`` and
    ``pgd_steps`` x ``pgd_restarts`` (unset: vfbench.verify.base's defaults; 0 steps: off)."""
    from vfbench.verify.options import COMMON_OPTIONS

    entry = (verify.get("verifiers") or {}).get(verifier) or {}
    return {"method": entry.get("method", verifier),
            "pgd_steps": entry.get("pgd_steps", COMMON_OPTIONS["pgd_steps"].default),
            "pgd_restarts": entry.get("pgd_restarts", COMMON_OPTIONS["pgd_restarts"].default)}


def _falsifier_text(setting: Mapping) -> str:
    if not setting["pgd_steps"]:
        return "off"
    return f"PGD {setting['pgd_steps']}x{setting['pgd_restarts']}"


def provenance_line(prov: Mapping, notes: Sequence[str] = ()) -> str:
    timeouts = ", ".join(f"{v} {t:g} s" for v, t in prov["timeouts_s"].items() if t is not None)
    pgd = ", ".join(f"{p.get('steps')} steps x {p.get('restarts', 1)} restarts"
                    for p in prov["pgd"])
    verifiers = ", ".join(f"{v} = {s['method']} bounds, falsifier {_falsifier_text(s)}"
                          for v, s in prov.get("verifiers", {}).items())
    parts = [f"campaign {prov['campaign']}", f"config {prov['config_sha256']}",
             f"commit {prov['commit']}",
             f"images: {prov.get('images')} ({prov.get('image_selection', 'first')})",
             f"verifiers: {verifiers or MISSING}",
             f"UNR/Stable% from {prov['unstable_bound']} bounds",
             f"timeout {timeouts or MISSING}", f"PGD {pgd or MISSING}", *notes]
    return "; ".join(parts)


# --- rendering ----------------------------------------------------------------------------------

def format_value(value, decimals: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:+d}" if signed and value else str(value)
    value = round(float(value), decimals) + 0.0  # + 0.0: no "-0.0"
    return f"{value:+.{decimals}f}" if signed and value else f"{value:.{decimals}f}"


def _header_levels(frame: pd.DataFrame) -> list[list[str]]:
    if isinstance(frame.columns, pd.MultiIndex):
        return [[str(c[i]) for c in frame.columns] for i in range(frame.columns.nlevels)]
    return [[str(c) for c in frame.columns]]


def _body(frame: pd.DataFrame, decimals: int, signed: bool) -> list[list[str]]:
    """Rows as strings, an index level left blank where it repeats the row above (as in the
    papers)."""
    out, previous = [], None
    for index, values in zip(frame.index, frame.itertuples(index=False), strict=True):
        labels = [str(x) for x in (index if isinstance(index, tuple) else (index,))]
        shown = list(labels)
        if previous is not None:
            for i, label in enumerate(labels):
                if label != previous[i]:
                    break
                shown[i] = ""
        previous = labels
        out.append(shown + [format_value(v, decimals, signed) for v in values])
    return out


def render_markdown(frame: pd.DataFrame, *, title: str, footer: str, decimals: int,
                    signed: bool = False) -> str:
    names = [str(n or "") for n in frame.index.names]
    header = names + [" / ".join(parts) for parts in zip(*_header_levels(frame), strict=True)]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":--"] * len(names) + ["--:"] * len(frame.columns)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _body(frame, decimals, signed)]
    return "\n".join(lines + ["", f"*{footer}*", ""])


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def render_latex(frame: pd.DataFrame, *, title: str, footer: str, decimals: int,
                 signed: bool = False) -> str:
    """A booktabs ``table``: grouped column headers (``\\multicolumn`` + ``\\cmidrule``) for a
    two-level header, the provenance line in small type under the tabular."""
    n_index = frame.index.nlevels
    levels = _header_levels(frame)
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(title)}}}",
             rf"\begin{{tabular}}{{{'l' * n_index}{'r' * len(frame.columns)}}}", r"\toprule"]
    if len(levels) > 1:
        groups, rules, start = [], [], n_index + 1
        runs: list[list] = []
        for label in levels[0]:
            if runs and runs[-1][0] == label:
                runs[-1][1] += 1
            else:
                runs.append([label, 1])
        for label, span in runs:
            groups.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" & ".join([""] * n_index + groups) + r" \\")
        lines.append(" ".join(rules))
    names = [latex_escape(n or "") for n in frame.index.names]
    lines.append(" & ".join(names + [latex_escape(c) for c in levels[-1]]) + r" \\")
    lines.append(r"\midrule")
    for row in _body(frame, decimals, signed):
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              rf"{{\footnotesize {latex_escape(footer)}\par}}", r"\end{table}", ""]
    return "\n".join(lines)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Index levels as leading columns; grouped column labels joined with " / "."""
    flat = frame.copy()
    flat.columns = [" / ".join(str(p) for p in c) if isinstance(c, tuple) else str(c)
                    for c in frame.columns]
    return flat.reset_index()


def render_csv(frame: pd.DataFrame) -> str:
    """One header row, full precision, "-" where missing."""
    flat = _flat(frame).astype(object)
    return flat.where(flat.notna(), MISSING).to_csv(index=False)


def write_table(frame: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str,
                decimals: int, signed: bool, provenance: Mapping) -> list[Path]:
    """``{name}.csv``, ``.md``, ``.tex`` and the ``.json`` sidecar (provenance + cells)."""
    out_dir = Path(out_dir)
    footer = provenance_line(provenance, frame.attrs.get("notes", ()))
    texts = {
        ".csv": render_csv(frame),
        ".md": render_markdown(frame, title=title, footer=footer, decimals=decimals,
                               signed=signed),
        ".tex": render_latex(frame, title=title, footer=footer, decimals=decimals,
                             signed=signed),
    }
    paths = []
    for suffix, text in texts.items():
        path = out_dir / f"{name}{suffix}"
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        paths.append(path)
    sidecar = out_dir / f"{name}.json"
    write_json(sidecar, {**provenance, "table": name, "title": title, "footer": footer,
                         "notes": list(frame.attrs.get("notes", ())),
                         "cells": json.loads(_flat(frame).to_json(orient="records"))})
    return paths + [sidecar]


def build_tables(results: CampaignResults, out_dir: str | os.PathLike) -> list[Path]:
    """Build and write every table the campaign config asks for; return the files written."""
    provenance = campaign_provenance(results)
    written = []
    for name, (layout, options) in table_entries(results.config).items():
        frame = TABLES[layout](results, options)
        written += write_table(frame, out_dir, name, title=options["title"],
                               decimals=int(options["decimals"]), signed=bool(options["signed"]),
                               provenance={**provenance, "layout": layout, "options": options})
    return written
