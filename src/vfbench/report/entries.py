"""The tables and figures a campaign can ask for: each layout's declaration (its options with their
defaults, and every (model, verifier, eps) it reads), and the check of a campaign's ``tables`` /
``plots`` blocks against them.

Light on purpose (no pandas, no matplotlib): the Snakefile lists the report outputs and checks the
entries at start-up, so an entry naming a model, verifier or eps the campaign does not build stops
``snakemake -n`` instead of showing as a silent "-". The layouts themselves are
``vfbench.report.layouts.TABLES`` and ``vfbench.report.plots.PLOTS``; they pick their cells with
the same functions (the ``*_cells`` below and ``vfbench.report.selection``), and tests check each
registry names the same layouts as its declarations and reads nothing they do not declare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vfbench.config import parse_model_id
from vfbench.errors import VfbenchError
from vfbench.report.selection import (
    TIME_COLUMNS,
    BuiltCampaign,
    Campaign,
    ModelKey,
    Read,
    labelled,
    pick_archs,
    pick_dataset,
    pick_eps,
    pick_model_ids,
    pick_models,
    pick_verifier,
    row_spec,
)


@dataclass(frozen=True)
class Layout:
    """A table or figure as a campaign names it: its options with their defaults, and
    ``reads(campaign, options)``: every cell it reads that the campaign builds, and a
    VfbenchError naming what is missing for a model, verifier or eps the entry names that the
    campaign does not build (``BuiltCampaign.built``), or for an option it cannot use."""

    defaults: dict[str, Any]
    reads: Callable[[BuiltCampaign, dict], list[Read]]


# The parts of a model id an entry names, when a layout crosses them with the campaign's models.
WHOLE, METHOD, TRANSFORM, NO_MODEL = slice(0, 4), slice(2, 4), slice(3, 4), slice(0, 0)
ARCH_METHOD = slice(1, 4)


def named(model: slice, *, eps=None, verifier=None) -> Callable[[Read], tuple | None]:
    """What an entry names of a cell (``BuiltCampaign.built``): the ``model`` parts of its model
    id, its verifier if the ``verifier`` option names one, its eps if the ``eps`` option does (a
    number, a list or a mapping; not unset, 'min' or 'max'); None when it names none of them."""
    eps_named = eps not in (None, "min", "max", [])

    def part(read: Read) -> tuple | None:
        found = (read.model[model], read.verifier if verifier else None,
                 read.eps if eps_named else None)
        return None if found == ((), None, None) else found
    return part


# --- the summary -----------------------------------------------------------------------------

SUMMARY_COLUMNS = {"SA": "sa", "RA": "ra", "VA": "va", "UNR": "unr", "Time": None,
                   "Images": "images", "Errors": "errors"}


def summary_columns(options: dict) -> list[str]:
    """The summary's column keys, Time per its ``time`` option."""
    time_keys = {v: k for k, v in TIME_COLUMNS.items()}
    if options["time"] not in time_keys:
        raise VfbenchError(f"tables.summary: time {options['time']!r} unknown; "
                           f"known: {sorted(time_keys)}")
    return [time_keys[options["time"]] if k is None else k for k in SUMMARY_COLUMNS.values()]


def summary_rows(campaign: Campaign, options: dict) -> list[tuple[ModelKey, str, float]]:
    """(model, verifier, eps) of each summary row."""
    return [(key, verifier, float(eps))
            for key in campaign.models()
            for verifier in options["verifiers"] or campaign.verifiers(key)
            for eps in options["eps"] or campaign.eps_values(key)]


def _summary_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    summary_columns(options)
    return campaign.built([Read(*row) for row in summary_rows(campaign, options)],
                          named(NO_MODEL, eps=options["eps"], verifier=options["verifiers"]))


# --- paper 000 (short names match the reduced campaigns) ----------------------------------------

_PAPER000 = {"train": "fat", "models": None, "verifier": None, "eps": "min", "decimals": 2,
             "signed": False}
_PAPER000_METHODS = {
    "Baseline": "none", "SAP (50%)": "sap", "GAP (50%)": "gap", "Hydra (50%)": "hydra",
    "Random Grafting (50%)": "graft_random", "Grafting (50%)": "graft50",
    "Grafting (30%)": "graft30", "Grafting (80%)": "graft80",
}


