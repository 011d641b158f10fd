rule fetch_data:
    output:
        npz=path(layout.data_npz),
        card=path(layout.data_card),
    params:
        cmd=script("fetch_data"),
        entry=lambda wc: json_param(config["data"][wc.dataset]),
        cache=f"{config['results_dir']}/.cache/downloads",
    log:
        log_path("fetch_data", layout.DATASET),
    resources:
        **rule_resources("fetch_data"),
    shell:
        "{params.cmd} --name {wildcards.dataset} --entry-json {params.entry}"
        " --cache-dir {params.cache} --out-npz {output.npz} --out-card {output.card} 2> {log}"
