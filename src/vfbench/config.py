"""Campaign config: validation against the JSON schema (with defaults), cross-reference checks
against the registries, and expansion into the list of models and verification jobs.

The Snakefile, `vfbench plan` and the tests all go through :func:`load_config` /
:func:`validate_config`, so a config means the same thing everywhere. This module and every
check it runs are light (no torch, scipy, pandas or matplotlib): each registry's names, option
defaults and option checks live in a light module of their own (``vfbench.arch_options``,
``vfbench.train_entry``, ``vfbench.transforms.entries``, ``vfbench.verify.options``,
``vfbench.report.entries``), so reading the DAG costs no torch import.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vfbench.errors import VfbenchError

# Shipped inside the package (package data), so `vfbench plan` works from any install.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


@dataclass(frozen=True)
class ModelSpec:
    """One model of a campaign: the path parts that identify it, plus what varies per model."""

    dataset: str
    arch: str  # the zoo name (vfbench.models.MODELS)
    train: str
    transform: str
    eps: tuple[float, ...]
    images: int  # how many images it is verified on: the first of its dataset's specs
    arch_options: tuple[tuple[str, Any], ...] = ()

    @property
    def arch_part(self) -> str:
        """The ``{arch}`` path part: the zoo name, followed by a hash of the options when the
        entry sets ``arch_options`` (two models differing only in them are two networks)."""
        if not self.arch_options:
            return self.arch
        return f"{self.arch}-{config_hash(dict(self.arch_options))[:8]}"

    @property
    def base_id(self) -> str:
        """``dataset/arch/train``: the base network this model is made from."""
        return f"{self.dataset}/{self.arch_part}/{self.train}"

    @property
    def id(self) -> str:
        return f"{self.base_id}/{self.transform}"


@dataclass(frozen=True)
class VerifierSpec:
    """One verifier of a campaign, resolved once: every option of its method filled in (the
    campaign's ``seed`` and ``unstable_bound`` included), its timeout and architectures."""

    name: str
    method: str
    options: dict
    timeout_s: float
    only_arch: tuple[str, ...] = ()
    only_dataset: tuple[str, ...] = ()
    images: int | None = None  # at most this many of each model's images (None: all of them)

    def runs_on(self, model: ModelSpec) -> bool:
        """Whether this verifier verifies ``model`` (its ``only_arch`` / ``only_dataset``)."""
        return ((not self.only_arch or model.arch in self.only_arch)
                and (not self.only_dataset or model.dataset in self.only_dataset))

    @property
    def entry(self) -> dict:
        """What a verification job receives: the method with its resolved options."""
        return {"method": self.method, **self.options}


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:12]


EPS_RTOL = 1e-6


def same_eps(a: float, b: float) -> bool:
    """Eps values compare equal across JSON keys, parquet floats and 2/255-style configs."""
    return math.isclose(float(a), float(b), rel_tol=EPS_RTOL)


def unique_eps(values) -> list[float]:
    """The values as floats, in order, each eps once (``same_eps``)."""
    unique: list[float] = []
    for eps in values:
        if not any(same_eps(eps, seen) for seen in unique):
            unique.append(float(eps))
    return unique


def parse_model_id(text: str, parts: int = 4) -> tuple[str, ...]:
    """``"dataset/arch/train/transform"`` (``ModelSpec.id``; or the first ``parts`` of it) as a
    tuple."""
    fields = str(text).strip("/").split("/")
    if len(fields) != parts or not all(fields):
        raise VfbenchError(f"model id {text!r}: expected {parts} parts "
                           f"'dataset/arch/train{'/transform' if parts == 4 else ''}'")
    return tuple(fields)


def load_config(path: str | Path) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise VfbenchError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise VfbenchError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise VfbenchError(f"{path}: a config must be a mapping at the top level")
    return validate_config(config, source=str(path))


