#!/usr/bin/env python
"""Rule merge_verify: the shards of one (model, verifier, eps) as one parquet table, checked
complete (every image of the run exactly once: the first COUNT of the specs' images.csv)."""

import argparse

from vfbench.scripting import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shards", nargs="+", required=True, help="shard .jsonl files")
    p.add_argument("--images", required=True, help="images.csv of make_specs")
    p.add_argument("--count", type=int, required=True, help="how many images the run verifies")
    p.add_argument("--out", required=True, help=".parquet")
    args = p.parse_args()

    from vfbench.specs import run_images
    from vfbench.verify.records import merge_shards

    expected = [r["image"] for r in run_images(args.images, args.count)]
    merge_shards(args.shards, args.out, expected_images=expected)


if __name__ == "__main__":
    run(main)
