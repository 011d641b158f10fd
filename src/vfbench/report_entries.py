"""The tables and figures a campaign asks for: every layout's options with their defaults, and
the check of a campaign's ``tables`` / ``plots`` blocks against them.

Light on purpose (no pandas, no matplotlib): the Snakefile lists the report outputs and checks
the entries at start-up. The layouts themselves are ``vfbench.tables.TABLES`` and
``vfbench.plots.PLOTS`` (a test checks each registry names the same layouts as its defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vfbench.errors import VfbenchError

# --- tables: each layout's options with their defaults (short names match the reduced campaigns)

_PAPER000 = {"train": "fat", "models": None, "verifier": None, "eps": "min", "decimals": 2,
             "signed": False}
_PAPER000_METHODS = {
    "Baseline": "none", "SAP (50%)": "sap", "GAP (50%)": "gap", "Hydra (50%)": "hydra",
    "Random Grafting (50%)": "graft_random", "Grafting (50%)": "graft50",
    "Grafting (30%)": "graft30", "Grafting (80%)": "graft80",
}
_PAPER001 = {"dataset": None, "models": None, "transform": "none", "verifier": None, "eps": None,
             "pgd_steps": None, "decimals": 1, "signed": False}
_PAPER001_METHODS = {"T": "trades", "M": "madry", "R": "relu_stable", "O": "nbc"}
_PAPER001_PAIRS = {"T*": ["trades+nbc", "trades"], "M*": ["madry+nbc", "madry"],
                   "R*": ["relu_stable+nbc", "relu_stable"]}
_PAPER002_ROWS = [["SET1", "Baseline", "natural/none"]] + [
    [f"SET{k}", network, spec]
    for k in (1, 2, 3)
    for network, spec in (("Sparse", f"sparse-set{k}/none"), ("WP", f"natural/wp-set{k}"),
                          ("NP", f"sparse-set{k}/np-set{k}"))
]
_PAPER002 = {"bases": {"NET1": "net1", "NET2": "net2"}, "rows": _PAPER002_ROWS, "eps": "min"}

TABLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "summary": {"title": "Campaign summary", "time": "all", "verifiers": None, "eps": None,
                "decimals": 2, "signed": False},
    "paper000_table1": {**_PAPER000, "methods": _PAPER000_METHODS,
                        "title": "Paper 000 Table 1: UNR, VA, SA, RA (%) and Time (s)"},
    "paper000_tableA7": {**_PAPER000, "methods": _PAPER000_METHODS, "eps": "max",
                         "title": "Paper 000 Table A7: larger eps"},
    "paper000_table2": {**_PAPER000, "title": "Paper 000 Table 2: grafting criterion",
                        "methods": {"-r_s": "crit_rs", "r_u - r_s": "crit_ru_rs",
                                    "2 r_u - r_s": "crit_2ru_rs", "r_u": "crit_ru",
                                    "gamma r_u - r_s (gamma 2 -> 0)": "graft50"}},
    "paper000_table3": {**_PAPER000, "title": "Paper 000 Table 3: fine-tuning the weights",
                        "methods": {"Grafting (50%) w. tuning weights": "graft50",
                                    "Grafting (50%) w.o. tuning weights": "graft50_frozen"}},
    "paper000_table4": {**_PAPER000, "title": "Paper 000 Table 4: grafting with regularisers",
                        "methods": {"Grafting (50%)": "graft50",
                                    "+ ReLU stability reg.": "graft50_rs",
                                    "+ l1 reg.": "graft50_l1",
                                    "+ small weight pruning": "graft50_swp",
                                    "+ all": "graft50_all"}},
    "paper000_table5": {**_PAPER000, "title": "Paper 000 Table 5: grafting zero, a*x+b, gradual",
                        "methods": {"Baseline": "none", "Grafting (A_g(x) = 0)": "graft50_zero",
                                    "Grafting (A_g(x) = a x + b)": "graft50",
                                    "Gradually grafting": "graft50_gradual"}},
    "paper000_table6": {**_PAPER000, "title": "Paper 000 Table 6: versus certified training",
                        "methods": {"Baseline (FAT)": "none",
                                    "Certified robust training": "crown_ibp/none",
                                    "FAT + Grafting (50%)": "graft50"}},
    "paper001_table1": {**_PAPER001, "methods": _PAPER001_METHODS,
                        "title": "Paper 001 Table 1: per eps, model and method"},
    "paper001_table4": {**_PAPER001, "methods": _PAPER001_METHODS,
                        "title": "Paper 001 Table 4: per eps, model and method"},
    "paper001_table5": {**_PAPER001, "methods": _PAPER001_METHODS,
                        "title": "Paper 001 Table 5: per eps, model and method"},
    "paper001_table2": {**_PAPER001, "pairs": _PAPER001_PAIRS, "signed": True, "relative": [],
                        "title": "Paper 001 Table 2: method + NBC minus the method alone"},
    "paper001_table6": {**_PAPER001, "pairs": _PAPER001_PAIRS, "signed": True,
                        "relative": ["sa"],
                        "title": "Paper 001 Table 6: method + NBC minus the method alone"},
    "paper001_table7": {**_PAPER001, "pairs": _PAPER001_PAIRS, "signed": True,
                        "relative": ["sa"],
                        "title": "Paper 001 Table 7: method + NBC minus the method alone"},
    "paper001_table8": {**_PAPER001, "eps": "min", "title": "Paper 001 Table 8: close accuracy",
                        "methods": {"TRADES": "trades", "Madry": "madry", "RS": "relu_stable",
                                    "Ours": "nbc", "Natural": "natural"}},
    "paper001_table9": {**{k: v for k, v in _PAPER001.items() if k != "dataset"}, "eps": "min",
                        "decimals": 2, "title": "Paper 001 Table 9: NBC layer weights gamma[i]",
                        "variants": {"1": "nbc_gamma1", "2^r[i]": "nbc",
                                     "r[i] m[i]": "nbc_gammarm"}},
    "paper001_table11": {**{k: v for k, v in _PAPER001.items() if k not in ("dataset", "models")},
                         "model": None, "eps": "min",
                         "title": "Paper 001 Table 11: NBC weight beta",
                         "variants": {"0.0": "nbc_beta0", "1.0": "nbc_beta1",
                                      "3.0": "nbc_beta3", "6.0": "nbc_beta6",
                                      "9.0": "nbc_beta9"}},
    "paper002_table2": {**_PAPER002, "dataset": None, "decimals": 3, "signed": False,
                        "title": "Paper 002 Table 2: accuracy and FGSM robustness"},
    "paper002_table3": {**_PAPER002, "dataset": None, "decimals": 3, "signed": False,
                        "title": "Paper 002 Table 3: accuracy and FGSM robustness"},
    "paper002_table4": {**_PAPER002, "dataset": None, "decimals": 0, "signed": False,
                        "title": "Paper 002 Table 4: hidden neurons and weights"},
    "paper002_table5": {**_PAPER002, "datasets": None, "verifiers": None, "decimals": 0,
                        "signed": False,
                        "title": "Paper 002 Table 5: instances solved within the timeout"},
    "paper002_table6": {**_PAPER002, "datasets": None, "verifier": None, "decimals": 2,
                        "signed": False,
                        "title": "Paper 002 Table 6: mean time (s) of the incomplete verifier"},
}

# --- figures ----------------------------------------------------------------------------------

PLOT_DEFAULTS: dict[str, dict[str, Any]] = {
    "unstable_by_site": {"models": None, "verifier": None, "eps": "min", "bins": 20},
    "lower_bounds": {"transforms": None, "verifier": None, "eps": "min"},
    "time_threshold": {"models": None, "verifier": None, "eps": "min", "points": 100},
    "grafting_masks": {"model": None},
    "score_scatter": {"base": None, "transforms": None, "max_points": 20000},
    "normalised_scores": {"methods": {"TRADES": "trades", "Madry": "madry",
                                      "ReLU Stable": "relu_stable", "NBC": "nbc"},
                          "transform": "none", "verifier": None, "eps": None, "datasets": None},
    "cactus": {},
}

DEFAULT_PLOTS = ["time_threshold", "lower_bounds", "unstable_by_site", "cactus"]


def plot_entries(config: Mapping) -> dict[str, tuple[str, dict]]:
    """The figures a campaign asks for (config key ``plots``; missing or null: ``DEFAULT_PLOTS``;
    an empty block: none)."""
    block = config.get("plots")
    return resolve_entries(DEFAULT_PLOTS if block is None else block, PLOT_DEFAULTS, "plots")


def check_plot_entry(name: str, entry: Mapping | None) -> None:
    """For ``vfbench.config.check_campaign``: the figure exists and its options are known."""
    resolve_entry(name, entry, PLOT_DEFAULTS)


# --- resolving a block -------------------------------------------------------------------------

def resolve_entries(block, defaults: Mapping[str, dict], where: str
                    ) -> dict[str, tuple[str, dict]]:
    """A config block (a list of names, or {name: options or null}) as {name: (layout, options)}.
    ``options.layout`` picks the layout (default: the name), so one layout can be built twice."""
    entries = {str(n): {} for n in block} if not isinstance(block, Mapping) else \
        {str(n): o for n, o in block.items()}
    resolved = {}
    for name, options in entries.items():
        try:
            resolved[name] = resolve_entry(name, options, defaults)
        except VfbenchError as exc:
            raise VfbenchError(f"{where}.{name}: {exc}") from exc
    return resolved


def resolve_entry(name: str, options: Mapping | None, defaults: Mapping[str, dict]
                  ) -> tuple[str, dict]:
    options = dict(options or {})
    layout = str(options.pop("layout", name))
    if layout not in defaults:
        raise VfbenchError(f"unknown layout {layout!r}; known: {sorted(defaults)}")
    unknown = sorted(set(options) - set(defaults[layout]))
    if unknown:
        raise VfbenchError(f"unknown options {unknown} for layout {layout!r}; "
                           f"allowed: {sorted(defaults[layout])}")
    return layout, {**defaults[layout], **options}


def table_entries(config: Mapping) -> dict[str, tuple[str, dict]]:
    """The tables a campaign asks for (config key ``tables``; missing or null: the summary only;
    an empty block: none)."""
    block = config.get("tables")
    return resolve_entries(["summary"] if block is None else block, TABLE_DEFAULTS, "tables")


def check_table_entry(name: str, entry: Mapping | None) -> None:
    """For ``vfbench.config.check_campaign``: the layout exists and its options are known."""
    resolve_entry(name, entry, TABLE_DEFAULTS)
