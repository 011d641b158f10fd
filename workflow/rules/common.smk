# Shared by all rule files (the validated config, the campaign models, paths, resources).
# Everything imported here is light (no torch, scipy, pandas, matplotlib; tests/unit/config
# checks it): every `snakemake -n` and every cluster job reads this file.

import json
import os
import shlex
import sys

from vfbench import layout
from vfbench.config import (
    canonical_json,
    expand_models,
    spec_images,
    validate_config,
    validate_schema,
    verifier_specs,
    verify_runs,
)
from vfbench.errors import VfbenchError
from vfbench.plan import shard_runtime_minutes
from vfbench.report.entries import plot_entries, table_entries
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

RESULTS = layout.campaign_folder(config)
MODELS = expand_models(config)
MODEL_BY_ID = {m.id: m for m in MODELS}
BASE_BY_ID = {m.base_id: m for m in MODELS}  # dataset/arch/train -> a model made from it
VERIFIERS = verifier_specs(config)  # name -> resolved options and timeout
RUNS = verify_runs(config)  # (model, verifier, eps): its images and shards
RUN_BY_KEY = {(r.model.id, r.verifier.name, layout.format_eps(r.eps)): r for r in RUNS}
SPEC_IMAGES = {(d, layout.format_eps(e)): n for (d, e), n in spec_images(MODELS).items()}
SPECS_PACKAGE_LAYOUT = layout.specs_package_layout(config)  # what make_specs / _instances get
INSTANCES_BY_ID = dict(zip(MODEL_BY_ID, SPECS_PACKAGE_LAYOUT["instances"], strict=True))
PYTHON = shlex.quote(sys.executable)  # the environment's interpreter, also on compute nodes
SCRIPTS = shlex.quote(os.path.join(workflow.basedir, "scripts"))
COMPUTE = f"--seed {config['seed']} --device {config['device']} --threads {config['threads']}"


def path(artifact, *ids):
    """The artifact's path under RESULTS (vfbench.layout); without ids, its wildcard pattern."""
    return f"{RESULTS}/{artifact(*ids)}"


def log_path(rule, *ids):
    return f"{RESULTS}/{layout.log(rule, *ids)}"


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


def model_id(wildcards):
    """``dataset/arch/train/transform`` of a rule's wildcards."""
    return layout.MODEL.format(**dict(wildcards.items()))


def base_id(wildcards):
    """``dataset/arch/train`` of a rule's wildcards."""
    return layout.BASE.format(**dict(wildcards.items()))


def model_of(wildcards):
    return MODEL_BY_ID[model_id(wildcards)]


def base_of(wildcards):
    """The architecture name and options of the base network at {dataset}/{arch}/{train}."""
    return BASE_BY_ID[base_id(wildcards)]


def run_of(wildcards):
    """The verification run (vfbench.config.VerifyRun) of a {model}/{verifier}/eps{eps} output."""
    return RUN_BY_KEY[(model_id(wildcards), wildcards.verifier, wildcards.eps)]


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
    return shard_runtime_minutes(run_of(wildcards), int(wildcards.shard)) * attempt


def verify_outputs():
    return [path(layout.verify_merged, r.model.id, r.verifier.name, r.eps) for r in RUNS]


def eval_outputs():
    return [path(layout.eval_metrics, m.id) for m in MODELS]


def score_inputs(wildcards):
    entry = resolve_transform_entry(config["transform"][wildcards.transform])
    return [path(layout.score_file, base_id(wildcards), score) for score in needs_scores(entry)]


def spec_variants(wildcards):
    """fgsm_agreement picks the images from every campaign model of the dataset (the variants
    whose FGSM outcomes must agree, per network), so the specs wait for them; the other
    selections need none."""
    if config["verify"]["image_selection"] != "fgsm_agreement":
        return []
    return [m for m in MODELS if m.dataset == wildcards.dataset]


def spec_models(wildcards):
    return [path(layout.folded_checkpoint, m.id) for m in spec_variants(wildcards)]


def spec_networks(wildcards):
    """The network (``{arch}`` path part) of each spec_models checkpoint, in the same order."""
    return [m.arch_part for m in spec_variants(wildcards)]


TABLES_OF_CAMPAIGN = table_entries(config)  # name -> (layout, options)
PLOTS_OF_CAMPAIGN = plot_entries(config)
REPORT_INPUTS = layout.report_inputs(config)  # kind -> (id, path) pairs


def table_outputs():
    return [path(layout.table, name, ext) for name in TABLES_OF_CAMPAIGN
            for ext in layout.TABLE_FORMATS]


def plot_outputs():
    return [path(layout.plot, name) for name in PLOTS_OF_CAMPAIGN]


def campaign_inputs():
    """Every per-model result the tables and plots read (the script derives the same list from
    the config: vfbench.layout.report_inputs)."""
    return {kind: [f"{RESULTS}/{p}" for _, p in pairs] for kind, pairs in REPORT_INPUTS.items()}
