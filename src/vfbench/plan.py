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

from vfbench import layout
from vfbench.config import VerifyRun, expand_models, spec_images, verifier_specs, verify_runs
from vfbench.errors import VfbenchError


def shard_runtime_minutes(run: VerifyRun, shard: int) -> int:
    """Wall time a verification shard asks the scheduler for: every image may run to its
    verifier's timeout (plus 50% and 5 s of PGD and bookkeeping each), plus 2 minutes of
    start-up."""
    start, stop = run.shard_bounds(shard)
    seconds = (stop - start) * (run.verifier.timeout_s * 1.5 + 5) + 120
    return max(5, math.ceil(seconds / 60))


@dataclass
class Plan:
    campaign: str
    results: str  # results_dir/campaign: where every output goes
    models: int
    images: int  # images verified per (model, eps, verifier), the most of any run
    shards: int  # shards per (model, eps, verifier), the most of any run
    verify_runs: int  # (model, eps, verifier) combinations
    timeouts_s: dict[str, float]  # verifier -> seconds per image
    run_images: list[int] = field(default_factory=list)  # per (model, eps, verifier) run
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
    def images_verified(self) -> int:
        return sum(self.run_images)

    @property
    def gpu_hours_bound(self) -> float:
        """Every image of every (model, eps, verifier) running to its verifier's timeout. A bound,
        not an estimate: verified and falsified images end early."""
        return sum(n * t for n, t in zip(self.run_images, self.run_timeouts_s,
                                         strict=True)) / 3600


def make_plan(config: dict) -> Plan:
    """The plan of a validated config (`vfbench.config.load_config` / `validate_config`)."""
    from vfbench.report.entries import plot_entries, table_entries

    results = layout.campaign_folder(config)
    models = expand_models(config)
    runs = verify_runs(config)
    inputs = layout.report_inputs(config)

    def under(paths):
        return [f"{results}/{p}" for p in paths]

    merged = under(p for _, p in inputs["verify"])
    tables = under(layout.table(name, ext)
                   for name in table_entries(config) for ext in layout.TABLE_FORMATS)
    plots = under(layout.plot(name) for name in plot_entries(config))

    n_models = len(models)
    plan = Plan(
        campaign=config["campaign"],
        results=results,
        models=n_models,
        images=max((r.images for r in runs), default=0),
        shards=max((r.shards for r in runs), default=0),
        verify_runs=len(runs),
        timeouts_s={name: v.timeout_s for name, v in verifier_specs(config).items()},
        run_images=[r.images for r in runs],
        run_timeouts_s=[r.verifier.timeout_s for r in runs],
    )
    plan.jobs = {
        "fetch_data": len({m.dataset for m in models}),
        "train_base": len(inputs["train"]),
        "scores": len(inputs["scores"]),
        "transform": n_models,
        "fold_bn": n_models,
        "export_onnx": n_models,
        "evaluate": n_models,
        "make_specs": len(spec_images(models)),
        "make_instances": n_models,
        "specs_package": 1,
        "verify_shard": sum(r.shards for r in runs),
        "merge_verify": len(runs),
        # one job each, none when the campaign asks for no table / figure (no outputs, no target)
        "tables": int(bool(tables)),
        "plots": int(bool(plots)),
        "all": 1,
    }
    plan.jobs = {rule: n for rule, n in plan.jobs.items() if n}
    plan.shard_minutes = sum(shard_runtime_minutes(r, k) for r in runs for k in range(r.shards))
    plan.outputs = {
        "tables": tables,
        "plots": plots,
        "verification records (merged)": merged,
        "evaluation metrics": under(p for _, p in inputs["evaluate"]),
        "ONNX models": under(layout.onnx_model(m.id) for m in models),
        "VNN-COMP instances": under(layout.instances_csv(m.id) for m in models),
    }
    return plan


def measured_seconds(results: str | Path) -> dict[str, dict]:
    """Seconds per image of each model class ("arch/verifier") in a finished campaign's merged
    records (``<results>/verify/<dataset>/<arch>/<train>/<transform>/<verifier>/eps*.parquet``),
    over every image tried (misclassified and error records included: they cost time too)."""
    import pandas as pd

    root = Path(results)
    paths = sorted(root.glob(layout.verify_merged("*/*/*/*", "*", "*")))
    if not paths:
        raise VfbenchError(f"{results}: no merged verification records "
                           f"({layout.verify_merged()}); is it a finished campaign's results "
                           "folder?")
    seconds: dict[str, list[float]] = {}
    for path in paths:
        ids = layout.parse("verify", path.relative_to(root).as_posix())
        arch, verifier = ids["arch"], ids["verifier"]
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
    for run in verify_runs(config):
        key, timeout_s = f"{run.model.arch_part}/{run.verifier.name}", run.verifier.timeout_s
        per_image = plan.measured.get(key, {}).get("mean_s")
        if per_image is None:
            missing.add(key)
            per_image = timeout_s
        seconds += run.images * min(per_image, timeout_s)
    plan.estimated_hours = seconds / 3600
    plan.unmeasured = sorted(missing)
    return plan


def format_plan(plan: Plan, source: str, list_outputs: bool = False) -> str:
    """The human-readable plan that `vfbench plan` prints."""
    width = max(len(rule) for rule in plan.jobs)
    fewest = min(plan.run_images, default=plan.images)
    each = f"{plan.images} images each, in {plan.shards} shards" if fewest == plan.images else \
        f"{fewest} to {plan.images} images each, in up to {plan.shards} shards"
    lines = [
        f"campaign {plan.campaign}  ({source})  ->  {plan.results}/",
        f"{plan.models} models, {plan.verify_runs} (model, eps, verifier) runs of {each}",
        "",
        "jobs per rule:",
        *(f"  {rule:<{width}}  {n:>8,}" for rule, n in plan.jobs.items()),
        f"  {'total':<{width}}  {plan.total_jobs:>8,}",
        "",
        f"verification: {plan.images_verified:,} images, timeouts "
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
