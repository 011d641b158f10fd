rule fetch_data:
    output:
        npz=f"{RESULTS}/data/{{dataset}}.npz",
        card=f"{RESULTS}/data/{{dataset}}.json",
    params:
        cmd=script("fetch_data"),
        entry=lambda wc: json_param(config["data"][wc.dataset]),
        cache=f"{config['results_dir']}/.cache/downloads",
    log:
        f"{RESULTS}/logs/fetch_data/{{dataset}}.log",
    resources:
        **rule_resources("fetch_data"),
    shell:
        "{params.cmd} --name {wildcards.dataset} --entry-json {params.entry}"
        " --cache-dir {params.cache} --out-npz {output.npz} --out-card {output.card} 2> {log}"
