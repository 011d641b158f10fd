"""Every campaign in config/campaigns/ validates, expands, and asks its tables and figures only for
models, eps and verifiers it builds (a misspelt short name would otherwise show as a silent "-").
"""

import math
from pathlib import Path

import numpy as np
import pytest

from vfbench.config import expand_models, load_config, verifier_specs
from vfbench.report_entries import plot_entries, table_entries
from vfbench.results import parse_model_id
from vfbench.tables import labelled, row_spec

CAMPAIGNS = sorted((Path(__file__).resolve().parents[3] / "config" / "campaigns").glob("*.yaml"))


def _methods(options, key, **spec_kw):
    """(train, transform) of every spec under ``options[key]`` ({label: spec} or, for pairs,
    {label: [spec, spec]})."""
    out = []
    for _, value in labelled(options[key]):
        for spec in (value if isinstance(value, list) else [value]):
            out.append(row_spec(spec, **spec_kw))
    return out


def _eps_of(option, dataset):
    """The eps a table option fixes for ``dataset``; None for 'min' / 'max' / unset."""
    value = option.get(dataset) if isinstance(option, dict) else option
    return None if value in (None, "min", "max") else float(value)


def table_cells(layout: str, o: dict, datasets: list[str]
                ) -> list[tuple[tuple[str, ...], float | None]]:
    """(model key, eps or None) of every cell a table entry reads; [] for the summary.
    ``datasets``: the campaign's, in config order (a layout's default is the first, or all)."""
    if layout.startswith("paper000"):
        groups = [parse_model_id(v, 2) for _, v in labelled(o["models"])]
        specs = _methods(o, "methods", train=o["train"])
    elif layout in ("paper001_table9", "paper001_table11"):
        models = labelled(o["models"]) if layout.endswith("9") else [("", o["model"])]
        groups = [parse_model_id(v, 2) for _, v in models]
        specs = _methods(o, "variants", transform=o["transform"])
    elif layout.startswith("paper001"):
        groups = [(o["dataset"] or datasets[0], arch) for _, arch in labelled(o["models"])]
        key = "pairs" if layout in ("paper001_table2", "paper001_table6", "paper001_table7") \
            else "methods"
        specs = _methods(o, key, transform=o["transform"])
        if o.get("eps") is None or isinstance(o["eps"], list):
            return [((*g, *s), float(e) if e is not None else None)
                    for g in groups for s in specs for e in (o.get("eps") or [None])]
    elif layout.startswith("paper002"):
        if "dataset" in o:
            datasets = [o["dataset"] or datasets[0]]
        elif o["datasets"]:
            datasets = [d for _, d in labelled(o["datasets"])]
        groups = [(d, arch) for d in datasets for _, arch in labelled(o["bases"])]
        specs = [row_spec(spec) for _, _, spec in o["rows"]]
    else:
        return []
    return [((*g, *s), _eps_of(o["eps"], g[0])) for g in groups for s in specs]


def plot_models(options: dict) -> list[str]:
    if options.get("model"):
        return [options["model"]]
    if options.get("base"):  # score_scatter: a base model and transforms of it
        return [f"{options['base']}/{t}" for _, t in labelled(options.get("transforms") or {})]
    return [value for _, value in labelled(options.get("models") or {})]


@pytest.fixture(scope="module", params=CAMPAIGNS, ids=lambda p: p.stem)
def campaign(request):
    config = load_config(request.param)
    return request.param, config, {m.id: m for m in expand_models(config)}


def test_there_are_campaigns():
    assert len(CAMPAIGNS) >= 6


def test_campaign_validates_and_expands(campaign):
    path, config, models = campaign
    assert config["campaign"] == path.stem, "campaign name = file name, so outputs never collide"
    assert models
    used_train = {m.train for m in models.values()}
    used_transform = {m.transform for m in models.values()}
    assert set(config["train"]) == used_train, "every training entry is built"
    assert set(config["transform"]) == used_transform, "every transform entry is built"


def _table_verifiers(options: dict, config: dict) -> list[str]:
    """The verifiers a table entry reads (a `verifier` option: that one, else the first
    configured; `verifiers`: those named); [] for the summary (every one of each model)."""
    if "verifiers" in options:
        return [v for _, v in labelled(options["verifiers"] or {})]
    if "verifier" in options:
        return [options["verifier"] or next(iter(config["verify"]["verifiers"]))]
    return []


def test_tables_read_only_what_the_campaign_builds(campaign):
    _, config, models = campaign
    verifiers = verifier_specs(config)
    for name, (layout, options) in table_entries(config).items():
        named = _table_verifiers(options, config)
        assert set(named) <= set(verifiers), f"table {name}: unknown verifier"
        for key, eps in table_cells(layout, options, list(config["data"])):
            model_id = "/".join(key)
            assert model_id in models, f"table {name} reads {model_id}, which is not built"
            if eps is not None:
                assert np.isclose(models[model_id].eps, eps, rtol=1e-9).any(), \
                    f"table {name} reads {model_id} at eps {eps}, not verified there"
            for verifier in named:  # e.g. a CIFAR-10 table reading the MNIST verifier
                assert verifiers[verifier].runs_on(models[model_id]), \
                    f"table {name} reads {verifier} on {model_id}, which it does not verify"


def test_plots_read_only_what_the_campaign_builds(campaign):
    _, config, models = campaign
    verifiers = verifier_specs(config)
    for name, (_, options) in plot_entries(config).items():
        named = _table_verifiers(options, config)
        for model_id in plot_models(options):
            assert model_id in models, f"plot {name} reads {model_id}, which is not built"
            for verifier in named:
                assert verifiers[verifier].runs_on(models[model_id]), \
                    f"plot {name} reads {verifier} on {model_id}, which it does not verify"


def test_table_cells_catch_a_misspelt_short_name():
    cells = table_cells("paper000_table1", {"models": {"x": "mnist/conv_big"}, "train": "fat",
                                            "methods": {"G": "graft5O"}, "eps": 0.1}, ["mnist"])
    assert cells == [(("mnist", "conv_big", "fat", "graft5O"), 0.1)]
    assert math.isclose(cells[0][1], 0.1)
