# The method that makes a trained network easier to verify (vfbench.transforms.TRANSFORMS).
# Scores (neuron instability r_u, significance r_s) are their own outputs, computed once per base
# model and shared by every transformation that asks for the same score id.

# The score id says what is computed (vfbench.transforms.scores.parse_score_id); a Hydra score
# learns on the dataset's training split with the losses recorded in the base checkpoint.
rule scores:
    input:
        model=path(layout.base_checkpoint),
        data=path(layout.data_npz),
    output:
        path(layout.score_file),
    params:
        cmd=script("scores"),
        compute=COMPUTE,
    log:
        log_path("scores", layout.BASE, layout.SCORE),
    threads: config["threads"]
    resources:
        **rule_resources("scores", runtime=120, mem_mb=8000),
    shell:
        "{params.cmd} --checkpoint {input.model} --data {input.data}"
        " --score {wildcards.score} {params.compute}"
        " --out {output} 2> {log}"


rule transform:
    input:
        model=path(layout.base_checkpoint),
        data=path(layout.data_npz),
        scores=score_inputs,
    output:
        model=path(layout.transformed_checkpoint),
        report=path(layout.transform_report),
    params:
        cmd=script("transform"),
        compute=COMPUTE,
        entry=lambda wc: json_param(config["transform"][wc.transform]),
    log:
        log_path("transform", layout.MODEL),
    threads: config["threads"]
    resources:
        **rule_resources("transform", runtime=240, mem_mb=8000),
    shell:
        "{params.cmd} --checkpoint {input.model} --data {input.data}"
        " --entry-json {params.entry} --scores {input.scores} {params.compute}"
        " --out {output.model} --out-report {output.report} 2> {log}"
