# vfbench: train -> make verification-friendly -> fold BN -> export ONNX/VNNLIB -> verify -> tables.
# The DAG is readable from workflow/rules/*.smk; each rule runs one small CLI in scripts/.

import os

from snakemake.utils import min_version

min_version("9.0")


# The default campaign, unless --configfile names another (snakemake would otherwise merge both).
if not config:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
wildcard_constraints:
    **layout.WILDCARD_CONSTRAINTS,


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/transform.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/report.smk"


check_resource_rules()


# Light steps run in the main process, not as cluster jobs (compute nodes often have no internet).
localrules:
    all,
    fetch_data,
    make_specs,
    make_instances,
    specs_package,
    merge_verify,
    tables,
    plots,


rule all:
    default_target: True
    input:
        table_outputs(),
        plot_outputs(),
        verify_outputs(),  # also when the campaign asks for no table or figure
        eval_outputs(),
        [path(layout.instances_csv, m.id) for m in MODELS],
        f"{RESULTS}/{layout.GENERATE_PROPERTIES}",