def paper000_cells(campaign: Campaign, options: dict):
    """Paper 000 layouts: (label, (train, transform)) per row (``methods``), the verifier, and
    (label, dataset, arch, eps) per column group (``models``)."""
    methods = [(label, row_spec(spec, train=options["train"]))
               for label, spec in labelled(options["methods"])]
    verifier = pick_verifier(campaign, options["verifier"])
    groups = [(label, dataset, arch, pick_eps(campaign, options["eps"], dataset))
              for label, dataset, arch in pick_models(campaign, options["models"],
                                                      [s for _, s in methods])]
    return methods, verifier, groups


def _paper000_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    methods, verifier, groups = paper000_cells(campaign, options)
    return campaign.built([Read((dataset, arch, *spec), verifier, eps)
                           for _, dataset, arch, eps in groups for _, spec in methods],
                          _by_models(options["models"], options))


def _by_models(models, options: dict) -> Callable[[Read], tuple | None]:
    """Named models: each one's cells; else each method on one of the campaign's models (their
    eps may differ)."""
    if models is not None:
        return named(WHOLE, eps=options["eps"], verifier=options["verifier"])
    return named(METHOD, verifier=options["verifier"])


# --- paper 001 --------------------------------------------------------------------------------

_PAPER001 = {"dataset": None, "models": None, "transform": "none", "verifier": None, "eps": None,
             "pgd_steps": None, "decimals": 1, "signed": False}
_PAPER001_METHODS = {"T": "trades", "M": "madry", "R": "relu_stable", "O": "nbc"}
_PAPER001_PAIRS = {"T*": ["trades+nbc", "trades"], "M*": ["madry+nbc", "madry"],
                   "R*": ["relu_stable+nbc", "relu_stable"]}


def paper001_sweep_cells(campaign: Campaign, options: dict):
    """Paper 001 Tables 1-2 and 4-7: the verifier, the dataset, (label, arch) per model and the
    eps values swept."""
    verifier = pick_verifier(campaign, options["verifier"])
    dataset = pick_dataset(campaign, options["dataset"])
    archs = pick_archs(campaign, options["models"], dataset)
    eps_values = [float(e) for e in (options["eps"] or campaign.eps_values())]
    return verifier, dataset, archs, eps_values


def _sweep_reads(campaign: BuiltCampaign, options: dict, specs: list[str]) -> list[Read]:
    verifier, dataset, archs, eps_values = paper001_sweep_cells(campaign, options)
    keys = [(dataset, arch, *row_spec(spec, transform=options["transform"]))
            for _, arch in archs for spec in specs]
    return campaign.built([Read(key) for key in keys] +
                          [Read(key, verifier, eps) for key in keys for eps in eps_values],
                          named(WHOLE if options["models"] is not None else METHOD,
                                eps=options["eps"], verifier=options["verifier"]))


def _methods_sweep_reads(campaign: Campaign, options: dict) -> list[Read]:
    return _sweep_reads(campaign, options, [spec for _, spec in labelled(options["methods"])])


def _pairs_sweep_reads(campaign: Campaign, options: dict) -> list[Read]:
    return _sweep_reads(campaign, options,
                        [spec for _, pair in labelled(options["pairs"]) for spec in pair])


def paper001_table8_cells(campaign: Campaign, options: dict):
    """Paper 001 Table 8: the verifier, dataset, eps, (label, arch) per model and (label,
    (train, transform)) per method."""
    verifier = pick_verifier(campaign, options["verifier"])
    dataset = pick_dataset(campaign, options["dataset"])
    eps = pick_eps(campaign, options["eps"], dataset)
    methods = [(label, row_spec(spec, transform=options["transform"]))
               for label, spec in labelled(options["methods"])]
    return verifier, dataset, eps, pick_archs(campaign, options["models"], dataset), methods


def _table8_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    verifier, dataset, eps, archs, methods = paper001_table8_cells(campaign, options)
    return campaign.built([Read((dataset, arch, *spec), verifier, eps)
                           for _, arch in archs for _, spec in methods],
                          named(WHOLE if options["models"] is not None else METHOD,
                                eps=options["eps"], verifier=options["verifier"]))


