# The method that makes a trained network easier to verify (vfbench.transforms.TRANSFORMS).
# Scores (neuron instability r_u, significance r_s) are their own outputs, computed once per base
# model and shared by every transformation that asks for the same score id.

# The score id says what is computed (vfbench.transforms.scores.parse_score_id); a Hydra score
# learns on the dataset's training split with the losses recorded in the base checkpoint.
rule scores:
    input:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/base.pt",
        data=f"{RESULTS}/data/{{dataset}}.npz",
    output:
        f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/scores/{{score}}.npz",
    wildcard_constraints:
        score=r"[A-Za-z0-9_.+-]+",
    params:
        cmd=script("scores"),
        compute=COMPUTE,
    log:
        f"{RESULTS}/logs/scores/{{dataset}}/{{arch}}/{{train}}/{{score}}.log",
    threads: config["threads"]
    resources:
        **rule_resources("scores", runtime=120, mem_mb=8000),
    shell:
        "{params.cmd} --checkpoint {input.model} --data {input.data}"
        " --score {wildcards.score} {params.compute}"
        " --out {output} 2> {log}"


rule transform:
    input:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/base.pt",
        data=f"{RESULTS}/data/{{dataset}}.npz",
        scores=score_inputs,
    output:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/{{transform}}/model.pt",
        report=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/{{transform}}/report.json",
    params:
        cmd=script("transform"),
        compute=COMPUTE,
        entry=lambda wc: json_param(config["transform"][wc.transform]),
    log:
        f"{RESULTS}/logs/transform/{{dataset}}/{{arch}}/{{train}}/{{transform}}.log",
    threads: config["threads"]
    resources:
        **rule_resources("transform", runtime=240, mem_mb=8000),
    shell:
        "{params.cmd} --checkpoint {input.model} --data {input.data}"
        " --entry-json {params.entry} --scores {input.scores} {params.compute}"
        " --out {output.model} --out-report {output.report} 2> {log}"
