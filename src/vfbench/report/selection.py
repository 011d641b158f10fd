"""Which models, verifiers and eps a table or figure reads: the option helpers every layout shares.

Light on purpose (no pandas): the same helpers pick the cells when a layout is built from a
campaign's results (``vfbench.results.CampaignResults``) and when its entry is checked at start-up
against what the campaign config builds (``BuiltCampaign``); both answer the ``Campaign``
questions alike.

A row spec is ``"train/transform"``, or a bare name that fills the layout's varying part (the
transform in paper 000's layouts, the training in paper 001's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vfbench.config import expand_models, parse_model_id, same_eps, unique_eps, verifier_specs
from vfbench.errors import VfbenchError

ModelKey = tuple[str, str, str, str]  # dataset, arch, train, transform

# The time columns (vfbench.report.cells.COLUMNS) and the vfbench.metrics.TIME_DEFINITIONS entry
# each averages over.
TIME_COLUMNS = {"time_all": "all", "time_ut": "u+t", "time_000": "paper000"}


class Campaign(Protocol):
    """What the helpers ask of a campaign, loaded (CampaignResults) or configured
    (BuiltCampaign)."""

    def models(self) -> list[ModelKey]: ...
    def model_pairs(self) -> list[tuple[str, str]]: ...
    def datasets(self) -> list[str]: ...
    def verifiers(self, key: ModelKey | None = None) -> list[str]: ...
    def eps_values(self, key: ModelKey | None = None) -> list[float]: ...


@dataclass(frozen=True)
class Read:
    """What one cell reads: a model's outputs, and with ``verifier`` its verification records at
    ``eps``."""

    model: ModelKey
    verifier: str | None = None
    eps: float | None = None


class BuiltCampaign:
    """What a campaign config builds, answering as its CampaignResults will once every output
    exists: what a table or figure entry is checked against at start-up."""

    def __init__(self, config: Mapping):
        self.config = config
        self.specs = {parse_model_id(m.id): m for m in expand_models(config)}
        self.verifier_specs = verifier_specs(config)

    def models(self) -> list[ModelKey]:
        return list(self.specs)

    def model_pairs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys(key[:2] for key in self.specs))

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(key[0] for key in self.specs))

    def verifiers(self, key: ModelKey | None = None) -> list[str]:
        return [name for name, spec in self.verifier_specs.items()
                if key is None or spec.runs_on(self.specs[key])]

    def eps_values(self, key: ModelKey | None = None) -> list[float]:
        if key is not None:
            return unique_eps(self.specs[key].eps)
        return unique_eps([*self.config["verify"]["eps"],
                           *(eps for spec in self.specs.values() for eps in spec.eps)])

    def check(self, read: Read) -> None:
        """A VfbenchError naming what the campaign lacks unless it builds ``read``'s model and,
        for records, runs its verifier on it at its eps."""
        missing = self._lacks(read)
        if missing:
            raise VfbenchError(missing)

    def built(self, reads: list[Read], named: Callable[[Read], Any] = lambda read: read
              ) -> list[Read]:
        """The ``reads`` the campaign builds. What an entry names of a read (``named(read)``;
        default: all of it; None: nothing) must be built in at least one read, else the
        VfbenchError of the first read naming it: a table may show "-" where it crosses a name
        with a campaign model that lacks it, never for a name no model has."""
        built = [read for read in reads if not self._lacks(read)]
        found = {named(read) for read in built}
        for read in reads:
            if named(read) is not None and named(read) not in found:
                self.check(read)
        return built

    def _lacks(self, read: Read) -> str | None:
        model_id = "/".join(read.model)
        if read.model not in self.specs:
            return f"reads {model_id}, which the campaign does not build: " \
                   f"{self._missing(read.model)}"
        if read.verifier is not None and read.verifier not in self.verifiers(read.model):
            configured = self.verifiers()
            why = "no such verifier" if read.verifier not in configured else \
                "its only_arch / only_dataset leave this model out"
            return f"reads verifier {read.verifier!r} on {model_id} ({why}); " \
                   f"verify.verifiers: {configured}"
        if read.eps is not None and read.verifier is not None and \
                not any(same_eps(read.eps, eps) for eps in self.specs[read.model].eps):
            return f"reads {model_id} at eps {read.eps:g}, which the campaign does not verify " \
                   f"it at (eps {list(self.specs[read.model].eps)})"
        return None

    def _missing(self, key: ModelKey) -> str:
        dataset, arch, train, transform = key
        if dataset not in self.datasets():
            return f"no model on dataset {dataset!r} (models on {self.datasets()})"
        if (dataset, arch) not in self.model_pairs():
            archs = [a for d, a in self.model_pairs() if d == dataset]
            return f"no arch {arch!r} on {dataset} (archs there: {archs})"
        if train not in self.config["train"]:
            return f"no train entry {train!r} (train: {sorted(self.config['train'])})"
        if transform not in self.config["transform"]:
            return f"no transform entry {transform!r} (transform: " \
                   f"{sorted(self.config['transform'])})"
        return f"models lists no {arch} on {dataset} trained {train!r} with transform " \
               f"{transform!r}"


def row_spec(value: str, *, train: str | None = None, transform: str = "none") -> tuple[str, str]:
    """``"train/transform"`` as is; a bare name is the transform when ``train`` is given (paper
    000's layouts), else the training (paper 001's, with ``transform``)."""
    parts = str(value).split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    if len(parts) == 1 and parts[0]:
        return (train, parts[0]) if train is not None else (parts[0], transform)
    raise VfbenchError(f"row spec {value!r}: expected 'train/transform' or one short name")


def labelled(option) -> list[tuple[str, Any]]:
    """A {label: value} mapping, or a list whose items are their own labels."""
    if isinstance(option, Mapping):
        return [(str(k), v) for k, v in option.items()]
    return [(str(v), v) for v in option]


def pick_eps(campaign: Campaign, option, dataset: str) -> float:
    """``eps`` option: a number, ``{dataset: number}``, or ``"min"`` / ``"max"`` of the campaign's
    eps values."""
    if isinstance(option, Mapping):
        if dataset not in option:
            raise VfbenchError(f"table option eps: no value for dataset {dataset!r}")
        option = option[dataset]
    if option in ("min", "max"):
        values = campaign.eps_values()
        if not values:
            raise VfbenchError("table option eps: the campaign has no verify.eps")
        return min(values) if option == "min" else max(values)
    try:
        return float(option)
    except (TypeError, ValueError) as exc:
        raise VfbenchError(f"table option eps: {option!r} is not a number, a {{dataset: number}} "
                           "mapping, 'min' or 'max'") from exc


def _given_or_first(option: str | None, known: list[str], none_known: str) -> str:
    if option is not None:
        return str(option)
    if not known:
        raise VfbenchError(none_known)
    return known[0]


def pick_verifier(campaign: Campaign, option: str | None) -> str:
    return _given_or_first(option, campaign.verifiers(),
                           "tables: the campaign names no verifier (verify.verifiers)")


def pick_dataset(campaign: Campaign, option: str | None) -> str:
    return _given_or_first(option, campaign.datasets(), "tables: no results were given")


def pick_models(campaign: Campaign, option,
                specs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(label, dataset, arch) column groups: the ``models`` option ({label: "dataset/arch"} or a
    list), else every (dataset, arch) that has at least one of the rows' (train, transform)."""
    if option is not None:
        return [(label, *parse_model_id(value, parts=2)) for label, value in labelled(option)]
    present = set(campaign.models())
    pairs = [(d, a) for d, a in campaign.model_pairs()
             if any((d, a, t, x) in present for t, x in specs)] or campaign.model_pairs()
    return [(f"{a}, {d}", d, a) for d, a in pairs]


def pick_archs(campaign: Campaign, option, dataset: str) -> list[tuple[str, str]]:
    """(label, arch) of the ``models`` option, else every arch the campaign has on ``dataset``."""
    if option is not None:
        return labelled(option)
    return [(a, a) for d, a in campaign.model_pairs() if d == dataset]


def pick_model_ids(campaign: Campaign, option) -> list[tuple[str, ModelKey]]:
    """(label, model) of the ``models`` option ({label: "dataset/arch/train/transform"} or a
    list), else every model with its id as label."""
    if option is not None:
        return [(label, parse_model_id(value)) for label, value in labelled(option)]
    return [("/".join(key), key) for key in campaign.models()]


def eps_label(eps: float) -> str:
    """0.1 -> "0.1"; 2/255 -> "2/255"."""
    short = f"{eps:g}"
    if len(short) <= 6:
        return short
    k = eps * 255
    return f"{round(k)}/255" if math.isclose(k, round(k), abs_tol=1e-6) else short