def paper001_variant_cells(campaign: Campaign, options: dict, models):
    """Paper 001 Tables 9 and 11: the verifier, (label, (train, transform)) per variant and
    (label, dataset, arch, eps) per model of ``models`` (the models option)."""
    verifier = pick_verifier(campaign, options["verifier"])
    variants = [(label, row_spec(spec, transform=options["transform"]))
                for label, spec in labelled(options["variants"])]
    groups = [(label, dataset, arch, pick_eps(campaign, options["eps"], dataset))
              for label, dataset, arch in pick_models(campaign, models,
                                                      [s for _, s in variants])]
    return verifier, variants, groups


def paper001_table11_cells(campaign: Campaign, options: dict):
    """Paper 001 Table 11: as Table 9, for its one ``model`` (default: the first that fits)."""
    verifier, variants, groups = paper001_variant_cells(
        campaign, options, options["model"] and [options["model"]])
    return verifier, variants, groups[:1]


def _variant_reads(campaign: BuiltCampaign, options: dict, models, verifier: str, variants,
                   groups) -> list[Read]:
    return campaign.built([Read((dataset, arch, *spec), verifier, eps)
                           for _, dataset, arch, eps in groups for _, spec in variants],
                          _by_models(models, options))


def _table9_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    return _variant_reads(campaign, options, options["models"],
                          *paper001_variant_cells(campaign, options, options["models"]))


def _table11_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    return _variant_reads(campaign, options, options["model"],
                          *paper001_table11_cells(campaign, options))


# --- paper 002 --------------------------------------------------------------------------------

_PAPER002_ROWS = [["SET1", "Baseline", "natural/none"]] + [
    [f"SET{k}", network, spec]
    for k in (1, 2, 3)
    for network, spec in (("Sparse", f"sparse-set{k}/none"), ("WP", f"natural/wp-set{k}"),
                          ("NP", f"sparse-set{k}/np-set{k}"))
]
_PAPER002 = {"bases": {"NET1": "net1", "NET2": "net2"}, "rows": _PAPER002_ROWS, "eps": "min"}


def paper002_rows(options: dict) -> list[tuple[tuple[str, str, str], tuple[str, str, str]]]:
    """Paper 002 layouts: ((base, param, network) labels, (arch, train, transform)) per row, for
    each base architecture (``bases``: {label: arch}) and each ``rows`` entry [param, network,
    spec]."""
    return [((base, str(param), str(network)), (arch, *row_spec(spec)))
            for base, arch in labelled(options["bases"])
            for param, network, spec in options["rows"]]


def paper002_datasets(campaign: Campaign, options: dict) -> list[tuple[str, str]]:
    """(label, dataset) of the ``datasets`` option, else every dataset of the campaign."""
    return labelled(options["datasets"] or campaign.datasets())


def _one_dataset_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    dataset = pick_dataset(campaign, options["dataset"])
    return campaign.built([Read((dataset, *model)) for _, model in paper002_rows(options)])


def _solved_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    verifiers = [v for _, v in labelled(options["verifiers"] or campaign.verifiers())]
    return _per_dataset_reads(campaign, options, verifiers)


def _time_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    return _per_dataset_reads(campaign, options, [pick_verifier(campaign, options["verifier"])])


def _per_dataset_reads(campaign: BuiltCampaign, options: dict, verifiers: list[str]
                       ) -> list[Read]:
    """Named datasets: every cell; else each row on one of the campaign's datasets."""
    reads = [Read((dataset, *model), verifier, pick_eps(campaign, options["eps"], dataset))
             for _, dataset in paper002_datasets(campaign, options) for verifier in verifiers
             for _, model in paper002_rows(options)]
    named_verifiers = options.get("verifiers") or options.get("verifier")
    if options["datasets"]:
        return campaign.built(reads, named(WHOLE, eps=options["eps"], verifier=named_verifiers))
    return campaign.built(reads, named(ARCH_METHOD, verifier=named_verifiers))


