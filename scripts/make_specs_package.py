#!/usr/bin/env python
"""Rule specs_package: the campaign's VNN-COMP package files, specs/package.json and
specs/generate_properties.py (vfbench.specs_package)."""

import argparse

from vfbench.scripting import json_arg, run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", required=True, help="the campaign folder (paths are relative to it)")
    p.add_argument("--layout-json", type=json_arg, required=True,
                   help='{"specs": [{data, eps, images_csv}], "instances": [{onnx, '
                        'images_csvs, timeout_s, out}]}')
    args = p.parse_args()

    from vfbench.specs_package import write_package

    write_package(args.root, args.layout_json["specs"], args.layout_json["instances"])


if __name__ == "__main__":
    run(main)
