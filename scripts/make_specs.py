#!/usr/bin/env python
"""Rule make_specs: one VNNLIB robustness property per selected test image at one eps."""

import argparse

from vfbench.scripting import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="dataset .npz")
    p.add_argument("--eps", type=float, required=True, help="L-inf radius in pixel space")
    p.add_argument("--images", type=int, required=True, help="how many test images")
    p.add_argument("--selection", default="first",
                   help="vfbench.specs.IMAGE_SELECTIONS key (first, class_balanced, "
                        "fgsm_agreement)")
    p.add_argument("--models", nargs="*", default=[],
                   help="checkpoints of every variant (fgsm_agreement)")
    p.add_argument("--networks", nargs="*", default=[],
                   help="the network (arch) of each --models checkpoint: FGSM must agree across "
                        "the variants of each network (default: all one network)")
    p.add_argument("--out-dir", required=True, help="folder of .vnnlib files")
    p.add_argument("--out-images", required=True, help="images.csv listing them")
    args = p.parse_args()

    from vfbench.data import load_dataset
    from vfbench.errors import VfbenchError
    from vfbench.io import load_checkpoint
    from vfbench.specs import fgsm_robust_matrix, select_images, write_specs

    dataset = load_dataset(args.data)
    if not 0 < args.eps < 1:
        raise VfbenchError(f"eps {args.eps} is not in (0, 1) (pixel space)")
    robust = None
    if args.selection == "fgsm_agreement":
        if not args.models:
            raise VfbenchError("image selection fgsm_agreement: no --models given")
        networks = args.networks or ["all"] * len(args.models)
        if len(networks) != len(args.models):
            raise VfbenchError(f"make_specs: {len(args.networks)} --networks for "
                               f"{len(args.models)} --models")
        robust = {}
        for network in dict.fromkeys(networks):
            models = [load_checkpoint(path)[0]
                      for path, of in zip(args.models, networks, strict=True) if of == network]
            robust[network] = fgsm_robust_matrix(models, dataset.x_test, dataset.y_test,
                                                 args.eps)
    indices = select_images(args.selection, dataset.y_test, args.images, dataset.num_classes,
                            robust)
    write_specs(dataset.x_test, dataset.y_test, indices, args.eps, dataset.num_classes,
                args.out_dir, args.out_images, selection=args.selection)


if __name__ == "__main__":
    run(main)
