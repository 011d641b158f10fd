"""Every figure draws from hand-written results and writes PNG + PDF with its provenance."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from results_files import campaign_config, load_results_from_paths

from vfbench.config import parse_model_id
from vfbench.errors import VfbenchError
from vfbench.io import write_json
from vfbench.report import entries, plots

ROOT = Path(__file__).resolve().parents[3]
CONFIG = {"campaign": "unit",
          "verify": {"eps": [0.02], "timeout_s": 10, "unstable_bound": "crown",
                     "verifiers": {"crown": {"method": "crown"}}},
          "plots": {name: {} for name in plots.PLOTS}}
BASE = "mnist/net1/trades/none"
GRAFT = "mnist/net1/trades/graft50"
NBC = "mnist/net1/nbc/none"


def rec(image, status, time_s, margin, by_site):
    n_unstable = None if by_site is None else sum(
        len(v) if isinstance(v, list) else v for v in by_site.values())
    return {"image": image, "eps": 0.02, "verifier": "crown", "status": status,
            "time_s": time_s, "margin_lb": margin, "n_relu": 48, "n_unstable": n_unstable,
            "unstable_by_site": by_site}


def write_campaign(tmp_path, by_site_as_indices: bool):
    res = tmp_path / "results/unit"
    paths = {"verify": [], "evaluate": [], "train": [], "transform": []}
    rng = np.random.default_rng(0)
    for model, scale in ((BASE, 1.0), (GRAFT, 0.2), (NBC, 0.5)):
        rows = []
        for i in range(6):
            unstable = {"body.1": sorted(rng.choice(32, size=int(20 * scale), replace=False)
                                         .tolist()),
                        "body.3": sorted(rng.choice(16, size=int(8 * scale), replace=False)
                                         .tolist())}
            if not by_site_as_indices:
                unstable = {k: len(v) for k, v in unstable.items()}
            status = "verified" if i < 6 * (1 - scale) + 1 else "timeout"
            rows.append(rec(i, status, 0.5 + i * scale, -10.0 * scale + i, unstable))
        rows.append(rec(6, "misclassified", 0.01, None, None))
        path = res / "verify" / model / "crown/eps0.02.parquet"
        path.parent.mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(path)
        paths["verify"].append(path)
        ev = res / "eval" / model / "metrics.json"
        write_json(ev, {"sa": 0.9 - 0.1 * scale, "ra": {"0.02": 0.5 + 0.1 * scale},
                        "settings": {"pgd": {"steps": 20, "restarts": 1}}})
        paths["evaluate"].append(ev)
    mask1 = np.zeros((2, 4, 4), dtype=int)
    mask1[0, :2] = 1
    report = res / "models" / GRAFT / "report.json"
    write_json(report, {"sites": {
        # as vfbench.transforms.report writes it: every neuron's (a, b), flat
        "body.1": {"n": 32, "n_grafted": 8, "shape": [2, 4, 4], "mask": mask1.ravel().tolist(),
                   "a": {"mean": 0.2, "std": 0.05}, "b": {"mean": 0.0, "std": 0.1},
                   "slope": np.linspace(0.1, 0.3, 32).tolist(),
                   "intercept": np.linspace(-0.1, 0.1, 32).tolist()},
        # statistics only
        "body.3": {"n": 16, "n_grafted": 3, "shape": [16], "mask": [1, 1, 1] + [0] * 13,
                   "a": {"mean": 0.25, "std": 0.02}, "b": {"mean": 0.01, "std": 0.03}},
    }})
    paths["transform"].append(report)
    return paths


@pytest.mark.parametrize("as_indices", [True, False])
def test_every_plot_writes_png_pdf_and_provenance(tmp_path, as_indices):
    paths = write_campaign(tmp_path, as_indices)
    results = load_results_from_paths(CONFIG, **paths)
    written = plots.build_plots(results, tmp_path / "plots")
    names = {p.name for p in written}
    for name in plots.PLOTS:
        assert {f"{name}.png", f"{name}.pdf", f"{name}.json"} <= names
        png = (tmp_path / "plots" / f"{name}.png").read_bytes()
        pdf = (tmp_path / "plots" / f"{name}.pdf").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert pdf[:5] == b"%PDF-"
    sidecar = json.loads((tmp_path / "plots/unstable_by_site.json").read_text())
    assert sidecar["unstable_bound"] == "crown" and sidecar["layout"] == "unstable_by_site"


def test_unstable_by_site_axes_follow_what_records_hold(tmp_path):
    for as_indices, xlabel in ((True, "unstable images"), (False, "unstable neurons per image")):
        results = load_results_from_paths(CONFIG, **write_campaign(
            tmp_path / str(as_indices), as_indices))
        options = entries.PLOT_LAYOUTS["unstable_by_site"].defaults
        fig = plots.PLOTS["unstable_by_site"](results, options)
        titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
        assert set(titled) == {"body.1", "body.3", "overall"}
        assert titled["body.1"].get_xlabel() == xlabel
        assert len(titled["body.1"].patches) == 3  # one histogram per model


def test_lower_bounds_bars_per_transform(tmp_path):
    results = load_results_from_paths(CONFIG, **write_campaign(tmp_path, True))
    fig = plots.PLOTS["lower_bounds"](results, entries.PLOT_LAYOUTS["lower_bounds"].defaults)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    # mean of -10*scale + i over i = 0..5 (the misclassified image has no bound)
    assert heights == sorted(round(-10 * s + 2.5, 6) for s in (1.0, 0.2, 0.5))


def test_grafting_masks_need_shape_and_mask(tmp_path):
    results = load_results_from_paths(CONFIG, **write_campaign(tmp_path, True))
    fig = plots.PLOTS["grafting_masks"](results, entries.PLOT_LAYOUTS["grafting_masks"].defaults)
    titled = {ax.get_title(): ax for ax in fig.axes}
    # every grafted neuron's (a, b) as a point (the first 8 neurons are the grafted ones)
    points = titled["body.1 (8/32)"].collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], np.linspace(0.1, 0.3, 32)[:8])
    results.reports[parse_model_id(GRAFT)]["sites"]["body.3"]["mask"] = [1, 0]
    with pytest.raises(VfbenchError, match="body.3.*16 values"):
        plots.PLOTS["grafting_masks"](results, entries.PLOT_LAYOUTS["grafting_masks"].defaults)


def test_unknown_plot_is_an_error():
    with pytest.raises(VfbenchError, match="plots.pie: unknown layout"):
        entries.plot_entries({"plots": ["pie"]})
    with pytest.raises(VfbenchError, match="unknown options"):
        entries.resolve_entry("time_threshold", {"colour": 1}, entries.PLOT_LAYOUTS)


def test_an_empty_plots_block_asks_for_no_figure():
    assert entries.plot_entries({"plots": {}}) == {}
    assert entries.plot_entries({"plots": []}) == {}
    for config in ({}, {"plots": None}):
        assert list(entries.plot_entries(config)) == entries.DEFAULT_PLOTS


def test_plots_cli(tmp_path):
    """The CLI reads every file the config names (vfbench.layout.report_inputs)."""
    write_campaign(tmp_path, False)
    config = campaign_config(
        {**CONFIG, "plots": {"time_threshold": {}, "a9_nbc": {"layout": "time_threshold",
                                                             "models": [NBC]}}},
        tmp_path / "results", [BASE, GRAFT, NBC],
        {"none": {"method": "none"}, "graft50": {"method": "graft", "selection": "random"}})
    for written in ("models/mnist/net1/trades/base.json", "models/mnist/net1/nbc/base.json",
                    f"models/{BASE}/report.json", f"models/{NBC}/report.json"):
        write_json(tmp_path / "results/unit" / written, {"metrics": {}, "sites": {}})
    cmd = [sys.executable, str(ROOT / "scripts/plots.py"), "--config-json", json.dumps(config),
           "--out-dir", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{n}.{e}" for n in ("a9_nbc", "time_threshold") for e in ("json", "pdf", "png")]