def validate_schema(config: dict, source: str = "config") -> dict:
    """Check ``config`` against the JSON schema in place, filling defaults."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as exc:
        # snakemake's message buries the jsonschema one; surface the useful lines
        raise VfbenchError(f"{source}: invalid config: {_schema_message(exc)}") from exc
    return config


def _schema_message(exc: Exception) -> str:
    """The useful lines of snakemake's schema error, after the entry they are about
    (``On instance['models'][0]['images']`` -> ``models[0].images: ``)."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("Failed validating", "On instance", "{", "}"))]
    message = " | ".join(keep[:6]) or text
    where = re.search(r"On instance((?:\[[^\]]*\])+)", text)
    if where is None:
        return message
    parts = re.findall(r"\[('([^']*)'|\d+)\]", where.group(1))
    entry = "".join(f".{name}" if name else f"[{index}]" for index, name in parts).lstrip(".")
    return f"{entry}: {message}"


def validate_config(config: dict, source: str = "config") -> dict:
    """Schema (with defaults) then the cross-references the schema cannot express."""
    validate_schema(config, source)
    check_campaign(config, source)
    return config


def check_campaign(config: dict, source: str = "config") -> None:
    """Every name a campaign uses must exist: datasets, architectures and their options,
    train/transform entries, losses, transformation methods, verifiers and their options, table
    and figure layouts and every model, verifier and eps they read. Each registry checks its own
    options (light modules, no torch)."""
    from vfbench.arch_options import check_arch_options
    from vfbench.data import check_data_entry
    from vfbench.report.entries import PLOT_LAYOUTS, TABLE_LAYOUTS, check_entry
    from vfbench.report.selection import BuiltCampaign
    from vfbench.train_entry import resolve_train_entry
    from vfbench.transforms import resolve_transform_entry

    def fail(where: str, message: str) -> None:
        raise VfbenchError(f"{source}: {where}: {message}")

    for name, entry in config["data"].items():
        _wrap(fail, f"data.{name}", check_data_entry, name, entry)
    for name, entry in config["train"].items():
        _wrap(fail, f"train.{name}", resolve_train_entry, entry)
    for name, entry in config["transform"].items():
        _wrap(fail, f"transform.{name}", resolve_transform_entry, entry)
    for name in config["verify"]["verifiers"]:
        _wrap(fail, f"verify.verifiers.{name}", verifier_spec, config, name)

    for i, item in enumerate(config["models"]):
        where = f"models[{i}]"
        if item["dataset"] not in config["data"]:
            fail(where, f"unknown dataset {item['dataset']!r}; the config's data block has "
                        f"{sorted(config['data'])}")
        for arch in _as_list(item["arch"]):
            _wrap(fail, where, check_arch_options, arch, item.get("arch_options"))
        for key, block in (("train", "train"), ("transform", "transform")):
            for short in _as_list(item.get(key, ["none"])):
                if short not in config[block]:
                    fail(where, f"unknown {key} {short!r}; the config's {block} block has "
                                f"{sorted(config[block])}")

    campaign = BuiltCampaign(config)
    for block, layouts in (("tables", TABLE_LAYOUTS), ("plots", PLOT_LAYOUTS)):
        for name, entry in config[block].items():
            _wrap(fail, f"{block}.{name}", check_entry, name, entry, layouts, campaign)


def _wrap(fail, where, fn, *args):
    try:
        fn(*args)
    except VfbenchError as exc:
        fail(where, str(exc))


def expand_models(config: dict) -> list[ModelSpec]:
    """The campaign's models, in config order, without duplicates."""
    seen: dict[str, ModelSpec] = {}
    default_eps = tuple(config["verify"]["eps"])
    for item in config["models"]:
        eps = tuple(item.get("eps") or default_eps)
        options = tuple(sorted((item.get("arch_options") or {}).items()))
        images = item.get("images", config["verify"]["images"])
        for arch in _as_list(item["arch"]):
            for train in _as_list(item["train"]):
                for transform in _as_list(item.get("transform", ["none"])):
                    spec = ModelSpec(item["dataset"], arch, train, transform, eps, images,
                                     options)
                    if spec.id in seen and seen[spec.id] != spec:
                        raise VfbenchError(f"models: {spec.id} listed twice with different "
                                           "eps, arch_options or images")
                    seen[spec.id] = spec
    return list(seen.values())


