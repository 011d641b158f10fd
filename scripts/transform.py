#!/usr/bin/env python
"""Rule transform: apply a transform entry (grafting, activation / neuron / weight pruning, or
none) to a trained model, fine-tune as the method says, and save the model and its report."""

import argparse
import sys
import time

from vfbench.scripting import add_compute_args, json_arg, run, setup_compute


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True, help="base model checkpoint .pt")
    p.add_argument("--data", required=True, help="dataset .npz")
    p.add_argument("--entry-json", type=json_arg, required=True, help="transform entry")
    p.add_argument("--scores", nargs="*", default=[],
                   help="score .npz files from scripts/scores.py (the ids needs_scores lists); "
                        "a missing one is computed in place")
    p.add_argument("--out", required=True, help="transformed checkpoint .pt")
    p.add_argument("--out-report", required=True, help="report .json")
    add_compute_args(p)
    args = p.parse_args()

    from vfbench.data import load_dataset
    from vfbench.io import load_checkpoint, save_checkpoint, write_json
    from vfbench.models import count_parameters, count_relus
    from vfbench.transforms import needs_scores, resolve_transform_entry
    from vfbench.transforms.methods import TRANSFORMS
    from vfbench.transforms.report import network_sizes
    from vfbench.transforms.scores import load_scores

    device = setup_compute(args)
    entry = resolve_transform_entry(args.entry_json)
    scores = {s.spec.id: s for s in map(load_scores, args.scores)}
    missing = [i for i in needs_scores(entry) if i not in scores]
    if missing:
        print(f"note: scores {missing} not given; computing them in place", file=sys.stderr)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    dataset = load_dataset(args.data)
    start = time.perf_counter()
    result = TRANSFORMS[entry["method"]](model, ckpt, dataset, entry, device, scores)
    seconds = time.perf_counter() - start
    report = {**result.report, "seconds": seconds, "checkpoint": args.checkpoint,
              "scores_given": sorted(scores), "sizes": network_sizes(result.model)}
    metrics = {"transform_seconds": seconds, "parameters": count_parameters(result.model),
               "relus": count_relus(result.model),
               "test_acc": report.get("accuracy", {}).get("finetuned")}
    save_checkpoint(args.out, model=result.model, arch=ckpt["arch"],
                    arch_kwargs=result.arch_kwargs,
                    config={**ckpt["config"], "transform": entry}, metrics=metrics)
    write_json(args.out_report, report)


if __name__ == "__main__":
    run(main)