TABLE_LAYOUTS: dict[str, Layout] = {
    "summary": Layout({"title": "Campaign summary", "time": "all", "verifiers": None,
                       "eps": None, "decimals": 2, "signed": False}, _summary_reads),
    "paper000_table1": Layout({**_PAPER000, "methods": _PAPER000_METHODS,
                               "title": "Paper 000 Table 1: UNR, VA, SA, RA (%) and Time (s)"},
                              _paper000_reads),
    "paper000_tableA7": Layout({**_PAPER000, "methods": _PAPER000_METHODS, "eps": "max",
                                "title": "Paper 000 Table A7: larger eps"}, _paper000_reads),
    "paper000_table2": Layout({**_PAPER000, "title": "Paper 000 Table 2: grafting criterion",
                               "methods": {"-r_s": "crit_rs", "r_u - r_s": "crit_ru_rs",
                                           "2 r_u - r_s": "crit_2ru_rs", "r_u": "crit_ru",
                                           "gamma r_u - r_s (gamma 2 -> 0)": "graft50"}},
                              _paper000_reads),
    "paper000_table3": Layout({**_PAPER000, "title": "Paper 000 Table 3: fine-tuning the weights",
                               "methods": {"Grafting (50%) w. tuning weights": "graft50",
                                           "Grafting (50%) w.o. tuning weights":
                                               "graft50_frozen"}},
                              _paper000_reads),
    "paper000_table4": Layout({**_PAPER000,
                               "title": "Paper 000 Table 4: grafting with regularisers",
                               "methods": {"Grafting (50%)": "graft50",
                                           "+ ReLU stability reg.": "graft50_rs",
                                           "+ l1 reg.": "graft50_l1",
                                           "+ small weight pruning": "graft50_swp",
                                           "+ all": "graft50_all"}},
                              _paper000_reads),
    "paper000_table5": Layout({**_PAPER000,
                               "title": "Paper 000 Table 5: grafting zero, a*x+b, gradual",
                               "methods": {"Baseline": "none",
                                           "Grafting (A_g(x) = 0)": "graft50_zero",
                                           "Grafting (A_g(x) = a x + b)": "graft50",
                                           "Gradually grafting": "graft50_gradual"}},
                              _paper000_reads),
    "paper000_table6": Layout({**_PAPER000,
                               "title": "Paper 000 Table 6: versus certified training",
                               "methods": {"Baseline (FAT)": "none",
                                           "Certified robust training": "crown_ibp/none",
                                           "FAT + Grafting (50%)": "graft50"}},
                              _paper000_reads),
    "paper001_table1": Layout({**_PAPER001, "methods": _PAPER001_METHODS,
                               "title": "Paper 001 Table 1: per eps, model and method"},
                              _methods_sweep_reads),
    "paper001_table4": Layout({**_PAPER001, "methods": _PAPER001_METHODS,
                               "title": "Paper 001 Table 4: per eps, model and method"},
                              _methods_sweep_reads),
    "paper001_table5": Layout({**_PAPER001, "methods": _PAPER001_METHODS,
                               "title": "Paper 001 Table 5: per eps, model and method"},
                              _methods_sweep_reads),
    "paper001_table2": Layout({**_PAPER001, "pairs": _PAPER001_PAIRS, "signed": True,
                               "relative": [],
                               "title": "Paper 001 Table 2: method + NBC minus the method alone"},
                              _pairs_sweep_reads),
    "paper001_table6": Layout({**_PAPER001, "pairs": _PAPER001_PAIRS, "signed": True,
                               "relative": ["sa"],
                               "title": "Paper 001 Table 6: method + NBC minus the method alone"},
                              _pairs_sweep_reads),
    "paper001_table7": Layout({**_PAPER001, "pairs": _PAPER001_PAIRS, "signed": True,
                               "relative": ["sa"],
                               "title": "Paper 001 Table 7: method + NBC minus the method alone"},
                              _pairs_sweep_reads),
    "paper001_table8": Layout({**_PAPER001, "eps": "min",
                               "title": "Paper 001 Table 8: close accuracy",
                               "methods": {"TRADES": "trades", "Madry": "madry",
                                           "RS": "relu_stable", "Ours": "nbc",
                                           "Natural": "natural"}},
                              _table8_reads),
    "paper001_table9": Layout({**{k: v for k, v in _PAPER001.items() if k != "dataset"},
                               "eps": "min", "decimals": 2,
                               "title": "Paper 001 Table 9: NBC layer weights gamma[i]",
                               "variants": {"1": "nbc_gamma1", "2^r[i]": "nbc",
                                            "r[i] m[i]": "nbc_gammarm"}},
                              _table9_reads),
    "paper001_table11": Layout({**{k: v for k, v in _PAPER001.items()
                                   if k not in ("dataset", "models")},
                                "model": None, "eps": "min",
                                "title": "Paper 001 Table 11: NBC weight beta",
                                "variants": {"0.0": "nbc_beta0", "1.0": "nbc_beta1",
                                             "3.0": "nbc_beta3", "6.0": "nbc_beta6",
                                             "9.0": "nbc_beta9"}},
                               _table11_reads),
    "paper002_table2": Layout({**_PAPER002, "dataset": None, "decimals": 3, "signed": False,
                               "title": "Paper 002 Table 2: accuracy and FGSM robustness"},
                              _one_dataset_reads),
    "paper002_table3": Layout({**_PAPER002, "dataset": None, "decimals": 3, "signed": False,
                               "title": "Paper 002 Table 3: accuracy and FGSM robustness"},
                              _one_dataset_reads),
    "paper002_table4": Layout({**_PAPER002, "dataset": None, "decimals": 0, "signed": False,
                               "title": "Paper 002 Table 4: hidden neurons and weights"},
                              _one_dataset_reads),
    "paper002_table5": Layout({**_PAPER002, "datasets": None, "verifiers": None, "decimals": 0,
                               "signed": False,
                               "title": "Paper 002 Table 5: instances solved within the "
                                        "timeout"},
                              _solved_reads),
    "paper002_table6": Layout({**_PAPER002, "datasets": None, "verifier": None, "decimals": 2,
                               "signed": False,
                               "title": "Paper 002 Table 6: mean time (s) of the incomplete "
                                        "verifier"},
                              _time_reads),
}


