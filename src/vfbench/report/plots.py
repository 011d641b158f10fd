"""The papers' figures, drawn from a campaign's results (matplotlib; PNG + PDF).

A figure is a function ``(results, options) -> Figure`` in ``PLOTS``, declared (options with
defaults, what it reads) in ``vfbench.report.entries.PLOT_LAYOUTS``; the campaign config's
``plots`` block names which to draw, the same way its ``tables`` block names tables. Each figure
carries the campaign's provenance line at its foot and in a JSON sidecar. Figures are plain
``matplotlib.figure.Figure`` objects (no pyplot, so no global state and no display): PNG renders
through Agg, PDF through the pdf backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vfbench import metrics
from vfbench.config import parse_model_id
from vfbench.errors import VfbenchError
from vfbench.report.cells import cell_value
from vfbench.report.entries import lower_bounds_cells, normalised_scores_cells, plot_entries
from vfbench.report.provenance import provenance_line, write_each, write_with_sidecar
from vfbench.report.selection import (
    labelled,
    pick_eps,
    pick_model_ids,
    pick_verifier,
    row_spec,
)
from vfbench.results import CampaignResults


def _records_by_model(results: CampaignResults, options: dict,
                      verifier: str) -> list[tuple[str, pd.DataFrame]]:
    """(label, records) of the ``models`` option ({label: "dataset/arch/train/transform"} or a
    list; default every model) at the ``eps`` option, for the models that have records."""
    found = []
    for label, key in pick_model_ids(results, options["models"]):
        records = results.records_for(key, verifier, pick_eps(results, options["eps"], key[0]))
        if records is not None:
            found.append((label, records))
    return found


def _subplots(rows: int, cols: int, width: float, height: float):
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, cols, squeeze=False)


def _grid(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this campaign", ha="center", va="center",
            transform=ax.transAxes)
    ax.set_axis_off()


def unstable_by_site(results: CampaignResults, options: dict) -> Figure:
    """Paper 000 Fig. 3: per layer (and overall) how often neurons are unstable, one histogram per
    model. When every record lists the unstable neurons' indices per site: x = number of images
    for which a neuron is unstable, y = number of neurons (the paper's axes). When records hold
    per-site counts: x = unstable neurons of the layer in one image, y = number of images."""
    verifier = pick_verifier(results, options["verifier"])
    found = [(label, records, metrics.neuron_instability(records))
             for label, records in _records_by_model(results, options, verifier)]
    per_neuron = bool(found) and all(by_neuron is not None for _, _, by_neuron in found)
    per_model = []
    for label, records, by_neuron in found:
        if per_neuron:
            counts = dict(by_neuron)
            overall = np.concatenate(list(counts.values())) if counts else np.array([])
        else:
            counts = {site: np.array(v)
                      for site, v in metrics.unstable_counts_by_site(records).items()}
            overall = pd.to_numeric(records["n_unstable"], errors="coerce").dropna().to_numpy()
        if counts:
            counts["overall"] = overall
        per_model.append((label, counts))
    sites = list(dict.fromkeys(s for _, counts in per_model for s in counts))
    rows, cols = _grid(max(len(sites), 1))
    fig, axes = _subplots(rows, cols, 4 * cols, 3 * rows)
    for ax in axes.flat[len(sites):]:
        ax.set_axis_off()
    if not sites:
        _no_data(axes.flat[0], "unstable_by_site records")
    for ax, site in zip(axes.flat, sites, strict=False):
        top = max((int(c[site].max()) for _, c in per_model if site in c and c[site].size),
                  default=1)
        # integer data: one bin per value centred on it, unless that is more than ``bins``
        bins = np.arange(-0.5, top + 1.0) if top + 1 <= options["bins"] else \
            np.linspace(-0.5, top + 0.5, options["bins"] + 1)
        for label, counts in per_model:
            if site in counts:
                ax.hist(counts[site], bins=bins, histtype="step", linewidth=1.5, label=label)
        ax.set_title(site)
        ax.set_xlabel("unstable images" if per_neuron else "unstable neurons per image")
        ax.set_ylabel("neurons" if per_neuron else "images")
    if per_model and sites:
        axes.flat[0].legend(fontsize="small")
    fig.suptitle(f"Unstable neurons per layer ({verifier} records, "
                 f"{results.config.get('verify', {}).get('unstable_bound')} bounds)")
    return fig


def lower_bounds(results: CampaignResults, options: dict) -> Figure:
    """Paper 000 Fig. 4: the verifier's lower bound on the margin, averaged over images, per model
    (dataset/arch/train) and transform; symlog axis because vacuous bounds are very negative."""
    verifier, groups, transforms = lower_bounds_cells(results, options)
    fig, axes = _subplots(1, 1, max(5.0, 1.2 * len(groups) * len(transforms)), 4)
    ax = axes[0, 0]
    width = 0.8 / max(len(transforms), 1)
    drawn = False
    for i, transform in enumerate(transforms):
        values = []
        for dataset, arch, train in groups:
            eps = pick_eps(results, options["eps"], dataset)
            values.append(cell_value(results, (dataset, arch, train, transform), verifier, eps,
                                     lambda c: None if c.records is None
                                     else metrics.mean_lower_bound(c.records)))
        xs = [g + i * width for g, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        if ys:
            bars = ax.bar(xs, ys, width=width, label=transform)
            ax.bar_label(bars, fmt="%.3g", fontsize="x-small")
            drawn = True
    if not drawn:
        _no_data(ax, "margin lower bounds")
        return fig
    ax.set_yscale("symlog")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels(["/".join(g) for g in groups], rotation=20, ha="right")
    ax.set_ylabel(f"mean lower bound of the margin ({verifier})")
    ax.legend(title="transform", fontsize="small")
    return fig


def time_threshold(results: CampaignResults, options: dict) -> Figure:
    """Paper 000 Fig. A9: VA (%) as a function of the per-image time threshold."""
    verifier = pick_verifier(results, options["verifier"])
    fig, axes = _subplots(1, 1, 6, 4)
    ax = axes[0, 0]
    models = _records_by_model(results, options, verifier)
    if not models:
        _no_data(ax, "verification records")
        return fig
    longest = max(float(pd.to_numeric(r["time_s"], errors="coerce").max()) for _, r in models)
    limit = results.timeout(verifier) or longest
    grid = np.linspace(0.0, max(limit, longest, 1e-6), int(options["points"]))
    for label, records in models:
        # every recorded time is a step of the curve; the grid only fills in between
        times = pd.to_numeric(records["time_s"], errors="coerce").dropna().to_numpy()
        thresholds = np.union1d(grid, times)
        ax.step(thresholds, metrics.verified_within(records, thresholds), where="post",
                label=label)
    ax.set_xlabel("time threshold per image (s)")
    ax.set_ylabel("VA (%)")
    ax.set_title(f"Verified accuracy within a time threshold ({verifier})")
    ax.legend(fontsize="small")
    return fig


def cactus(results: CampaignResults, options: dict) -> Figure:
    """VNN-COMP's cactus plot over the campaign: per verifier, instances (every model, image and
    eps it ran on) solved within a time, log time axis."""
    from vfbench.cactus import draw_cactus

    fig, axes = _subplots(1, 1, 6, 4)
    ax = axes[0, 0]
    series: dict[str, tuple[list[str], list[float]]] = {}
    for (_, verifier), frame in sorted(results.records.items(), key=lambda kv: kv[0][1]):
        statuses, times = series.setdefault(verifier, ([], []))
        statuses += frame["status"].tolist()
        times += pd.to_numeric(frame["time_s"], errors="coerce").fillna(np.inf).tolist()
    if not series:
        _no_data(ax, "verification records")
        return fig
    timeouts = [results.timeout(v) for v in series if results.timeout(v)]
    draw_cactus(ax, series, max(timeouts) if timeouts else None)
    ax.set_title("Instances solved within a time (all models, images, eps)")
    return fig


def _mask_image(mask: np.ndarray, shape: list[int]) -> np.ndarray:
    """A site's mask as one 2-D image: channels of a (C, H, W) site tiled in a grid, a flat site
    folded into a near-square."""
    if len(shape) == 3:
        c, h, w = shape
        rows, cols = _grid(c)
        tiles = np.full((rows * (h + 1), cols * (w + 1)), np.nan)
        for k, plane in enumerate(mask.reshape(c, h, w)):
            r, q = divmod(k, cols)
            tiles[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = plane
        return tiles
    side = math.ceil(math.sqrt(mask.size))
    padded = np.full(side * side, np.nan)
    padded[:mask.size] = mask
    return padded.reshape(side, side)


def _report_sites(report: Mapping, where: str) -> dict[str, dict]:
    """The per-site fields read from a transform's report.json (vfbench.transforms.report):
    ``sites: {name: {shape, mask, slope, intercept, n_grafted, a, b}}`` -- ``mask`` 0/1 and
    ``slope`` / ``intercept`` flat lists over the site's neurons, ``a`` and ``b`` summary
    statistics ({mean, std, ...}) of the grafted neurons' slopes and intercepts."""
    sites = report.get("sites")
    if not isinstance(sites, Mapping):
        raise VfbenchError(f"{where}: report.json has no 'sites' mapping")
    out = {}
    for name, site in sites.items():
        missing = [f for f in ("shape", "mask") if f not in site]
        if missing:
            raise VfbenchError(f"{where}: report.json site {name!r} lacks {missing}")
        mask = np.asarray(site["mask"], dtype=float).reshape(-1)
        if mask.size != int(np.prod(site["shape"])):
            raise VfbenchError(f"{where}: report.json site {name!r}: mask does not have the "
                               f"{int(np.prod(site['shape']))} values of shape {site['shape']}")
        out[name] = {**site, "shape": [int(s) for s in site["shape"]], "mask": mask}
    return out


