# Robustness verification, sharded over images; each shard journals finished images and resumes.


rule verify_shard:
    input:
        onnx=f"{RESULTS}/onnx/{{dataset}}/{{arch}}/{{train}}/{{transform}}.onnx",
        data=f"{RESULTS}/data/{{dataset}}.npz",
        images=f"{RESULTS}/specs/{{dataset}}/eps{{eps}}/images.csv",
    output:
        f"{RESULTS}/verify/{{dataset}}/{{arch}}/{{train}}/{{transform}}/{{verifier}}/eps{{eps}}/shard{{shard}}.jsonl",
    params:
        cmd=script("verify_shard"),
        compute=COMPUTE,
        entry=lambda wc: json_param(VERIFIERS[wc.verifier].entry),
        bounds=lambda wc: " ".join(map(str, shard_bounds(config, int(wc.shard)))),
        timeout=lambda wc: VERIFIERS[wc.verifier].timeout_s,
    log:
        f"{RESULTS}/logs/verify_shard/{{dataset}}/{{arch}}/{{train}}/{{transform}}/{{verifier}}/eps{{eps}}/shard{{shard}}.log",
    threads: config["threads"]
    resources:
        **rule_resources("verify_shard", runtime=verify_runtime_minutes, mem_mb=4000),
    shell:
        "{params.cmd} --onnx {input.onnx} --data {input.data}"
        " --images {input.images} --positions {params.bounds} --eps {wildcards.eps}"
        " --verifier {wildcards.verifier} --entry-json {params.entry}"
        " --timeout {params.timeout}"
        " {params.compute}"
        " --out {output} 2> {log}"


rule merge_verify:
    input:
        shards=lambda wc: expand(
            f"{RESULTS}/verify/{wc.dataset}/{wc.arch}/{wc.train}/{wc.transform}/{wc.verifier}/eps{wc.eps}/shard{{shard}}.jsonl",
            shard=SHARDS,
        ),
        images=f"{RESULTS}/specs/{{dataset}}/eps{{eps}}/images.csv",
    output:
        f"{RESULTS}/verify/{{dataset}}/{{arch}}/{{train}}/{{transform}}/{{verifier}}/eps{{eps}}.parquet",
    params:
        cmd=script("merge_verify"),
    log:
        f"{RESULTS}/logs/merge_verify/{{dataset}}/{{arch}}/{{train}}/{{transform}}/{{verifier}}/eps{{eps}}.log",
    shell:
        "{params.cmd} --shards {input.shards} --images {input.images}"
        " --out {output} 2> {log}"
