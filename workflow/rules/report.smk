# Tables and figures of the papers from the campaign's merged records, metrics, transform reports
# and score files (vfbench.results -> vfbench.report). The scripts read the same files:
# vfbench.layout.report_inputs gives both the (id, path) pairs, from the config.


rule tables:
    input:
        **campaign_inputs(),
    output:
        [
            report(path(layout.table, name, "csv"), category="Tables",
                   caption=f"../report/tables/{kind}.rst")
            for name, (kind, _) in TABLES_OF_CAMPAIGN.items()
        ],
        [path(layout.table, name, ext) for name in TABLES_OF_CAMPAIGN
         for ext in layout.TABLE_FORMATS if ext != "csv"],
    params:
        cmd=script("tables"),
        config=lambda wc: ordered_json_param(config),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        log_path("tables"),
    shell:
        "{params.cmd} --config-json {params.config} --out-dir {params.out_dir} 2> {log}"


rule plots:
    input:
        **campaign_inputs(),
    output:
        [
            report(path(layout.plot, name), category="Figures",
                   caption=f"../report/plots/{kind}.rst")
            for name, (kind, _) in PLOTS_OF_CAMPAIGN.items()
        ],
    params:
        cmd=script("plots"),
        config=lambda wc: ordered_json_param(config),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        log_path("plots"),
    shell:
        "{params.cmd} --config-json {params.config} --out-dir {params.out_dir} 2> {log}"
