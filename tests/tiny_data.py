"""A tiny random dataset file in the fetch step's npz format, for tests that run real steps."""

from pathlib import Path

import numpy as np


def write_tiny_npz(path: Path, n_train: int, n_test: int, classes: int = 3) -> Path:
    """Random 1x4x4 uint8 images with ``classes`` labels (seeded), written to ``path``."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 1, 4, 4), dtype=np.uint8),
             y_train=rng.integers(0, classes, n_train),
             x_test=rng.integers(0, 256, (n_test, 1, 4, 4), dtype=np.uint8),
             y_test=rng.integers(0, classes, n_test))
    return path
