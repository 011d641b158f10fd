"""Paper 000 Figs. 2/5 on a tiny real model: real CROWN instability and GAP / SAP significance
scores written as the score rule writes them, real grafting / activation-pruning reports, and the
figure's markers exactly at the selected neurons' (r_u, r_s)."""

import copy

import numpy as np
import pytest
from results_files import load_results_from_paths

from vfbench.data import Dataset
from vfbench.io import write_json
from vfbench.models import build_model, site_names
from vfbench.report.entries import PLOT_LAYOUTS
from vfbench.report.plots import PLOTS, quadrant_counts
from vfbench.transforms import needs_scores, resolve_transform_entry
from vfbench.transforms.methods import TRANSFORMS
from vfbench.transforms.score_specs import parse_score_id
from vfbench.transforms.scores import compute_score, load_scores, save_scores
from vfbench.transforms.selection import SiteLayout, rank_normalise

BASE = ("syn", "cnn_4layer", "natural")
KWARGS = {"input_shape": [1, 8, 8], "num_classes": 3, "mean": [0.5], "std": [0.25],
          "channels": (2, 4), "hidden": (12,)}
ENTRIES = {
    "graft50": {"method": "graft", "ratio": 0.5, "eps": 0.05, "bound": "crown", "images": 16,
                "epochs": 0},
    "crit_ru": {"method": "graft", "ratio": 0.3, "selection": "ru", "eps": 0.05,
                "bound": "crown", "images": 16, "epochs": 0},
    "sap": {"method": "activation_prune", "ratio": 0.25, "significance": "sap", "images": 16,
            "epochs": 0},
}
CONFIG = {"campaign": "unit", "verify": {"eps": [0.05], "verifiers": {}}}


def tiny_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, 48).astype(np.int64)
    return Dataset("syn", x[:32], y[:32], x[32:], y[32:], mean=(0.5,), std=(0.25,),
                   num_classes=3)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A base model's score files and three transform reports in the results layout."""
    root = tmp_path_factory.mktemp("scatter") / "results" / "unit" / "models" / "/".join(BASE)
    dataset = tiny_dataset()
    model = build_model("cnn_4layer", **KWARGS).eval()
    ckpt = {"arch": "cnn_4layer", "arch_kwargs": KWARGS, "config": {"seed": 0}, "metrics": {}}
    score_paths = {}
    for entry in ENTRIES.values():
        for score_id in needs_scores(entry):
            if score_id not in score_paths:
                spec = parse_score_id(score_id)
                score_paths[score_id] = root / "scores" / f"{score_id}.npz"
                save_scores(score_paths[score_id], spec,
                            compute_score(spec, model, dataset, "cpu", 16, 0))
    reports = {}
    for name, entry in ENTRIES.items():
        entry = resolve_transform_entry(entry)
        given = {i: load_scores(score_paths[i]) for i in needs_scores(entry)}
        result = TRANSFORMS[entry["method"]](copy.deepcopy(model), ckpt, dataset, entry, "cpu",
                                             given)
        reports[name] = root / name / "report.json"
        write_json(reports[name], result.report)
    return {"model": model, "scores": score_paths, "reports": reports}


def load(campaign, reports=None, scores=None):
    return load_results_from_paths(
        CONFIG, transform=[campaign["reports"][n] for n in (reports or ENTRIES)],
        scores=list(campaign["scores"].values()) if scores is None else scores)


def expected_r(campaign, score_id) -> np.ndarray:
    """Every neuron's normalised score, recomputed from the file's raw values (model order)."""
    raw = load_scores(campaign["scores"][score_id]).raw
    layout = SiteLayout.from_shapes({n: raw[n].shape for n in site_names(campaign["model"])})
    return rank_normalise(layout.flatten(raw))


def selected(results, name, model) -> np.ndarray:
    sites = results.reports[(*BASE, name)]["sites"]
    return np.flatnonzero(np.concatenate([np.asarray(sites[s]["mask"]).reshape(-1)
                                          for s in site_names(model)]))


