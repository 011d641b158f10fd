"""A campaign's results, loaded from what the earlier steps wrote: what the tables and figures read.

``load_results`` gathers merged verification parquets, evaluate ``metrics.json``, training
``base.json``, transform ``report.json`` and per-neuron score files (``scores/{id}.npz``) from
explicit lists of (id, path); ``load_campaign_results`` takes those of a campaign from its config
(``vfbench.layout.report_inputs``, the list the tables and plots rules wait for): no path is parsed
for an id. Score files can be large (one value per neuron), so they are read when a figure first
asks for one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vfbench import metrics
from vfbench.config import EPS_RTOL, ModelSpec, expand_models, parse_model_id, unique_eps
from vfbench.errors import VfbenchError
from vfbench.io import read_json

if TYPE_CHECKING:
    from vfbench.transforms.scores import ScoreSet

ModelKey = tuple[str, str, str, str]  # dataset, arch, train, transform
ScoreKey = tuple[str, str, str, str]  # dataset, arch, train, score id


# --- score files ---------------------------------------------------------------------------------

class ScoreFiles(Mapping):
    """(dataset, arch, train, score id) -> ``vfbench.transforms.scores.ScoreSet``, each file
    read on first access."""

    def __init__(self, paths: Mapping[ScoreKey, str] | None = None):
        self.paths: dict[ScoreKey, str] = dict(paths or {})
        self._loaded: dict[ScoreKey, ScoreSet] = {}

    def add(self, key: ScoreKey, path: str | os.PathLike) -> None:
        self.paths[key] = str(path)
        self._loaded.pop(key, None)

    def __getitem__(self, key: ScoreKey) -> ScoreSet:
        from vfbench.transforms.scores import load_scores  # torch: only when a figure needs it

        if key not in self._loaded:
            self._loaded[key] = load_scores(self.paths[key])
        return self._loaded[key]

    def __contains__(self, key) -> bool:  # without reading the file
        return key in self.paths

    def __iter__(self) -> Iterator[ScoreKey]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


# --- the loaded results --------------------------------------------------------------------------

@dataclass
class CampaignResults:
    """Everything the tables and plots read. ``records`` maps (model, verifier) to that model's
    verification records over all eps; ``evals`` holds evaluate metrics per model;
    ``train_metrics`` the ``metrics`` of base.json per (dataset, arch, train); ``reports`` the
    transform's report.json per model; ``scores`` the score files per (dataset, arch, train,
    score id), read lazily."""

    config: dict
    records: dict[tuple[ModelKey, str], pd.DataFrame] = field(default_factory=dict)
    evals: dict[ModelKey, dict] = field(default_factory=dict)
    train_metrics: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    reports: dict[ModelKey, dict] = field(default_factory=dict)
    scores: ScoreFiles = field(default_factory=ScoreFiles)
    inputs: list[str] = field(default_factory=list)
    model_order: list[ModelKey] = field(default_factory=list)
    _slices: dict = field(default_factory=dict, repr=False)

    def add_model(self, key: ModelKey) -> None:
        if key not in self.model_order:
            self.model_order.append(key)

    def models(self) -> list[ModelKey]:
        """Every model any input names, in the order the inputs first named it."""
        return list(self.model_order)

    def model_pairs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((d, a) for d, a, _, _ in self.model_order))

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for d, _, _, _ in self.model_order))

    @cached_property
    def campaign_models(self) -> dict[ModelKey, ModelSpec]:
        """The config's models, as ``vfbench.config`` resolves them (none if it lists none)."""
        if not self.config.get("models"):
            return {}
        return {parse_model_id(m.id): m for m in expand_models(self.config)}

    def verifiers(self, key: ModelKey | None = None) -> list[str]:
        """The configured verifiers (for model ``key``: those whose ``only_arch`` and
        ``only_dataset`` admit it), then any other verifier the records name."""
        entries = self.config.get("verify", {}).get("verifiers", {})
        model = self.campaign_models.get(key) if key else None
        dataset, arch = (model.dataset, model.arch) if model else key[:2] if key else (None, None)
        configured = [name for name, entry in entries.items()
                      if key is None or (arch in ((entry or {}).get("only_arch") or [arch])
                                         and dataset in ((entry or {}).get("only_dataset")
                                                         or [dataset]))]
        recorded = [v for (k, v) in self.records if key is None or k == key]
        return list(dict.fromkeys(configured + recorded))

    def eps_values(self, key: ModelKey | None = None) -> list[float]:
        """The campaign's eps (for ``key``: its models entry's own ``eps`` if it has one), then
        any other eps the records hold."""
        model = self.campaign_models.get(key) if key else None
        values = [float(e) for e in (model.eps if model else
                                     self.config.get("verify", {}).get("eps", []))]
        for (model_key, _), frame in self.records.items():
            if key is None or model_key == key:
                values += [float(e) for e in frame["eps"].unique()]
        return unique_eps(values)

    def records_for(self, key: ModelKey, verifier: str, eps: float) -> pd.DataFrame | None:
        """The records of one (model, verifier, eps), or None when that run is not in the inputs."""
        memo = (key, verifier, float(eps))
        if memo not in self._slices:
            frame = self.records.get((key, verifier))
            chosen = None if frame is None else frame[np.isclose(
                frame["eps"].astype(float), float(eps), rtol=EPS_RTOL, atol=0.0)]
            self._slices[memo] = chosen if chosen is not None and len(chosen) else None
        return self._slices[memo]

    def timeout(self, verifier: str) -> float | None:
        """The verifier's seconds per image (its entry's ``timeout``, else the campaign's)."""
        verify = self.config.get("verify", {})
        entry = verify.get("verifiers", {}).get(verifier, {}) or {}
        value = entry.get("timeout", verify.get("timeout_s"))
        return None if value is None else float(value)

    def pgd_settings(self) -> list[dict]:
        """The distinct PGD settings the evaluate step recorded."""
        settings = [metrics.pgd_settings_of(e) for e in self.evals.values()]
        return [json.loads(s) for s in dict.fromkeys(json.dumps(s, sort_keys=True)
                                                      for s in settings if s)]


