# Robustness verification, sharded over images; each shard journals finished images and resumes.
# A run (model, verifier, eps) verifies the first images of its dataset's specs at eps: its
# model's `images`, at most its verifier's (vfbench.config.VerifyRun).


rule verify_shard:
    input:
        onnx=path(layout.onnx_model),
        data=path(layout.data_npz),
        images=path(layout.images_csv),
    output:
        path(layout.verify_shard),
    params:
        cmd=script("verify_shard"),
        compute=COMPUTE,
        entry=lambda wc: json_param(VERIFIERS[wc.verifier].entry),
        n_images=lambda wc: run_of(wc).images,
        bounds=lambda wc: " ".join(map(str, run_of(wc).shard_bounds(int(wc.shard)))),
        timeout=lambda wc: VERIFIERS[wc.verifier].timeout_s,
    log:
        log_path("verify_shard", layout.MODEL, layout.VERIFIER, f"eps{layout.EPS}",
                 f"shard{layout.SHARD}"),
    threads: config["threads"]
    resources:
        **rule_resources("verify_shard", runtime=verify_runtime_minutes, mem_mb=4000),
    shell:
        "{params.cmd} --onnx {input.onnx} --data {input.data}"
        " --images {input.images} --count {params.n_images} --positions {params.bounds}"
        " --eps {wildcards.eps}"
        " --verifier {wildcards.verifier} --entry-json {params.entry}"
        " --timeout {params.timeout}"
        " {params.compute}"
        " --out {output} 2> {log}"


rule merge_verify:
    input:
        shards=lambda wc: [
            path(layout.verify_shard, model_id(wc), wc.verifier, wc.eps, k)
            for k in range(run_of(wc).shards)
        ],
        images=path(layout.images_csv),
    output:
        path(layout.verify_merged),
    params:
        cmd=script("merge_verify"),
        n_images=lambda wc: run_of(wc).images,
    log:
        log_path("merge_verify", layout.MODEL, layout.VERIFIER, f"eps{layout.EPS}"),
    shell:
        "{params.cmd} --shards {input.shards} --images {input.images} --count {params.n_images}"
        " --out {output} 2> {log}"
