"""What every table and figure of a campaign states about where its numbers come from (a footer
line and a JSON sidecar), and the writing of each output with its sidecar."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vfbench import metrics
from vfbench.config import config_hash
from vfbench.io import atomic_path, git_commit, write_json
from vfbench.report.cells import MISSING
from vfbench.results import CampaignResults


def campaign_provenance(results: CampaignResults) -> dict:
    """What every table and figure of a campaign states about where its numbers come from."""
    input_commits = sorted({str(e["provenance"]["git_commit"])
                            for e in results.evals.values()
                            if isinstance(e.get("provenance"), Mapping)
                            and e["provenance"].get("git_commit")})
    verify = results.config.get("verify", {})
    return {
        "campaign": results.config.get("campaign"),
        "config_sha256": config_hash(results.config),
        "commit": git_commit(),
        "input_commits": input_commits,
        "unstable_bound": verify.get("unstable_bound"),
        "timeouts_s": {v: results.timeout(v) for v in results.verifiers()},
        "images": verify.get("images"),
        "image_selection": verify.get("image_selection", "first"),
        "verifiers": {v: verifier_setting(verify, v) for v in results.verifiers()},
        "pgd": results.pgd_settings(),
        "time_definitions": {k: sorted(v) for k, v in metrics.TIME_DEFINITIONS.items()},
        "inputs": list(results.inputs),
    }


def verifier_setting(verify: Mapping, verifier: str) -> dict:
    """A verifier's bound method and falsifier as the campaign ran it: its entry's ``method`` and
    ``pgd_steps`` x ``pgd_restarts`` (unset: vfbench.verify.base's defaults; 0 steps: off)."""
    from vfbench.verify.options import COMMON_OPTIONS

    entry = (verify.get("verifiers") or {}).get(verifier) or {}
    return {"method": entry.get("method", verifier),
            "pgd_steps": entry.get("pgd_steps", COMMON_OPTIONS["pgd_steps"].default),
            "pgd_restarts": entry.get("pgd_restarts", COMMON_OPTIONS["pgd_restarts"].default)}


def _falsifier_text(setting: Mapping) -> str:
    if not setting["pgd_steps"]:
        return "off"
    return f"PGD {setting['pgd_steps']}x{setting['pgd_restarts']}"


def provenance_line(prov: Mapping, notes: Sequence[str] = ()) -> str:
    timeouts = ", ".join(f"{v} {t:g} s" for v, t in prov["timeouts_s"].items() if t is not None)
    pgd = ", ".join(f"{p.get('steps')} steps x {p.get('restarts', 1)} restarts"
                    for p in prov["pgd"])
    verifiers = ", ".join(f"{v} = {s['method']} bounds, falsifier {_falsifier_text(s)}"
                          for v, s in prov.get("verifiers", {}).items())
    parts = [f"campaign {prov['campaign']}", f"config {prov['config_sha256']}",
             f"commit {prov['commit']}",
             f"images: {prov.get('images')} ({prov.get('image_selection', 'first')})",
             f"verifiers: {verifiers or MISSING}",
             f"UNR/Stable% from {prov['unstable_bound']} bounds",
             f"timeout {timeouts or MISSING}", f"PGD {pgd or MISSING}", *notes]
    return "; ".join(parts)


def write_with_sidecar(out_dir: str | os.PathLike, name: str,
                       writers: Mapping[str, Callable[[Path], None]], sidecar: Mapping
                       ) -> list[Path]:
    """``{name}{suffix}`` for each ``writers[suffix](path)`` (atomically), then the JSON sidecar
    ``{name}.json``; the paths written."""
    out_dir = Path(out_dir)
    paths = []
    for suffix, write in writers.items():
        path = out_dir / f"{name}{suffix}"
        with atomic_path(path) as tmp:
            write(tmp)
        paths.append(path)
    sidecar_path = out_dir / f"{name}.json"
    write_json(sidecar_path, sidecar)
    return paths + [sidecar_path]


def write_each(results: CampaignResults, entries: Mapping[str, tuple[str, dict]],
               write: Callable[[str, str, dict, dict], list[Path]]) -> list[Path]:
    """``write(name, layout, options, provenance)`` for every entry {name: (layout, options)} of
    the campaign (``vfbench.report.entries``); the paths written."""
    provenance = campaign_provenance(results)
    return [path for name, (layout, options) in entries.items()
            for path in write(name, layout, options,
                              {**provenance, "layout": layout, "options": options})]