# --- figures ----------------------------------------------------------------------------------

def _by_model_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    verifier = pick_verifier(campaign, options["verifier"])
    return campaign.built([Read(key, verifier, pick_eps(campaign, options["eps"], key[0]))
                           for _, key in pick_model_ids(campaign, options["models"])],
                          named(WHOLE if options["models"] is not None else NO_MODEL,
                                eps=options["eps"], verifier=options["verifier"]))


def lower_bounds_cells(campaign: Campaign, options: dict):
    """The verifier, each (dataset, arch, train) of the campaign and the transforms shown."""
    verifier = pick_verifier(campaign, options["verifier"])
    groups = list(dict.fromkeys(key[:3] for key in campaign.models()))
    transforms = options["transforms"] or list(dict.fromkeys(k[3] for k in campaign.models()))
    return verifier, groups, transforms


def _lower_bounds_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    verifier, groups, transforms = lower_bounds_cells(campaign, options)
    return campaign.built([Read((*group, transform), verifier,
                                pick_eps(campaign, options["eps"], group[0]))
                           for transform in transforms for group in groups],
                          named(TRANSFORM if options["transforms"] else NO_MODEL,
                                verifier=options["verifier"]))


def _grafting_masks_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    if options["model"] is None:
        return []
    return campaign.built([Read(parse_model_id(options["model"]))])


def _score_scatter_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    if options["base"] is None:
        return []
    base = parse_model_id(options["base"], parts=3)
    if not any(key[:3] == base for key in campaign.models()):
        raise VfbenchError(f"base: no model of the campaign is made from {options['base']}")
    return campaign.built([Read((*base, str(name)))
                           for _, name in labelled(options["transforms"] or [])])


def normalised_scores_cells(campaign: Campaign, options: dict):
    """The verifier, the datasets (one panel each) and (label, spec) per method."""
    return (pick_verifier(campaign, options["verifier"]),
            options["datasets"] or campaign.datasets(), labelled(options["methods"]))


