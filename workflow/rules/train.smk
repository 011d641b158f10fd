rule train_base:
    input:
        data=path(layout.data_npz),
    output:
        model=path(layout.base_checkpoint),
        metrics=path(layout.base_metrics),
        log_csv=path(layout.train_log),
    params:
        cmd=script("train_base"),
        compute=COMPUTE,
        entry=lambda wc: json_param(config["train"][wc.train]),
        arch=lambda wc: base_of(wc).arch,
        arch_options=lambda wc: json_param(dict(base_of(wc).arch_options)),
    log:
        log_path("train_base", layout.BASE),
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
        model=path(layout.folded_checkpoint),
        data=path(layout.data_npz),
    output:
        path(layout.eval_metrics),
    params:
        cmd=script("evaluate"),
        compute=COMPUTE,
        settings=lambda wc: json_param(config["evaluate"]),
        eps=lambda wc: " ".join(layout.format_eps(e) for e in model_of(wc).eps),
    log:
        log_path("evaluate", layout.MODEL),
    threads: config["threads"]
    resources:
        **rule_resources("evaluate", runtime=60, mem_mb=4000),
    shell:
        "{params.cmd} --model {input.model} --data {input.data}"
        " --settings-json {params.settings} --eps {params.eps} {params.compute} --out {output} 2> {log}"
