"""Tests' loader of a campaign's results from plain lists of files written in the results
layout: each file's ids are read back from its place (vfbench.layout.parse). The workflow itself
never parses a path: it passes ids (vfbench.layout.report_inputs)."""

from __future__ import annotations

from pathlib import Path

from vfbench import layout
from vfbench.errors import VfbenchError
from vfbench.results import CampaignResults, load_results


def file_id(path, kind: str) -> str:
    """The id a ``kind`` file (a vfbench.layout.PARSABLE key) belongs to: ``dataset/arch/train``
    for ``train``, with ``/score id`` for ``scores``, else the model id."""
    parts = Path(path).parts
    for start in range(len(parts)):
        try:
            fields = layout.parse(kind, "/".join(parts[start:]))
        except VfbenchError:
            continue
        if kind == "train":
            return layout.BASE.format(**fields)
        if kind == "scores":
            return f"{layout.BASE.format(**fields)}/{fields['score']}"
        return layout.model_id(fields)
    raise VfbenchError(f"{path}: not a {kind} file of the results layout")


def load_results_from_paths(config, *, verify=(), evaluate=(), train=(), transform=(),
                            scores=()) -> CampaignResults:
    def pairs(paths, kind):
        return [(file_id(p, kind), p) for p in paths]
    return load_results(config, verify=pairs(verify, "verify"), evals=pairs(evaluate, "evaluate"),
                        train=pairs(train, "train"), transform=pairs(transform, "transform"),
                        scores=pairs(scores, "scores"))


def campaign_config(config: dict, results_dir, models: list[str], transforms: dict) -> dict:
    """A test's partial ``config`` completed into a validated campaign of ``models`` (model
    ids) with the ``transforms`` entries, its folder ``results_dir/<campaign>``: what the tables
    and plots CLIs read every file from (vfbench.layout.report_inputs)."""
    from vfbench.config import validate_config

    split = [m.split("/") for m in models]
    return validate_config({
        **config, "results_dir": str(results_dir),
        "data": {d: {"source": "download"} for d, _, _, _ in split},
        "train": {t: {"losses": {"natural": 1.0}} for _, _, t, _ in split},
        "transform": transforms,
        "models": [{"dataset": d, "arch": a, "train": t, "transform": x} for d, a, t, x in split],
    })