def _normalised_scores_reads(campaign: BuiltCampaign, options: dict) -> list[Read]:
    verifier, datasets, methods = normalised_scores_cells(campaign, options)
    unbuilt = [d for d in datasets if d not in campaign.datasets()]
    if unbuilt:
        raise VfbenchError(f"datasets: no model on dataset {unbuilt[0]!r}")
    return campaign.built(
        [Read((dataset, arch, *row_spec(spec, transform=options["transform"])), verifier,
              float(eps))
         for dataset in datasets for d, arch in campaign.model_pairs() if d == dataset
         for eps in options["eps"] or campaign.eps_values() for _, spec in methods],
        named(METHOD, eps=options["eps"], verifier=options["verifier"]))


PLOT_LAYOUTS: dict[str, Layout] = {
    "unstable_by_site": Layout({"models": None, "verifier": None, "eps": "min", "bins": 20},
                               _by_model_reads),
    "lower_bounds": Layout({"transforms": None, "verifier": None, "eps": "min"},
                           _lower_bounds_reads),
    "time_threshold": Layout({"models": None, "verifier": None, "eps": "min", "points": 100},
                             _by_model_reads),
    "grafting_masks": Layout({"model": None}, _grafting_masks_reads),
    "score_scatter": Layout({"base": None, "transforms": None, "max_points": 20000},
                            _score_scatter_reads),
    "normalised_scores": Layout({"methods": {"TRADES": "trades", "Madry": "madry",
                                             "ReLU Stable": "relu_stable", "NBC": "nbc"},
                                 "transform": "none", "verifier": None, "eps": None,
                                 "datasets": None},
                                _normalised_scores_reads),
    "cactus": Layout({}, lambda campaign, options: []),
}

DEFAULT_PLOTS = ["time_threshold", "lower_bounds", "unstable_by_site", "cactus"]


# --- a campaign's blocks ----------------------------------------------------------------------

def resolve_entries(block, layouts: Mapping[str, Layout], where: str
                    ) -> dict[str, tuple[str, dict]]:
    """A config block (a list of names, or {name: options or null}) as {name: (layout, options)}.
    ``options.layout`` picks the layout (default: the name), so one layout can be built twice."""
    entries = {str(n): {} for n in block} if not isinstance(block, Mapping) else \
        {str(n): o for n, o in block.items()}
    resolved = {}
    for name, options in entries.items():
        try:
            resolved[name] = resolve_entry(name, options, layouts)
        except VfbenchError as exc:
            raise VfbenchError(f"{where}.{name}: {exc}") from exc
    return resolved


def resolve_entry(name: str, options: Mapping | None, layouts: Mapping[str, Layout]
                  ) -> tuple[str, dict]:
    options = dict(options or {})
    layout = str(options.pop("layout", name))
    if layout not in layouts:
        raise VfbenchError(f"unknown layout {layout!r}; known: {sorted(layouts)}")
    defaults = layouts[layout].defaults
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise VfbenchError(f"unknown options {unknown} for layout {layout!r}; "
                           f"allowed: {sorted(defaults)}")
    return layout, {**defaults, **options}


def table_entries(config: Mapping) -> dict[str, tuple[str, dict]]:
    """The tables a campaign asks for (config key ``tables``; missing or null: the summary only;
    an empty block: none)."""
    block = config.get("tables")
    return resolve_entries(["summary"] if block is None else block, TABLE_LAYOUTS, "tables")


def plot_entries(config: Mapping) -> dict[str, tuple[str, dict]]:
    """The figures a campaign asks for (config key ``plots``; missing or null: ``DEFAULT_PLOTS``;
    an empty block: none)."""
    block = config.get("plots")
    return resolve_entries(DEFAULT_PLOTS if block is None else block, PLOT_LAYOUTS, "plots")


def check_entry(name: str, entry: Mapping | None, layouts: Mapping[str, Layout],
                campaign: BuiltCampaign) -> None:
    """For ``vfbench.config.check_campaign``: the layout exists, its options are known, and the
    campaign builds what it names."""
    layout, options = resolve_entry(name, entry, layouts)
    layouts[layout].reads(campaign, options)
