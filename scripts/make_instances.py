#!/usr/bin/env python
"""Rule make_instances: a VNN-COMP instances.csv pairing a model's ONNX with its properties."""

import argparse

from vfbench.scripting import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--onnx", required=True)
    p.add_argument("--images", nargs="+", required=True, help="images.csv of each eps")
    p.add_argument("--count", type=int, required=True,
                   help="the model's images: the first COUNT of each images.csv")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--root", required=True, help="paths in the csv are relative to this folder")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from vfbench.specs import write_instances

    write_instances(args.onnx, args.images, args.timeout, args.root, args.out,
                    images=args.count)


if __name__ == "__main__":
    run(main)
