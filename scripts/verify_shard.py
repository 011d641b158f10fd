#!/usr/bin/env python
"""Rule verify_shard: verify a slice of a campaign's test images against the exported ONNX model
with one verifier, journaling each finished image so a killed shard resumes where it stopped."""

import argparse

from vfbench.scripting import add_compute_args, json_arg, run, setup_compute


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--onnx", required=True, help="the exported model (what is verified)")
    p.add_argument("--data", required=True, help="dataset .npz (images by index, exact pixels)")
    p.add_argument("--images", required=True, help="images.csv of make_specs")
    p.add_argument("--count", type=int, required=True,
                   help="how many images the run verifies: the first COUNT of images.csv")
    p.add_argument("--positions", type=int, nargs=2, required=True, metavar=("START", "STOP"),
                   help="rows [START, STOP) of images.csv form this shard")
    p.add_argument("--eps", type=float, required=True)
    p.add_argument("--verifier", required=True, help="the config's short name of the verifier")
    p.add_argument("--entry-json", type=json_arg, required=True,
                   help="its method and options, resolved (vfbench.config.VerifierSpec.entry)")
    p.add_argument("--timeout", type=float, required=True, help="seconds per image")
    p.add_argument("--out", required=True, help="shard .jsonl (written when all images are done)")
    add_compute_args(p)
    args = p.parse_args()

    from vfbench.errors import VfbenchError
    from vfbench.specs import run_images
    from vfbench.verify.records import write_jsonl
    from vfbench.verify.shard import instances_from_dataset, shard_journal, verify_shard

    device = setup_compute(args)
    rows = run_images(args.images, args.count)
    start, stop = args.positions
    if not 0 <= start < stop <= len(rows):
        raise VfbenchError(f"--positions {start} {stop}: the run verifies {len(rows)} images "
                           f"of {args.images}")
    instances = instances_from_dataset(args.data, [r["image"] for r in rows[start:stop]])
    journal = shard_journal(args.out, onnx_path=args.onnx, entry=args.entry_json, eps=args.eps,
                            timeout_s=args.timeout, instances=instances)
    records = verify_shard(args.onnx, instances, args.eps, args.verifier, args.entry_json,
                           args.timeout, journal, device=device)
    write_jsonl(args.out, records)
    journal.unlink()


if __name__ == "__main__":
    run(main)