def _read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError as exc:
        raise VfbenchError(f"{path}: verification parquet not found") from exc
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise VfbenchError(f"{path}: not a readable parquet ({exc})") from exc


Pairs = Iterable[tuple[str, str | os.PathLike]]


def load_results(config: Mapping, *, verify: Pairs = (), evals: Pairs = (), train: Pairs = (),
                 transform: Pairs = (), scores: Pairs = ()) -> CampaignResults:
    """Gather a campaign's results from explicit (id, path) pairs.

    ``verify``: merged ``eps{eps}.parquet`` files (id ``dataset/arch/train/transform``; one model
    may have many). ``evals``: evaluate ``metrics.json``. ``train``: ``base.json`` (id
    ``dataset/arch/train``; its ``metrics`` are kept). ``transform``: ``report.json``.
    ``scores``: score files (id ``dataset/arch/train/score id``; read when first used).
    """
    results = CampaignResults(config=dict(config))
    collected: dict[tuple[ModelKey, str], list[pd.DataFrame]] = {}
    for model_id, path in verify:
        key = parse_model_id(model_id)
        frame = metrics.check_records(_read_parquet(path), str(path))
        results.add_model(key)
        results.inputs.append(str(path))
        for verifier, part in frame.groupby("verifier", sort=False):
            collected.setdefault((key, str(verifier)), []).append(part)
    results.records = {k: pd.concat(v, ignore_index=True) for k, v in collected.items()}
    for per_model, pairs in ((results.evals, evals), (results.reports, transform)):
        for model_id, path in pairs:
            key = parse_model_id(model_id)
            per_model[key] = read_json(path)
            results.add_model(key)
            results.inputs.append(str(path))
    for model_id, path in train:
        summary = read_json(path)
        results.train_metrics[parse_model_id(model_id, parts=3)] = summary.get("metrics", {})
        results.inputs.append(str(path))
    for score_id, path in scores:
        results.scores.add(parse_model_id(score_id), path)
        results.inputs.append(str(path))
    return results


def load_campaign_results(config: Mapping, folder: str | os.PathLike | None = None
                          ) -> CampaignResults:
    """``load_results`` of a validated campaign config: every file its tables and figures read
    (``vfbench.layout.report_inputs``), under ``folder`` (default: ``results_dir/campaign``)."""
    from vfbench import layout

    folder = Path(folder if folder is not None else layout.campaign_folder(config))
    pairs = {kind: [(ident, folder / path) for ident, path in listed]
             for kind, listed in layout.report_inputs(dict(config)).items()}
    return load_results(config, verify=pairs["verify"], evals=pairs["evaluate"],
                        train=pairs["train"], transform=pairs["transform"],
                        scores=pairs["scores"])

