"""What a campaign will run, computed from its config alone, before anything is submitted.

`vfbench plan` prints it: jobs per rule, images, an upper bound of the verification GPU-hours and
the expected outputs. It walks the campaign's expansion (vfbench.config) in plain Python instead of
building the Snakemake DAG, so it answers in well under a second on campaigns of 10,000+ jobs.
The job counts mirror the rules in workflow/rules/*.smk; tests/unit/plan checks them against a
Snakemake dry run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vfbench.config import (
    expand_models,
    format_eps,
    n_shards,
    shard_bounds,
    verifier_specs,
    verifiers_for,
)
from vfbench.errors import VfbenchError

TABLE_FORMATS = ("csv", "md", "tex")


def shard_runtime_minutes(config: dict, shard: int, timeout_s: float) -> int:
    """Wall time a verification shard asks the scheduler for: every image may run to its
    verifier's ``timeout_s`` (plus 50% and 5 s of PGD and bookkeeping each), plus 2 minutes of
    start-up."""
    start, stop = shard_bounds(config, shard)
    seconds = (stop - start) * (timeout_s * 1.5 + 5) + 120
    return max(5, math.ceil(seconds / 60))


@dataclass
class Plan:
    campaign: str
    results: str  # results_dir/campaign: where every output goes
    models: int
    images: int  # images verified per (model, eps, verifier)
    shards: int  # shards per (model, eps, verifier)
    verify_runs: int  # (model, eps, verifier) combinations
    timeouts_s: dict[str, float]  # verifier -> seconds per image
    run_timeouts_s: list[float] = field(default_factory=list)  # per (model, eps, verifier) run
    jobs: dict[str, int] = field(default_factory=dict)  # rule -> jobs, in DAG order
    shard_minutes: int = 0  # runtime requested by all verification shards together
    outputs: dict[str, list[str]] = field(default_factory=dict)  # kind -> paths
    # "arch/verifier" -> {"images", "mean_s"} measured in a finished campaign (measure_plan)
    measured: dict[str, dict] = field(default_factory=dict)
    measured_from: str | None = None
    estimated_hours: float | None = None  # measured means where known, the timeout elsewhere
    unmeasured: list[str] = field(default_factory=list)  # "arch/verifier" without a figure

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())

    @property
    def gpu_hours_bound(self) -> float:
        """Every image of every (model, eps, verifier) running to its verifier's timeout. A bound,
        not an estimate: verified and falsified images end early."""
        return self.images * sum(self.run_timeouts_s) / 3600


def make_plan(config: dict) -> Plan:
    """The plan of a validated config (`vfbench.config.load_config` / `validate_config`)."""
    from vfbench.report_entries import plot_entries, table_entries
    from vfbench.transforms import needs_scores, resolve_transform_entry

    results = f"{config['results_dir']}/{config['campaign']}"
    models = expand_models(config)
    shards = n_shards(config)
    score_keys = {
        name: list(needs_scores(resolve_transform_entry(entry)))
        for name, entry in config["transform"].items()
    }

    datasets = dict.fromkeys(m.dataset for m in models)
    bases = dict.fromkeys(m.base_id for m in models)
    scores = dict.fromkeys(
        (m.base_id, key) for m in models for key in score_keys[m.transform]
    )
    specs = dict.fromkeys((m.dataset, format_eps(e)) for m in models for e in m.eps)
    verifiers = verifier_specs(config)
    runs = [(m, verifiers[v], e) for m in models for v in verifiers_for(config, m.arch)
            for e in m.eps]
    merged = [f"{results}/verify/{m.id}/{v.name}/eps{format_eps(e)}.parquet" for m, v, e in runs]
    tables = [f"{results}/tables/{name}.{ext}"
              for name in table_entries(config) for ext in TABLE_FORMATS]
    plots = [f"{results}/plots/{name}.png" for name in plot_entries(config)]

    n_models = len(models)
    plan = Plan(
        campaign=config["campaign"],
        results=results,
        models=n_models,
        images=config["verify"]["images"],
        shards=shards,
        verify_runs=len(merged),
        timeouts_s={name: v.timeout_s for name, v in verifiers.items()},
        run_timeouts_s=[v.timeout_s for _, v, _ in runs],
    )
    plan.jobs = {
        "fetch_data": len(datasets),
        "train_base": len(bases),
        "scores": len(scores),
        "transform": n_models,
        "fold_bn": n_models,
        "export_onnx": n_models,
        "evaluate": n_models,
        "make_specs": len(specs),
        "make_instances": n_models,
        "specs_package": 1,
        "verify_shard": len(merged) * shards,
        "merge_verify": len(merged),
        # one job each, none when the campaign asks for no table / figure (no outputs, no target)
        "tables": int(bool(tables)),
        "plots": int(bool(plots)),
        "all": 1,
    }
    plan.jobs = {rule: n for rule, n in plan.jobs.items() if n}
    plan.shard_minutes = sum(shard_runtime_minutes(config, k, v.timeout_s)
                             for _, v, _ in runs for k in range(shards))
    plan.outputs = {
        "tables": tables,
        "plots": plots,
        "verification records (merged)": merged,
        "evaluation metrics": [f"{results}/eval/{m.id}/metrics.json" for m in models],
        "ONNX models": [f"{results}/onnx/{m.id}.onnx" for m in models],
        "VNN-COMP instances": [f"{results}/specs/{m.id}/instances.csv" for m in models],
    }
    return plan


def measured_seconds(results: str | Path) -> dict[str, dict]:
    """Seconds per image of each model class ("arch/verifier") in a finished campaign's merged
    records (``<results>/verify/<dataset>/<arch>/<train>/<transform>/<verifier>/eps*.parquet``),
    over every image tried (misclassified and error records included: they cost time too)."""
    import pandas as pd

    root = Path(results) / "verify"
    paths = sorted(root.glob("*/*/*/*/*/eps*.parquet"))
    if not paths:
        raise VfbenchError(f"{results}: no merged verification records "
                           f"(verify/<dataset>/<arch>/<train>/<transform>/<verifier>/eps*.parquet)"
                           "; is it a finished campaign's results folder?")
    seconds: dict[str, list[float]] = {}
    for path in paths:
        arch, verifier = path.relative_to(root).parts[1], path.parent.name
        times = pd.read_parquet(path, columns=["time_s"])["time_s"].dropna()
        seconds.setdefault(f"{arch}/{verifier}", []).extend(times.tolist())
    return {key: {"images": len(values), "mean_s": sum(values) / len(values)}
            for key, values in sorted(seconds.items()) if values}


def measure_plan(plan: Plan, config: dict, results: str | Path) -> Plan:
    """Add to ``plan`` the per-image seconds measured in the finished campaign at ``results``
    and the verification hours they predict for this config (where a model class was not
    measured, its images count at the timeout, as in the bound)."""
    plan.measured = measured_seconds(results)
    plan.measured_from = str(results)
    seconds, missing = 0.0, set()
    for m in expand_models(config):
        for verifier in verifiers_for(config, m.arch):
            key, timeout_s = f"{m.arch_part}/{verifier}", plan.timeouts_s[verifier]
            per_image = plan.measured.get(key, {}).get("mean_s")
            if per_image is None:
                missing.add(key)
                per_image = timeout_s
            seconds += len(m.eps) * plan.images * min(per_image, timeout_s)
    plan.estimated_hours = seconds / 3600
    plan.unmeasured = sorted(missing)
    return plan


def format_plan(plan: Plan, source: str, list_outputs: bool = False) -> str:
    """The human-readable plan that `vfbench plan` prints."""
    width = max(len(rule) for rule in plan.jobs)
    lines = [
        f"campaign {plan.campaign}  ({source})  ->  {plan.results}/",
        f"{plan.models} models, {plan.verify_runs} (model, eps, verifier) runs of "
        f"{plan.images} images each, in {plan.shards} shards",
        "",
        "jobs per rule:",
        *(f"  {rule:<{width}}  {n:>8,}" for rule, n in plan.jobs.items()),
        f"  {'total':<{width}}  {plan.total_jobs:>8,}",
        "",
        f"verification: {plan.verify_runs * plan.images:,} images, timeouts "
        + ", ".join(f"{v} {s:g} s" for v, s in plan.timeouts_s.items())
        + f" = at most {plan.gpu_hours_bound:,.1f} GPU-hours (every image to its timeout)",
        f"verification shards request {plan.shard_minutes / 60:,.1f} h of wall time in all",
    ]
    if plan.estimated_hours is not None:
        lines += [
            f"measured in {plan.measured_from} (mean seconds per image):",
            *(f"  {key:<{width + 12}}  {m['mean_s']:8.2f} s  over {m['images']:,} images"
              for key, m in plan.measured.items()),
            f"verification at these rates: about {plan.estimated_hours:,.2f} GPU-hours"
            + (f" (at the timeout for {', '.join(plan.unmeasured)}: not measured there)"
               if plan.unmeasured else ""),
        ]
    lines += [
        "",
        "expected outputs:",
    ]
    for kind, paths in plan.outputs.items():
        lines.append(f"  {len(paths):>6,}  {kind}")
        shown = paths if list_outputs or len(paths) <= 6 else []
        lines.extend(f"          {path}" for path in shown)
    return "\n".join(lines)