def spec_images(models: list[ModelSpec]) -> dict[tuple[str, float], int]:
    """(dataset, eps) -> how many images make_specs selects there: the most any model verified
    at that eps asks for (a model with fewer verifies the first ones; every image selection
    lists its images so that they are that selection's pick of that size). Sorted."""
    images: dict[tuple[str, float], int] = {}
    for m in models:
        for eps in m.eps:
            key = (m.dataset, float(eps))
            images[key] = max(images.get(key, 0), m.images)
    return dict(sorted(images.items()))


@dataclass(frozen=True)
class VerifyRun:
    """One (model, verifier, eps) of a campaign: the first ``images`` images of its dataset's
    specs at ``eps`` (the model's ``images``, at most the verifier's), in shards."""

    model: ModelSpec
    verifier: VerifierSpec
    eps: float
    images: int
    shard_size: int

    @property
    def shards(self) -> int:
        return math.ceil(self.images / self.shard_size)

    def shard_bounds(self, shard: int) -> tuple[int, int]:
        """[start, stop) positions, in the images.csv of the run's specs, of one shard."""
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.images)


def verify_runs(config: dict) -> list[VerifyRun]:
    """Every verification run of a validated config: per model (config order), each verifier
    that runs on it (``only_arch``, ``only_dataset``), each of its eps."""
    verifiers = verifier_specs(config).values()
    size = config["verify"]["shard_size"]
    return [VerifyRun(m, v, float(eps), min(m.images, v.images or m.images), size)
            for m in expand_models(config) for v in verifiers if v.runs_on(m) for eps in m.eps]


def instances_timeout(config: dict, model: ModelSpec,
                      verifiers: dict[str, VerifierSpec] | None = None) -> float:
    """The per-instance timeout of a model's VNN-COMP instances.csv: the longest of the
    verifiers that run on it (the campaign's ``verify.timeout_s`` if none does); ``verifiers``:
    ``verifier_specs(config)``, when already resolved."""
    verifiers = verifier_specs(config) if verifiers is None else verifiers
    timeouts = [v.timeout_s for v in verifiers.values() if v.runs_on(model)]
    return max(timeouts, default=float(config["verify"]["timeout_s"]))


def verifier_spec(config: dict, name: str) -> VerifierSpec:
    """The resolved verifier ``name`` of a schema-validated config: its method's options with
    their defaults (the campaign's ``seed``; ``verify.unstable_bound``, which an entry may not
    set: UNR and Stable% come from one bound method per campaign), its ``timeout`` (default:
    ``verify.timeout_s``), ``images``, ``only_arch`` and ``only_dataset``. A VfbenchError names
    the bad option."""
    from vfbench.arch_options import ARCH_OPTIONS
    from vfbench.verify.options import resolve_verifier_entry

    verify = config["verify"]
    entry = verify["verifiers"][name]
    if "unstable_bound" in entry:
        raise VfbenchError("unstable_bound is the campaign's (verify.unstable_bound: one bound "
                           "method behind every UNR / Stable%), not a verifier's option")
    for arch in entry.get("only_arch", []):
        if arch not in ARCH_OPTIONS:
            raise VfbenchError(f"only_arch: unknown arch {arch!r}; known: {sorted(ARCH_OPTIONS)}")
    for dataset in entry.get("only_dataset", []):
        if dataset not in config["data"]:
            raise VfbenchError(f"only_dataset: unknown dataset {dataset!r}; the config's data "
                               f"block has {sorted(config['data'])}")
    method, options = resolve_verifier_entry(
        {"seed": config["seed"], **entry, "unstable_bound": verify["unstable_bound"]})
    return VerifierSpec(name, method, options, float(entry.get("timeout", verify["timeout_s"])),
                        tuple(entry.get("only_arch", [])), tuple(entry.get("only_dataset", [])),
                        entry.get("images"))


def verifier_specs(config: dict) -> dict[str, VerifierSpec]:
    return {name: verifier_spec(config, name) for name in config["verify"]["verifiers"]}