def markers(fig) -> dict[str, tuple]:
    """Per marker collection of the figure: its label -> (Axes, offsets)."""
    return {c.get_label(): (ax, c.get_offsets()) for ax in fig.axes for c in ax.collections}


def scatter(results, **options):
    return PLOTS["score_scatter"](results, {**PLOT_LAYOUTS["score_scatter"].defaults, **options})


def same_points(a, b) -> bool:
    """The same (x, y) points, in any order."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and np.allclose(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])


def test_selected_markers_are_the_masks_neurons_at_their_scores(campaign):
    results = load(campaign)
    model = campaign["model"]
    ids = {n: results.reports[(*BASE, n)]["scores"] for n in ENTRIES}
    u_id, gap_id = ids["graft50"]["instability"], ids["graft50"]["significance"]
    assert ids["sap"]["instability"] == "not used"  # activation pruning reads no r_u
    r_u = expected_r(campaign, u_id)
    fig = scatter(results)
    found = markers(fig)
    for name, s_id in (("graft50", gap_id), ("crit_ru", gap_id),
                       ("sap", ids["sap"]["significance"])):
        label = next(k for k in found if k.startswith(f"{name}:"))
        ax, offsets = found[label]
        picked = selected(results, name, model)
        assert picked.size and f"{picked.size} selected" in label
        r_s = expected_r(campaign, s_id)
        assert same_points(offsets, np.column_stack([r_u[picked], r_s[picked]]))
        assert s_id in ax.get_ylabel() and u_id in ax.get_xlabel()
        counts = "/".join(str(c) for c in quadrant_counts(r_u[picked], r_s[picked]).values())
        assert f"I/II/III/IV {counts}" in label
    assert "$\\gamma r_u - r_s$" in next(k for k in found if k.startswith("graft50:"))
    assert "$r_u$" in next(k for k in found if k.startswith("crit_ru:"))
    # one panel per significance score, every neuron in grey on each
    assert len([ax for ax in fig.axes if ax.collections]) == 2
    gap_panel = next(ax for ax in fig.axes if gap_id in ax.get_ylabel())
    background = next(c for c in gap_panel.collections
                      if c.get_label() == f"all neurons ({r_u.size})")
    assert same_points(background.get_offsets(),
                       np.column_stack([r_u, expected_r(campaign, gap_id)]))


def test_options_pick_transforms_and_cap_the_points(campaign):
    results = load(campaign)
    fig = scatter(results, base="/".join(BASE), transforms={"Grafting": "graft50"},
                  max_points=10)
    found = markers(fig)
    labels = [k for k in found if not k.startswith("all neurons")]
    assert len(labels) == 1 and labels[0].startswith("Grafting: ")
    assert all(len(offsets) == 10 for _, offsets in found.values())
    assert "10 drawn" in fig.axes[0].get_title()


def test_quadrants_split_at_one_half():
    counts = quadrant_counts(np.array([0.1, 0.1, 0.9, 0.9, 0.5]),
                             np.array([0.1, 0.9, 0.9, 0.1, 0.2]))
    assert counts == {"I": 1, "II": 1, "III": 1, "IV": 2}


def test_no_scores_gives_the_no_data_panel(campaign):
    for results in (load(campaign, scores=[]), load_results_from_paths(CONFIG)):
        fig = scatter(results)
        assert any("no instability and significance score files" in t.get_text()
                   for ax in fig.axes for t in ax.texts)
        assert not any(ax.collections for ax in fig.axes)


def test_a_score_not_in_the_inputs_is_not_drawn(campaign):
    gap = next(p for i, p in campaign["scores"].items() if i.startswith("gap"))
    results = load(campaign, scores=[gap])  # no instability score: no panel can be drawn
    fig = scatter(results, base="/".join(BASE))
    assert any("score files of syn/cnn_4layer/natural" in t.get_text()
               for ax in fig.axes for t in ax.texts)
    assert not any(ax.collections for ax in fig.axes)
