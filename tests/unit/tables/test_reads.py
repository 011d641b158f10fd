"""Each layout reads only what its declaration (vfbench.report.entries) says it reads: every table
and figure of every shipped campaign, built on results that hold one record for each (model,
verifier, eps) the campaign verifies, finds records and evaluate metrics only in the cells its
start-up check has accepted (a cell the campaign does not build finds none and shows "-")."""

from pathlib import Path

import pandas as pd
import pytest

from vfbench.config import load_config, same_eps
from vfbench.report.entries import PLOT_LAYOUTS, TABLE_LAYOUTS, plot_entries, table_entries
from vfbench.report.layouts import TABLES
from vfbench.report.plots import PLOTS
from vfbench.report.selection import BuiltCampaign, Read
from vfbench.results import CampaignResults

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGNS = [ROOT / "config" / "config.yaml",
             *sorted((ROOT / "config" / "campaigns").glob("*.yaml"))]


class LoggedDict(dict):
    """A dict that notes every key found in it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.found = set()

    def get(self, key, default=None):
        if key in self:
            self.found.add(key)
        return super().get(key, default)


class LoggedResults(CampaignResults):
    """CampaignResults that notes every (model, verifier, eps) whose records a layout finds."""

    def records_for(self, key, verifier, eps):
        records = super().records_for(key, verifier, eps)
        if records is not None:
            self.found.append((key, verifier, float(eps)))
        return records


def record(verifier: str, eps: float) -> dict:
    return {"image": 0, "label": 1, "pred": 1, "eps": eps, "verifier": verifier,
            "status": "verified", "time_s": 1.0, "margin_lb": 0.5, "n_relu": 10,
            "n_unstable": 1, "unstable_by_site": {"body.1": 1}, "domains": 1, "depth": 0,
            "counterexample": None, "error": None}


def every_output(config: dict) -> LoggedResults:
    """The results of a campaign in which every model, verifier and eps ran."""
    built = BuiltCampaign(config)
    results = LoggedResults(config=config)
    results.found = []
    results.evals = LoggedDict({key: {"sa": 0.5, "ra": {}} for key in built.models()})
    for key in built.models():
        results.add_model(key)
        for verifier in built.verifiers(key):
            results.records[(key, verifier)] = pd.DataFrame(
                [record(verifier, eps) for eps in built.eps_values(key)])
    return results


def declared(reads: list[Read], key, verifier, eps) -> bool:
    return any(r.model == key and r.verifier == verifier and same_eps(r.eps, eps)
               for r in reads if r.verifier is not None)


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.stem)
def test_every_layout_reads_only_its_declared_cells(path):
    config = load_config(path)
    built = BuiltCampaign(config)
    results = every_output(config)
    for entries, layouts, build in ((table_entries(config), TABLE_LAYOUTS, TABLES),
                                    (plot_entries(config), PLOT_LAYOUTS, PLOTS)):
        for name, (layout, options) in entries.items():
            if layout == "summary" and path.stem != "config":
                continue  # the same on every campaign, and slow on the large ones
            results.found, results.evals.found = [], set()
            reads = layouts[layout].reads(built, options)
            build[layout](results, options)
            undeclared = [found for found in results.found if not declared(reads, *found)]
            assert not undeclared, f"{path.stem}: {name} reads {undeclared[:3]} undeclared"
            models = {r.model for r in reads}
            assert results.evals.found <= models, \
                f"{path.stem}: {name} reads the metrics of {results.evals.found - models}"


def test_the_check_fails_on_a_layout_that_reads_an_undeclared_cell():
    """The test above can fail: a layout reading one model more than it declares."""
    config = load_config(ROOT / "config" / "config.yaml")
    results = every_output(config)
    reads = TABLE_LAYOUTS["summary"].reads(BuiltCampaign(config), table_entries(config)[
        "summary"][1])
    results.records[(("mnist5k", "net1", "natural", "graft50"), "crown")] = pd.DataFrame(
        [record("crown", 0.02)])
    results.records_for(("mnist5k", "net1", "natural", "graft50"), "crown", 0.02)
    assert results.found and not declared(reads, *results.found[0])
