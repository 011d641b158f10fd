"""Where every artifact of a campaign lives: one function per artifact, the only place a path is
built (docs/design.md, "Paths").

Each function takes the ids of its artifact (a model id ``dataset/arch/train/transform``, a base
id ``dataset/arch/train``, a dataset, an eps, a verifier, ...) and returns the path relative to
the campaign folder ``results_dir/campaign``. Called without arguments it returns the Snakemake
pattern of the same path (``{dataset}/{arch}/...`` wildcards), so the rules, ``vfbench plan``
and the report inputs cannot disagree. ``parse`` is the inverse, for folders of finished
campaigns (``vfbench plan --measured``); the report reads the (id, path) pairs of
``report_inputs`` and never parses a path.

Light (no torch, scipy, pandas, matplotlib): the Snakefile imports it.
"""

from __future__ import annotations

import re
from typing import Any

from vfbench.errors import VfbenchError

# The wildcards of the patterns and what each may hold (the Snakefile's wildcard_constraints).
WILDCARD_CONSTRAINTS = {
    "dataset": r"[A-Za-z0-9_]+",
    "arch": r"[A-Za-z0-9_]+(?:-[0-9a-f]{8})?",  # zoo name [-hash of arch_options]
    "train": r"[A-Za-z0-9_.+-]+",
    "transform": r"[A-Za-z0-9_.+-]+",
    "score": r"[A-Za-z0-9_.+-]+",
    "verifier": r"[A-Za-z0-9_-]+",
    "eps": r"[0-9.e-]+",
    "shard": r"\d+",
}

BASE = "{dataset}/{arch}/{train}"  # a base network's id, as a pattern
MODEL = f"{BASE}/{{transform}}"  # a model's id, as a pattern
DATASET, EPS, VERIFIER, SHARD, SCORE = "{dataset}", "{eps}", "{verifier}", "{shard}", "{score}"


def format_eps(eps: float | str) -> str:
    """The {eps} path part: the shortest exact decimal (0.02 -> '0.02'); a string (a wildcard
    pattern or an eps already formatted) is kept as it is."""
    return eps if isinstance(eps, str) else repr(float(eps))


def campaign_folder(config: dict) -> str:
    """``results_dir/campaign``: every path below is relative to it."""
    return f"{config['results_dir']}/{config['campaign']}"


def folder_of(path: str, relative: str) -> str:
    """The campaign folder holding an artifact at ``path`` whose layout path is ``relative``
    (what a job on a node without the shared results folder is given)."""
    if not str(path).endswith(f"/{relative}"):
        raise VfbenchError(f"{path}: not at {relative} under a campaign folder")
    return str(path)[:-len(relative) - 1]


class Artifact:
    """One kind of artifact: its path template under the campaign folder, with the ids it takes
    as fields (``{model}``, ``{base}``, ``{dataset}``, ``{eps}``, ``{verifier}``, ``{shard}``,
    ``{score}``). Called with ids (in the template's order) it gives the path; every id left
    out stays a Snakemake pattern (``{model}`` -> ``{dataset}/{arch}/{train}/{transform}``), so
    ``artifact()`` is the rules' pattern of the same path. An eps is written by format_eps."""

    PATTERNS = {"model": MODEL, "base": BASE}

    def __init__(self, template: str):
        self.template = template
        self.fields = re.findall(r"\{(\w+)\}", template)

    def __call__(self, *ids: Any) -> str:
        if len(ids) > len(self.fields):
            raise TypeError(f"{self.template}: {len(ids)} ids for {len(self.fields)} fields")
        values = {field: self.PATTERNS.get(field, f"{{{field}}}") for field in self.fields}
        for field, value in zip(self.fields, ids, strict=False):  # the rest stay patterns
            values[field] = format_eps(value) if field == "eps" else str(value)
        return self.template.format(**values)

    def __repr__(self) -> str:
        return f"Artifact({self.template!r})"


# --- data, training, transformation ---------------------------------------------------------------
data_npz = Artifact("data/{dataset}.npz")
data_card = Artifact("data/{dataset}.json")
base_checkpoint = Artifact("models/{base}/base.pt")
base_metrics = Artifact("models/{base}/base.json")
train_log = Artifact("models/{base}/train_log.csv")
score_file = Artifact("models/{base}/scores/{score}.npz")
transformed_checkpoint = Artifact("models/{model}/model.pt")
transform_report = Artifact("models/{model}/report.json")
folded_checkpoint = Artifact("models/{model}/folded.pt")
eval_metrics = Artifact("eval/{model}/metrics.json")

