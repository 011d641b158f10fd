#!/usr/bin/env python
"""Rule scores: one per-neuron score of a trained model (instability r_u or a significance r_s),
as an npz that several transform entries reuse (ids from vfbench.transforms.needs_scores).
Hydra learns on the dataset's training split (all of it for ids with 'train') with the base
checkpoint's recorded training losses (ids with 'base'); its meta records the objective."""

import argparse
import time

from vfbench.scripting import add_compute_args, run, setup_compute


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True, help="base model checkpoint .pt")
    p.add_argument("--data", required=True, help="dataset .npz (its training split is scored)")
    p.add_argument("--score", required=True,
                   help="score id, e.g. instability-crown-eps0.1-n1000, gap-n1000, "
                        "hydra-train-base-keep0.5-e5, hydra-n1000-natural-keep0.5-e5")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per bound/gradient batch (Hydra with loss 'base' learns with "
                        "the base training's batch size)")
    p.add_argument("--out", required=True, help="score .npz")
    add_compute_args(p)
    args = p.parse_args()

    from vfbench.data import load_dataset
    from vfbench.io import load_checkpoint
    from vfbench.runtime import describe_device
    from vfbench.transforms.score_specs import parse_score_id
    from vfbench.transforms.scores import compute_score, save_scores

    device = setup_compute(args)
    spec = parse_score_id(args.score)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    dataset = load_dataset(args.data)
    start = time.perf_counter()
    recorded: dict = {}
    raw = compute_score(spec, model, dataset, device, args.batch_size, args.seed, ckpt=ckpt,
                        meta=recorded)
    save_scores(args.out, spec, raw, {"checkpoint": args.checkpoint, "arch": ckpt["arch"],
                                      "seconds": time.perf_counter() - start,
                                      "batch_size": args.batch_size, "seed": args.seed,
                                      "device": describe_device(device), **recorded})


if __name__ == "__main__":
    run(main)
