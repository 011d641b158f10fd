rule fold_bn:
    input:
        model=path(layout.transformed_checkpoint),
        data=path(layout.data_npz),
    output:
        path(layout.folded_checkpoint),
    params:
        cmd=script("fold_bn"),
        tolerance=config["fold"]["tolerance"],
    log:
        log_path("fold_bn", layout.MODEL),
    resources:
        **rule_resources("fold_bn"),
    shell:
        "{params.cmd} --model {input.model} --data {input.data}"
        " --tolerance {params.tolerance} --out {output} 2> {log}"


rule export_onnx:
    input:
        model=path(layout.folded_checkpoint),
        data=path(layout.data_npz),
    output:
        onnx=path(layout.onnx_model),
        check=path(layout.onnx_check),
    params:
        cmd=script("export_onnx"),
        settings=lambda wc: json_param(config["export"]),
    log:
        log_path("export_onnx", layout.MODEL),
    resources:
        **rule_resources("export_onnx"),
    shell:
        "{params.cmd} --model {input.model} --data {input.data}"
        " --settings-json {params.settings} --out {output.onnx} --out-check {output.check}"
        " 2> {log}"


# The images of a (dataset, eps): as many as the most any model verified there asks for; a model
# or verifier with fewer takes the first ones (vfbench.config.spec_images).
rule make_specs:
    input:
        data=path(layout.data_npz),
        models=spec_models,
    output:
        vnnlib=directory(path(layout.vnnlib_folder)),
        images=path(layout.images_csv),
    params:
        cmd=script("make_specs"),
        images=lambda wc: SPEC_IMAGES[(wc.dataset, wc.eps)],
        selection=config["verify"]["image_selection"],
        networks=spec_networks,
    log:
        log_path("make_specs", layout.DATASET, f"eps{layout.EPS}"),
    resources:
        **rule_resources("make_specs"),
    shell:
        "{params.cmd} --data {input.data} --eps {wildcards.eps}"
        " --images {params.images} --selection {params.selection} --models {input.models}"
        " --networks {params.networks} --out-dir {output.vnnlib} --out-images {output.images}"
        " 2> {log}"


# One model's VNN-COMP benchmark: its images at each of its eps (vfbench.layout.specs_package_layout).
rule make_instances:
    input:
        onnx=path(layout.onnx_model),
        images=lambda wc: [f"{RESULTS}/{p}" for p in INSTANCES_BY_ID[model_id(wc)]["images_csvs"]],
    output:
        path(layout.instances_csv),
    params:
        cmd=script("make_instances"),
        n_images=lambda wc: INSTANCES_BY_ID[model_id(wc)]["images"],
        timeout=lambda wc: INSTANCES_BY_ID[model_id(wc)]["timeout_s"],
        root=lambda wc, output: layout.folder_of(output[0], layout.instances_csv(model_id(wc))),
    log:
        log_path("make_instances", layout.MODEL),
    shell:
        "{params.cmd} --onnx {input.onnx} --images {input.images} --count {params.n_images}"
        " --timeout {params.timeout} --root {params.root} --out {output} 2> {log}"


rule specs_package:
    input:
        images=[f"{RESULTS}/{e['images_csv']}" for e in SPECS_PACKAGE_LAYOUT["specs"]],
        instances=[f"{RESULTS}/{e['out']}" for e in SPECS_PACKAGE_LAYOUT["instances"]],
    output:
        package=f"{RESULTS}/{layout.SPECS_PACKAGE}",
        script=f"{RESULTS}/{layout.GENERATE_PROPERTIES}",
    params:
        cmd=script("make_specs_package"),
        root=lambda wc, output: layout.folder_of(output.package, layout.SPECS_PACKAGE),
        layout=json_param(SPECS_PACKAGE_LAYOUT),
    log:
        log_path("specs_package"),
    shell:
        "{params.cmd} --root {params.root} --layout-json {params.layout} 2> {log}"
