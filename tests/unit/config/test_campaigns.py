"""Every campaign in config/campaigns/ validates, expands, and asks its tables and figures only for
models, eps and verifiers it builds (a misspelt short name would otherwise show as a silent "-").
"""

from pathlib import Path

import pytest

from vfbench.config import expand_models, load_config
from vfbench.report.entries import PLOT_LAYOUTS, TABLE_LAYOUTS, resolve_entries
from vfbench.report.selection import BuiltCampaign

CAMPAIGNS = sorted((Path(__file__).resolve().parents[3] / "config" / "campaigns").glob("*.yaml"))


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


def test_tables_and_plots_read_only_what_the_campaign_builds(campaign):
    """What load_config checks (vfbench.report.entries), entry by entry: every table reads
    cells, and each is a model the campaign builds, verified by that verifier at that eps."""
    _, config, _ = campaign
    built = BuiltCampaign(config)
    for block, layouts in (("tables", TABLE_LAYOUTS), ("plots", PLOT_LAYOUTS)):
        for name, (layout, options) in resolve_entries(config[block], layouts, block).items():
            reads = layouts[layout].reads(built, options)
            assert reads or block == "plots", f"table {name} reads nothing"
            for read in reads:
                built.check(read)
