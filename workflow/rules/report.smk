# Tables and figures of the papers from the campaign's merged records, metrics, transform reports
# and score files (vfbench.results -> vfbench.tables / plots).


rule tables:
    input:
        **campaign_inputs(),
    output:
        [
            report(f"{RESULTS}/tables/{name}.csv", category="Tables",
                   caption=f"../report/tables/{layout}.rst")
            for name, (layout, _) in TABLES_OF_CAMPAIGN.items()
        ],
        [f"{RESULTS}/tables/{name}.{ext}" for name in TABLES_OF_CAMPAIGN for ext in ("md", "tex")],
    params:
        cmd=script("tables"),
        config=lambda wc: ordered_json_param(config),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/tables.log",
    shell:
        "{params.cmd} --config-json {params.config} --verify {input.verify}"
        " --evaluate {input.evaluate} --train {input.train} --transform {input.transform}"
        " --scores {input.scores} --out-dir {params.out_dir} 2> {log}"


rule plots:
    input:
        **campaign_inputs(),
    output:
        [
            report(f"{RESULTS}/plots/{name}.png", category="Figures",
                   caption=f"../report/plots/{layout}.rst")
            for name, (layout, _) in PLOTS_OF_CAMPAIGN.items()
        ],
    params:
        cmd=script("plots"),
        config=lambda wc: ordered_json_param(config),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/plots.log",
    shell:
        "{params.cmd} --config-json {params.config} --verify {input.verify}"
        " --evaluate {input.evaluate} --train {input.train} --transform {input.transform}"
        " --scores {input.scores} --out-dir {params.out_dir} 2> {log}"
