rule fold_bn:
    input:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/{{transform}}/model.pt",
        data=f"{RESULTS}/data/{{dataset}}.npz",
    output:
        f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/{{transform}}/folded.pt",
    params:
        cmd=script("fold_bn"),
        tolerance=config["fold"]["tolerance"],
    log:
        f"{RESULTS}/logs/fold_bn/{{dataset}}/{{arch}}/{{train}}/{{transform}}.log",
    resources:
        **rule_resources("fold_bn"),
    shell:
        "{params.cmd} --model {input.model} --data {input.data}"
        " --tolerance {params.tolerance} --out {output} 2> {log}"


rule export_onnx:
    input:
        model=f"{RESULTS}/models/{{dataset}}/{{arch}}/{{train}}/{{transform}}/folded.pt",
        data=f"{RESULTS}/data/{{dataset}}.npz",
    output:
        onnx=f"{RESULTS}/onnx/{{dataset}}/{{arch}}/{{train}}/{{transform}}.onnx",
        check=f"{RESULTS}/onnx/{{dataset}}/{{arch}}/{{train}}/{{transform}}.json",
    params:
        cmd=script("export_onnx"),
        settings=lambda wc: json_param(config["export"]),
    log:
        f"{RESULTS}/logs/export_onnx/{{dataset}}/{{arch}}/{{train}}/{{transform}}.log",
    resources:
        **rule_resources("export_onnx"),
    shell:
        "{params.cmd} --model {input.model} --data {input.data}"
        " --settings-json {params.settings} --out {output.onnx} --out-check {output.check}"
        " 2> {log}"


rule make_specs:
    input:
        data=f"{RESULTS}/data/{{dataset}}.npz",
        models=spec_models,
    output:
        vnnlib=directory(f"{RESULTS}/specs/{{dataset}}/eps{{eps}}/vnnlib"),
        images=f"{RESULTS}/specs/{{dataset}}/eps{{eps}}/images.csv",
    params:
        cmd=script("make_specs"),
        images=config["verify"]["images"],
        selection=config["verify"]["image_selection"],
        networks=spec_networks,
    log:
        f"{RESULTS}/logs/make_specs/{{dataset}}/eps{{eps}}.log",
    resources:
        **rule_resources("make_specs"),
    shell:
        "{params.cmd} --data {input.data} --eps {wildcards.eps}"
        " --images {params.images} --selection {params.selection} --models {input.models}"
        " --networks {params.networks} --out-dir {output.vnnlib} --out-images {output.images}"
        " 2> {log}"


rule make_instances:
    input:
        onnx=f"{RESULTS}/onnx/{{dataset}}/{{arch}}/{{train}}/{{transform}}.onnx",
        images=lambda wc: [f"{RESULTS}/specs/{wc.dataset}/eps{format_eps(e)}/images.csv"
                           for e in model_of(wc).eps],
    output:
        f"{RESULTS}/specs/{{dataset}}/{{arch}}/{{train}}/{{transform}}/instances.csv",
    params:
        cmd=script("make_instances"),
        timeout=config["verify"]["timeout_s"],
        root=lambda wc, output: output[0].split("/specs/")[0],
    log:
        f"{RESULTS}/logs/make_instances/{{dataset}}/{{arch}}/{{train}}/{{transform}}.log",
    shell:
        "{params.cmd} --onnx {input.onnx} --images {input.images}"
        " --timeout {params.timeout} --root {params.root} --out {output} 2> {log}"


rule specs_package:
    input:
        images=lambda wc: [f"{RESULTS}/{e['images_csv']}" for e in specs_package_layout()["specs"]],
        instances=lambda wc: [f"{RESULTS}/{e['out']}"
                              for e in specs_package_layout()["instances"]],
    output:
        package=f"{RESULTS}/specs/package.json",
        script=f"{RESULTS}/specs/generate_properties.py",
    params:
        cmd=script("make_specs_package"),
        root=lambda wc, output: os.path.dirname(os.path.dirname(output.package)),
        layout=lambda wc: json_param(specs_package_layout()),
    log:
        f"{RESULTS}/logs/specs_package.log",
    shell:
        "{params.cmd} --root {params.root} --layout-json {params.layout} 2> {log}"
