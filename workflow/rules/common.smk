# Shared by all rule files (the validated config, the campaign models, paths, resources).
# Everything imported here is light (no torch, scipy, pandas, matplotlib; tests/unit/config
# checks it): every `snakemake -n` and every cluster job reads this file.

import json
import os
import shlex
import sys

from vfbench.config import (
    canonical_json,
    expand_models,
    format_eps,
    n_shards,
    shard_bounds,
    validate_config,
    validate_schema,
    verifier_specs,
    verifiers_for,
)
from vfbench.errors import VfbenchError
from vfbench.plan import shard_runtime_minutes
from vfbench.report_entries import plot_entries, table_entries
from vfbench.transforms import needs_scores, resolve_transform_entry

try:
    # jobs on compute nodes re-read this file: the registry cross-checks ran once in the main
    # process, the schema fills the same defaults everywhere
    if workflow.is_main_process:
        validate_config(config, source="config")
    else:
        validate_schema(config, source="config")
except VfbenchError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = f"{config['results_dir']}/{config['campaign']}"
MODELS = expand_models(config)
MODEL_BY_ID = {m.id: m for m in MODELS}
BASE_BY_ID = {m.base_id: m for m in MODELS}  # dataset/arch/train -> a model made from it
VERIFIERS = verifier_specs(config)  # name -> resolved options and timeout
PYTHON = shlex.quote(sys.executable)  # the environment's interpreter, also on compute nodes
SCRIPTS = shlex.quote(os.path.join(workflow.basedir, "scripts"))
SHARDS = list(range(n_shards(config)))
COMPUTE = f"--seed {config['seed']} --device {config['device']} --threads {config['threads']}"


def script(name):
    """The command that runs scripts/{name}.py with this environment's interpreter (compute
    nodes included)."""
    return f"{PYTHON} {SCRIPTS}/{name}.py"


def json_param(obj):
    """A config entry as one shell-quoted JSON argument; also what makes Snakemake rerun a step
    when that entry changes (params are a rerun trigger)."""
    return shlex.quote(canonical_json(obj))


def ordered_json_param(obj):
    """Like json_param, but keeps the config's key order (table rows and columns follow it)."""
    return shlex.quote(json.dumps(obj, separators=(",", ":"), default=str))


def model_of(wildcards):
    key = f"{wildcards.dataset}/{wildcards.arch}/{wildcards.train}/{wildcards.transform}"
    return MODEL_BY_ID[key]


def base_of(wildcards):
    """The architecture name and options of the base network at {dataset}/{arch}/{train}."""
    return BASE_BY_ID[f"{wildcards.dataset}/{wildcards.arch}/{wildcards.train}"]


def rule_resources(name, **computed):
    """Cluster resources of a rule: computed defaults, overridden by config `resources.<rule>`."""
    return {**computed, **config["resources"].get(name, {})}


def check_resource_rules():
    """A `resources` key that names no rule (e.g. 'verify' for 'verify_shard') is an error, not
    a setting silently ignored."""
    unknown = sorted(set(config["resources"]) - {r.name for r in workflow.rules})
    if unknown:
        raise WorkflowError(f"config resources: {unknown} name no rule; rules: "
                            f"{sorted(r.name for r in workflow.rules)}")


def verify_runtime_minutes(wildcards, attempt):
    """A shard's wall-time request (vfbench.plan), longer on each retry."""
    timeout = VERIFIERS[wildcards.verifier].timeout_s
    return shard_runtime_minutes(config, int(wildcards.shard), timeout) * attempt


def verify_outputs():
    return [
        f"{RESULTS}/verify/{m.id}/{v}/eps{format_eps(e)}.parquet"
        for m in MODELS
        for v in verifiers_for(config, m.arch)
        for e in m.eps
    ]


def eval_outputs():
    return [f"{RESULTS}/eval/{m.id}/metrics.json" for m in MODELS]


def specs_package_layout():
    """What make_specs and make_instances are given, paths relative to RESULTS: the record from
    which specs/generate_properties.py rebuilds their files."""
    datasets = sorted({m.dataset for m in MODELS})
    return {
        "specs": [{"data": f"data/{d}.npz", "eps": format_eps(e),
                   "images_csv": f"specs/{d}/eps{format_eps(e)}/images.csv"}
                  for d in datasets
                  for e in sorted({e for m in MODELS if m.dataset == d for e in m.eps})],
        "instances": [{"onnx": f"onnx/{m.id}.onnx",
                       "images_csvs": [f"specs/{m.dataset}/eps{format_eps(e)}/images.csv"
                                       for e in m.eps],
                       "timeout_s": config["verify"]["timeout_s"],
                       "out": f"specs/{m.id}/instances.csv"} for m in MODELS],
    }


def score_paths(base_id, transform):
    entry = resolve_transform_entry(config["transform"][transform])
    return [f"{RESULTS}/models/{base_id}/scores/{score}.npz" for score in needs_scores(entry)]


def score_inputs(wildcards):
    return score_paths(f"{wildcards.dataset}/{wildcards.arch}/{wildcards.train}",
                       wildcards.transform)


def spec_variants(wildcards):
    """fgsm_agreement picks the images from every campaign model of the dataset (the variants
    whose FGSM outcomes must agree, per network), so the specs wait for them; the other
    selections need none."""
    if config["verify"]["image_selection"] != "fgsm_agreement":
        return []
    return [m for m in MODELS if m.dataset == wildcards.dataset]


def spec_models(wildcards):
    return [f"{RESULTS}/models/{m.id}/folded.pt" for m in spec_variants(wildcards)]


def spec_networks(wildcards):
    """The network (``{arch}`` path part) of each spec_models checkpoint, in the same order."""
    return [m.arch_part for m in spec_variants(wildcards)]


TABLES_OF_CAMPAIGN = table_entries(config)  # name -> (layout, options)
PLOTS_OF_CAMPAIGN = plot_entries(config)


def table_outputs():
    return [f"{RESULTS}/tables/{name}.{ext}" for name in TABLES_OF_CAMPAIGN
            for ext in ("csv", "md", "tex")]


def plot_outputs():
    return [f"{RESULTS}/plots/{name}.png" for name in PLOTS_OF_CAMPAIGN]


def campaign_inputs():
    """Every per-model result the tables and plots read, as explicit file lists."""
    return {
        "verify": verify_outputs(),
        "evaluate": eval_outputs(),
        "train": sorted({f"{RESULTS}/models/{m.base_id}/base.json" for m in MODELS}),
        "transform": [f"{RESULTS}/models/{m.id}/report.json" for m in MODELS],
        "scores": sorted({path for m in MODELS for path in score_paths(m.base_id, m.transform)}),
    }
