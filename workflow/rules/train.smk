rule train_base:
    input:
        data=f"{RESULTS}/data/{{dataset}}.npz",
    output:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/base.pt",
        metrics=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/base.json",
        log_csv=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/train_log.csv",
    params:
        cmd=script("train_base"),
        compute=COMPUTE,
        entry=lambda wc: json_param(config["train"][wc.train]),
        arch=lambda wc: base_of(wc).arch,
        arch_options=lambda wc: json_param(dict(base_of(wc).arch_options)),
    log:
        f"{RESULTS}/logs/train_base/{{dataset}}/{{arch}}/{{train}}.log",
    threads: config["threads"]
    resources:
        **rule_resources("train_base", runtime=240, mem_mb=8000),
    shell:
        "{params.cmd} --data {input.data} --arch {params.arch}"
        " --arch-options-json {params.arch_options} --entry-json {params.entry}"
        " {params.compute}"
        " --out {output.model} --out-metrics {output.metrics} --log-csv {output.log_csv}"
        " 2> {log}"


rule evaluate:
    input:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/{{transform}}/folded.pt",
        data=f"{RESULTS}/data/{{dataset}}.npz",
    output:
        f"{RESULTS}/eval/{{dataset}}/{{arch}}/{{train}}/{{transform}}/metrics.json",
    params:
        cmd=script("evaluate"),
        compute=COMPUTE,
        settings=lambda wc: json_param(config["evaluate"]),
        eps=lambda wc: " ".join(format_eps(e) for e in model_of(wc).eps),
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}/{{arch}}/{{train}}/{{transform}}.log",
    threads: config["threads"]
    resources:
        **rule_resources("evaluate", runtime=60, mem_mb=4000),
    shell:
        "{params.cmd} --model {input.model} --data {input.data}"
        " --settings-json {params.settings} --eps {params.eps} {params.compute} --out {output} 2> {log}"
