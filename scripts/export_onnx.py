#!/usr/bin/env python
"""Rule export_onnx: write the folded model as ONNX and check it with onnx and onnxruntime."""

import argparse

from vfbench.scripting import json_arg, run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="folded checkpoint .pt")
    p.add_argument("--data", required=True, help="dataset .npz (test images for the check)")
    p.add_argument("--settings-json", type=json_arg, required=True,
                   help="the config's `export` block, defaults filled in (opset, tolerance, "
                        "graft_form)")
    p.add_argument("--check-images", type=int, default=256)
    p.add_argument("--out", required=True, help=".onnx")
    p.add_argument("--out-check", required=True, help=".json with the check figures")
    args = p.parse_args()

    from vfbench.data import load_dataset
    from vfbench.export import export_onnx
    from vfbench.io import load_checkpoint, provenance, write_json

    model, ckpt = load_checkpoint(args.model)
    x, _ = load_dataset(args.data).tensors("test", limit=args.check_images)
    settings = args.settings_json
    check = export_onnx(model, args.out, x, opset=settings["opset"],
                        tolerance=settings["tolerance"], graft_form=settings["graft_form"],
                        metadata={"arch": ckpt["arch"], "config": ckpt["config"]})
    write_json(args.out_check, {"check": check, "export": settings, "arch": ckpt["arch"],
                                "config": ckpt["config"], "provenance": provenance()})


if __name__ == "__main__":
    run(main)
