"""Campaign config: validation against the JSON schema (with defaults), cross-reference checks
against the registries, and expansion into the list of models and verification jobs.

The Snakefile, `vfbench plan` and the tests all go through :func:`load_config` /
:func:`validate_config`, so a config means the same thing everywhere. This module and every
check it runs are light (no torch, scipy, pandas or matplotlib): each registry's names, option
defaults and option checks live in a light module of their own (``vfbench.arch_options``,
``vfbench.train_entry``, ``vfbench.transforms.entries``, ``vfbench.verify.options``,
``vfbench.report_entries``), so reading the DAG costs no torch import.
"""

from __future__ import annotations

import hashlib
import json
import math
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


def format_eps(eps: float) -> str:
    """The {eps} path part: the shortest exact decimal (0.02 -> '0.02')."""
    return repr(float(eps))


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
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("Failed validating", "On instance", "{", "}"))]
    return " | ".join(keep[:6]) or text


def validate_config(config: dict, source: str = "config") -> dict:
    """Schema (with defaults) then the cross-references the schema cannot express."""
    validate_schema(config, source)
    check_campaign(config, source)
    return config


def check_campaign(config: dict, source: str = "config") -> None:
    """Every name a campaign uses must exist: datasets, architectures and their options,
    train/transform entries, losses, transformation methods, verifiers and their options, table
    and figure layouts. Each registry checks its own options (light modules, no torch)."""
    from vfbench.arch_options import check_arch_options
    from vfbench.data import check_data_entry
    from vfbench.report_entries import check_plot_entry, check_table_entry
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
    for name, entry in config["tables"].items():
        _wrap(fail, f"tables.{name}", check_table_entry, name, entry)
    for name, entry in config["plots"].items():
        _wrap(fail, f"plots.{name}", check_plot_entry, name, entry)

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
        for arch in _as_list(item["arch"]):
            for train in _as_list(item["train"]):
                for transform in _as_list(item.get("transform", ["none"])):
                    spec = ModelSpec(item["dataset"], arch, train, transform, eps, options)
                    if spec.id in seen and seen[spec.id] != spec:
                        raise VfbenchError(f"models: {spec.id} listed twice with different "
                                           "eps or arch_options")
                    seen[spec.id] = spec
    return list(seen.values())


def n_shards(config: dict) -> int:
    return math.ceil(config["verify"]["images"] / config["verify"]["shard_size"])


def shard_bounds(config: dict, shard: int) -> tuple[int, int]:
    """[start, stop) positions, in the campaign's image list, of one shard."""
    size = config["verify"]["shard_size"]
    return shard * size, min((shard + 1) * size, config["verify"]["images"])


def verifier_spec(config: dict, name: str) -> VerifierSpec:
    """The resolved verifier ``name`` of a schema-validated config: its method's options with
    their defaults (the campaign's ``seed``; ``verify.unstable_bound``, which an entry may not
    set: UNR and Stable% come from one bound method per campaign), its ``timeout`` (default:
    ``verify.timeout_s``) and ``only_arch``. A VfbenchError names the bad option."""
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
    method, options = resolve_verifier_entry(
        {"seed": config["seed"], **entry, "unstable_bound": verify["unstable_bound"]})
    return VerifierSpec(name, method, options, float(entry.get("timeout", verify["timeout_s"])),
                        tuple(entry.get("only_arch", [])))


def verifier_specs(config: dict) -> dict[str, VerifierSpec]:
    return {name: verifier_spec(config, name) for name in config["verify"]["verifiers"]}


def verifiers_for(config: dict, arch: str) -> list[str]:
    return [name for name, entry in config["verify"]["verifiers"].items()
            if not entry.get("only_arch") or arch in entry["only_arch"]]