# --- export: ONNX, VNNLIB, the VNN-COMP package ---------------------------------------------------
onnx_model = Artifact("onnx/{model}.onnx")
onnx_check = Artifact("onnx/{model}.json")
vnnlib_folder = Artifact("specs/{dataset}/eps{eps}/vnnlib")
images_csv = Artifact("specs/{dataset}/eps{eps}/images.csv")
instances_csv = Artifact("specs/{model}/instances.csv")
SPECS_PACKAGE = "specs/package.json"
GENERATE_PROPERTIES = "specs/generate_properties.py"

# --- verification, report -------------------------------------------------------------------------
verify_shard = Artifact("verify/{model}/{verifier}/eps{eps}/shard{shard}.jsonl")
verify_merged = Artifact("verify/{model}/{verifier}/eps{eps}.parquet")

TABLE_FORMATS = ("csv", "md", "tex")


def table(name: str, ext: str) -> str:
    return f"tables/{name}.{ext}"


def plot(name: str) -> str:
    return f"plots/{name}.png"


def log(rule: str, *ids: Any) -> str:
    """A rule's log: ``logs/{rule}/{ids joined by /}.log`` (the ids of its output), or
    ``logs/{rule}.log`` for a rule with one job."""
    return f"logs/{'/'.join(str(part) for part in (rule, *ids))}.log"


# --- parsing (finished campaigns) -----------------------------------------------------------------

# kind -> the function building that artifact's path; parse() reads paths of these kinds back
PARSABLE: dict[str, Artifact] = {
    "verify": verify_merged, "evaluate": eval_metrics, "train": base_metrics,
    "transform": transform_report, "scores": score_file,
}


def _regex(pattern: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", pattern)
    out = []
    for i, part in enumerate(parts):
        out.append(f"(?P<{part}>{WILDCARD_CONSTRAINTS[part]})" if i % 2 else re.escape(part))
    return re.compile("".join(out))


_REGEXES = {kind: _regex(fn()) for kind, fn in PARSABLE.items()}


def parse(kind: str, path: str) -> dict[str, str]:
    """The wildcards of a ``kind`` artifact (a PARSABLE key) from its path relative to the
    campaign folder, e.g. ``parse("verify", "verify/m/net1/a/none/crown/eps0.1.parquet")``."""
    match = _REGEXES[kind].fullmatch(str(path))
    if match is None:
        raise VfbenchError(f"{path}: not a {kind} output ({PARSABLE[kind]()} under the "
                           "campaign folder)")
    return match.groupdict()


def model_id(fields: dict[str, str]) -> str:
    """The model id (``dataset/arch/train/transform``) in a parsed path's wildcards."""
    return MODEL.format(**fields)


# --- what a campaign's steps read and write, from its config --------------------------------------

def report_inputs(config: dict) -> dict[str, list[tuple[str, str]]]:
    """Every per-model result the tables and figures read, as (id, path) pairs per kind:
    ``verify`` (model id, merged records of each verifier and eps), ``evaluate`` and
    ``transform`` (model id), ``train`` (base id) and ``scores`` (base id/score id)."""
    from vfbench.config import expand_models, verify_runs
    from vfbench.transforms import needs_scores, resolve_transform_entry

    models = expand_models(config)
    scores = {name: needs_scores(resolve_transform_entry(entry))
              for name, entry in config["transform"].items()}
    return {
        "verify": [(run.model.id, verify_merged(run.model.id, run.verifier.name, run.eps))
                   for run in verify_runs(config)],
        "evaluate": [(m.id, eval_metrics(m.id)) for m in models],
        "train": list({m.base_id: (m.base_id, base_metrics(m.base_id)) for m in models}.values()),
        "transform": [(m.id, transform_report(m.id)) for m in models],
        "scores": list({(m.base_id, s): (f"{m.base_id}/{s}", score_file(m.base_id, s))
                        for m in models for s in scores[m.transform]}.values()),
    }


def specs_package_layout(config: dict) -> dict[str, list[dict]]:
    """What make_specs and make_instances are given (vfbench.specs_package): the record from
    which specs/generate_properties.py rebuilds their files."""
    from vfbench.config import expand_models, instances_timeout, spec_images, verifier_specs

    models = expand_models(config)
    verifiers = verifier_specs(config)
    return {
        "specs": [{"data": data_npz(dataset), "eps": format_eps(eps),
                   "images_csv": images_csv(dataset, eps)}
                  for (dataset, eps) in spec_images(models)],
        "instances": [{"onnx": onnx_model(m.id),
                       "images_csvs": [images_csv(m.dataset, e) for e in m.eps],
                       "images": m.images, "timeout_s": instances_timeout(config, m, verifiers),
                       "out": instances_csv(m.id)} for m in models],
    }