def _draw_slopes(ax, site: dict) -> None:
    """Intercept over slope of a site's grafted neurons: every neuron when the report lists the
    values, else the mean with one standard deviation."""
    grafted = site["mask"] > 0.5
    if site.get("slope") is not None and site.get("intercept") is not None:
        ax.scatter(np.asarray(site["slope"], dtype=float)[grafted],
                   np.asarray(site["intercept"], dtype=float)[grafted], s=4, alpha=0.5)
    elif (site.get("a") or {}).get("mean") is not None:
        a, b = site["a"], site["b"]
        ax.errorbar([a["mean"]], [b["mean"]], xerr=[a["std"]], yerr=[b["std"]], fmt="o")


def grafting_masks(results: CampaignResults, options: dict) -> Figure:
    """Paper 000 Fig. 7: per layer, the learned (slope a, intercept b) of the grafted neurons
    (top) and the grafting mask, bright = grafted (bottom)."""
    if options["model"] is not None:
        key = parse_model_id(options["model"])
    else:
        key = next((k for k, r in results.reports.items()
                    if any(s.get("n_grafted") for s in (r.get("sites") or {}).values())), None)
    if key is None or key not in results.reports:
        fig, axes = _subplots(1, 1, 5, 3)
        _no_data(axes[0, 0], "transform report with grafted neurons")
        return fig
    sites = _report_sites(results.reports[key], "/".join(key))
    fig, axes = _subplots(2, len(sites), 3 * len(sites), 6)
    for col, (name, site) in enumerate(sites.items()):
        top, bottom = axes[0, col], axes[1, col]
        _draw_slopes(top, site)
        top.set_title(f"{name} ({int(site['mask'].sum())}/{site['mask'].size})", fontsize="small")
        top.set_xlabel("slope a")
        top.set_ylabel("intercept b")
        bottom.imshow(_mask_image(site["mask"], site["shape"]), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
        bottom.set_xticks([])
        bottom.set_yticks([])
    fig.suptitle(f"Grafting masks and (a, b): {'/'.join(key)}")
    return fig


# --- paper 000 Figures 2 and 5: r_s over r_u, and the neurons each criterion selected ----------

SCORE_KINDS = ("instability", "significance")  # the keys of a report's ``scores``
QUADRANTS = ("I", "II", "III", "IV")
CRITERION_LABELS = {"decay": r"$\gamma r_u - r_s$, $\gamma$ decays", "neg_rs": r"$-r_s$",
                    "ru_minus_rs": r"$r_u - r_s$", "2ru_minus_rs": r"$2r_u - r_s$",
                    "ru": r"$r_u$", "random": "random"}
_MARKERS = ("o", "^", "*", "D", "s", "v", "P", "X")


def quadrant_counts(r_u: np.ndarray, r_s: np.ndarray) -> dict[str, int]:
    """Neurons per quadrant of paper 000 Fig. 2 (a score of 0.5 or more is high): I insignificant
    and stable, II significant and stable, III significant and unstable, IV insignificant and
    unstable."""
    unstable, significant = np.asarray(r_u) >= 0.5, np.asarray(r_s) >= 0.5
    masks = (~significant & ~unstable, significant & ~unstable, significant & unstable,
             ~significant & unstable)
    return {q: int(m.sum()) for q, m in zip(QUADRANTS, masks, strict=True)}


def _loaded_scores(results: CampaignResults, base: tuple[str, str, str],
                   report: Mapping) -> dict[str, str]:
    """{kind: score id} of the scores a transform report names that are among the loaded score
    files of its base (a score computed in place, 'random' or 'not used' is not)."""
    named = report.get("scores") if isinstance(report.get("scores"), Mapping) else {}
    return {kind: str(named[kind]) for kind in SCORE_KINDS
            if kind in named and (*base, str(named[kind])) in results.scores}


def _scored_reports(results: CampaignResults, base: tuple[str, str, str]
                    ) -> list[tuple[str, dict[str, str]]]:
    """(transform, {kind: score id}) of the base's transforms whose report names a loaded score."""
    found = []
    for key in results.models():
        if key[:3] == base and key in results.reports:
            named = _loaded_scores(results, base, results.reports[key])
            if named:
                found.append((key[3], named))
    return found


def _scatter_base(results: CampaignResults, option) -> tuple[str, str, str] | None:
    """The ``base`` option, else the first model with a report naming both loaded scores."""
    if option is not None:
        return parse_model_id(option, parts=3)
    for key in results.models():
        if key in results.reports and \
                len(_loaded_scores(results, key[:3], results.reports[key])) == len(SCORE_KINDS):
            return key[:3]
    return None


def _flat_scores(results: CampaignResults, base, score_id: str, sites: list[str] | None):
    """(site order, every neuron's normalised score in that order) of one score file."""
    normalised = results.scores[(*base, score_id)].normalised
    order = list(normalised) if sites is None else sites
    if set(order) != set(normalised):
        raise VfbenchError(f"score {score_id} of {'/'.join(base)}: sites {sorted(normalised)} "
                           f"differ from {sorted(order)}")
    return order, np.concatenate([normalised[s].reshape(-1) for s in order])


def _selected(report: Mapping, sites: list[str], where: str) -> np.ndarray:
    """The report's 0/1 masks (1 = selected) as one bool vector in ``sites`` order."""
    masks = _report_sites(report, where)
    if set(masks) != set(sites):
        raise VfbenchError(f"{where}: report sites {sorted(masks)} differ from the score "
                           f"files' {sorted(sites)}")
    return np.concatenate([masks[s]["mask"] for s in sites]) > 0.5


def _subsample(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` of ``n`` indices, the same ones on every run."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _draw_quadrants(ax) -> None:
    ax.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    corners = {"I": (0.02, 0.02, "left", "bottom"), "II": (0.02, 0.98, "left", "top"),
               "III": (0.98, 0.98, "right", "top"), "IV": (0.98, 0.02, "right", "bottom")}
    for label, (x, y, ha, va) in corners.items():
        ax.text(x, y, label, transform=ax.transAxes, ha=ha, va=va, fontsize="large",
                fontweight="bold", zorder=20,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})


def _scatter_panels(results: CampaignResults, base: tuple[str, str, str] | None,
                    option) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(instability id, significance id) -> [(label, transform)] drawn on that panel; {} when
    the base has no scores. A transform's report names its scores; one that names only one kind
    (activation pruning reads no r_u) or none (random grafting, asked for by name) takes the
    other from the base's first report naming both."""
    if base is None:
        return {}
    scored = _scored_reports(results, base)
    defaults = {kind: next((named[kind] for _, named in scored if kind in named), None)
                for kind in SCORE_KINDS}
    defaults |= next((named for _, named in scored if len(named) == len(SCORE_KINDS)), {})
    if None in defaults.values():
        return {}
    if option is None:
        chosen = [(name, name) for name, _ in scored]
    else:
        chosen = [(label, str(name)) for label, name in labelled(option)
                  if (*base, str(name)) in results.reports]
    panels: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for label, name in chosen:
        ids = {**defaults, **_loaded_scores(results, base, results.reports[(*base, name)])}
        panels.setdefault((ids["instability"], ids["significance"]), []).append((label, name))
    return panels or {(defaults["instability"], defaults["significance"]): []}


def _draw_score_panel(ax, results: CampaignResults, base: tuple[str, str, str], ids: tuple,
                      transforms: list[tuple[str, str]], style: dict[str, int],
                      limit: int) -> None:
    """One panel: every neuron (grey, at most ``limit`` drawn), then each transform's selected
    neurons, the largest selection first so that smaller ones stay visible on top of it."""
    u_id, s_id = ids
    sites, r_u = _flat_scores(results, base, u_id, None)
    _, r_s = _flat_scores(results, base, s_id, sites)
    shown = _subsample(r_u.size, limit)
    background = ax.scatter(r_u[shown], r_s[shown], s=3, color="0.7", alpha=0.5, linewidths=0,
                            rasterized=True, label=f"all neurons ({r_u.size})")
    selections = []
    for label, name in transforms:
        report = results.reports[(*base, name)]
        picked = np.flatnonzero(_selected(report, sites, "/".join((*base, name))))
        criterion = str((report.get("selection") or {}).get("criterion", "?"))
        quadrants = "/".join(str(c) for c in quadrant_counts(r_u[picked], r_s[picked]).values())
        selections.append((name, picked, f"{label}: {CRITERION_LABELS.get(criterion, criterion)}"
                                         f", {picked.size} selected (I/II/III/IV {quadrants})"))
    handles = []
    for depth, (name, picked, text) in enumerate(sorted(selections, key=lambda s: -s[1].size)):
        keep = picked[_subsample(picked.size, limit, seed=1 + style[name])]
        handles.append((style[name], ax.scatter(
            r_u[keep], r_s[keep], s=12, marker=_MARKERS[style[name] % len(_MARKERS)],
            color=f"C{style[name] % 10}", linewidths=0, rasterized=True, label=text,
            zorder=3 + depth)))
    _draw_quadrants(ax)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"instability $r_u$ ({u_id})")
    ax.set_ylabel(f"significance $r_s$ ({s_id})")
    everyone = "/".join(str(c) for c in quadrant_counts(r_u, r_s).values())
    drawn = f", {limit} drawn" if r_u.size > limit else ""
    ax.set_title(f"{'/'.join(base)}: {r_u.size} neurons{drawn}\n"
                 f"per quadrant I/II/III/IV {everyone}", fontsize="medium")
    ax.legend(handles=[h for _, h in sorted(handles, key=lambda h: h[0])] + [background],
              fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1), markerscale=2,
              frameon=False)


def score_scatter(results: CampaignResults, options: dict) -> Figure:
    """Paper 000 Figs. 2 and 5: every neuron's normalised significance r_s over its instability
    r_u for one base model (grey), quadrants I-IV at 0.5, and on top the neurons each transform
    selected (mask 1 in its report) at the r_u / r_s of the score files that report names; one
    panel per (instability, significance) pair."""
    base = _scatter_base(results, options["base"])
    panels = _scatter_panels(results, base, options["transforms"])
    style = {name: i for i, name in enumerate(dict.fromkeys(
        name for transforms in panels.values() for _, name in transforms))}
    cols = len(panels) if len(panels) <= 3 else math.ceil(math.sqrt(len(panels)))
    rows = max(1, math.ceil(len(panels) / max(cols, 1)))
    fig, axes = _subplots(rows, max(cols, 1), 6.0 * max(cols, 1), 7.5 * rows)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    if not panels:
        _no_data(axes.flat[0], "instability and significance score files" if base is None
                 else f"instability and significance score files of {'/'.join(base)}")
    for ax, (ids, transforms) in zip(axes.flat, panels.items(), strict=False):
        _draw_score_panel(ax, results, base, ids, transforms, style, int(options["max_points"]))
    return fig


SCORE_METRICS = {"Test Acc": ("sa", False), "UNSAT%": ("va", False),
                 "Stable%": ("stable", False), "Time": ("time_all", True),
                 "Time_U+T": ("time_ut", True), "PGD": ("ra", False)}


def normalised_scores(results: CampaignResults, options: dict) -> Figure:
    """Paper 001 Fig. 2: per dataset, each method's mean normalised score per metric (the best
    value at each model and eps is 100; times by their reciprocal)."""
    verifier, datasets, methods = normalised_scores_cells(results, options)
    fig, axes = _subplots(1, max(len(datasets), 1), 6 * max(len(datasets), 1), 4)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        rows = []
        for arch in dict.fromkeys(a for d, a in results.model_pairs() if d == dataset):
            for eps in options["eps"] or results.eps_values():
                for label, spec in methods:
                    key = (dataset, arch, *row_spec(spec, transform=options["transform"]))
                    rows.append({"arch": arch, "eps": float(eps), "method": label, **{
                        name: cell_value(results, key, verifier, float(eps), column)
                        for name, (column, _) in SCORE_METRICS.items()}})
        scores = metrics.normalised_scores(
            pd.DataFrame(rows, columns=["arch", "eps", "method", *SCORE_METRICS]), "method",
            ["arch", "eps"], {name: lower for name, (_, lower) in SCORE_METRICS.items()})
        if scores.empty:
            _no_data(ax, f"results for {dataset}")
            continue
        width = 0.8 / len(methods)
        for i, (label, _) in enumerate(methods):
            mine = scores[scores["method"] == label].set_index("metric")["score"]
            ax.bar([m + i * width for m in range(len(SCORE_METRICS))],
                   [mine.get(name, np.nan) for name in SCORE_METRICS], width=width, label=label)
        ax.set_xticks([m + 0.4 - width / 2 for m in range(len(SCORE_METRICS))])
        ax.set_xticklabels(list(SCORE_METRICS), rotation=20)
        ax.set_ylim(0, 105)
        ax.set_title(dataset)
        ax.set_ylabel("normalised score (best = 100)")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


PLOTS: dict[str, Callable[[CampaignResults, dict], Figure]] = {
    "unstable_by_site": unstable_by_site,
    "lower_bounds": lower_bounds,
    "time_threshold": time_threshold,
    "grafting_masks": grafting_masks,
    "score_scatter": score_scatter,
    "normalised_scores": normalised_scores,
    "cactus": cactus,
}


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str,
                provenance: Mapping) -> list[Path]:
    """``{name}.png``, ``{name}.pdf`` (provenance line at the foot) and ``{name}.json``."""
    footer = provenance_line(provenance)
    fig.text(0.01, 0.005, footer, fontsize=5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return write_with_sidecar(
        out_dir, name, {suffix: lambda path, kind=suffix[1:]: fig.savefig(path, format=kind,
                                                                          dpi=150)
                        for suffix in (".png", ".pdf")},
        {**provenance, "figure": name, "footer": footer})


def build_plots(results: CampaignResults, out_dir: str | os.PathLike) -> list[Path]:
    """Draw and write every figure the campaign config asks for; return the files written."""
    def write(name, layout, options, provenance):
        return save_figure(PLOTS[layout](results, options), out_dir, name, provenance)
    return write_each(results, plot_entries(results.config), write)
