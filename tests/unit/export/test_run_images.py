"""A verification run on fewer images than its specs hold (a model's or a verifier's `images`):
the rule scripts verify, merge and list exactly the first ones, and a class_balanced run keeps k
images per class."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
import torch
from run_script import run_script
from tiny_data import write_tiny_npz
from torch import nn

from vfbench.data import load_dataset
from vfbench.errors import VfbenchError
from vfbench.export import export_onnx
from vfbench.specs import run_images, select_images, write_instances, write_specs

EPS = 0.02


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Data of 10 classes, a tiny ONNX model, and class_balanced specs of 20 images (2 per
    class) written by the make_specs script."""
    root = tmp_path_factory.mktemp("subset")
    data = write_tiny_npz(root / "data.npz", 32, 100, classes=10)
    dataset = load_dataset(data)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10))
    export_onnx(net, root / "m.onnx", torch.from_numpy(dataset.x_test / np.float32(255)).float())
    run_script("make_specs.py", "--data", data, "--eps", EPS, "--images", 20, "--selection",
               "class_balanced", "--out-dir", root / "vnnlib", "--out-images", root / "images.csv")
    return root


def test_the_shard_and_merge_scripts_verify_only_the_runs_images(campaign, capsys):
    rows = run_images(campaign / "images.csv", 20)
    shards = []
    for k, (start, stop) in enumerate(((0, 6), (6, 10))):  # a run of 10 in shards of 6
        shards.append(campaign / f"shard{k}.jsonl")
        run_script("verify_shard.py", "--onnx", campaign / "m.onnx", "--data",
                   campaign / "data.npz", "--images", campaign / "images.csv", "--count", 10,
                   "--positions", start, stop, "--eps", EPS, "--verifier", "crown",
                   "--entry-json", '{"method": "crown"}', "--timeout", 30, "--threads", 1,
                   "--out", shards[-1])
    run_script("merge_verify.py", "--shards", *shards, "--images", campaign / "images.csv",
               "--count", 10, "--out", campaign / "run.parquet")
    merged = pd.read_parquet(campaign / "run.parquet")
    assert sorted(merged["image"]) == sorted(r["image"] for r in rows[:10])
    assert np.bincount(merged["label"], minlength=10).tolist() == [1] * 10
    # the same shards are not the whole specs' run
    with pytest.raises(SystemExit):
        run_script("merge_verify.py", "--shards", *shards, "--images", campaign / "images.csv",
                   "--count", 20, "--out", campaign / "all.parquet")
    assert "missing images" in capsys.readouterr().err
    assert not (campaign / "all.parquet").exists()
    with pytest.raises(SystemExit):
        run_script("verify_shard.py", "--onnx", campaign / "m.onnx", "--data",
                   campaign / "data.npz", "--images", campaign / "images.csv", "--count", 10,
                   "--positions", 6, 12, "--eps", EPS, "--verifier", "crown", "--entry-json",
                   '{"method": "crown"}', "--timeout", 30, "--out", campaign / "bad.jsonl")
    assert "the run verifies 10 images" in capsys.readouterr().err


def test_a_class_balanced_run_must_keep_k_per_class(campaign):
    assert len(run_images(campaign / "images.csv", 10)) == 10
    with pytest.raises(VfbenchError, match=r"first 15 class_balanced images are not as many of "
                                           r"every class \(per class: \[2, 2, 2, 2, 2, 1, 1"):
        run_images(campaign / "images.csv", 15)
    with pytest.raises(VfbenchError, match="20 images, a run on 21 asked for"):
        run_images(campaign / "images.csv", 21)


def test_specs_written_in_test_order_are_caught(tmp_path):
    """Specs written before class_balanced listed its images rank by rank: a prefix of them
    is not balanced, and a run on it fails instead of verifying a skewed subset."""
    labels = np.array(list(range(10)) * 2)
    images = sorted(select_images("class_balanced", labels, 20, 10), key=lambda i: labels[i])
    write_specs(np.zeros((20, 1, 2, 2), np.uint8), labels, images, EPS, 10, tmp_path / "v",
                tmp_path / "images.csv", selection="class_balanced")
    with pytest.raises(VfbenchError, match=r"per class: \[2, 2, 2, 2, 2, 0, 0, 0, 0, 0\]"):
        run_images(tmp_path / "images.csv", 10)


def test_instances_list_the_models_images(campaign, tmp_path):
    out = tmp_path / "instances.csv"
    assert write_instances(campaign / "m.onnx", [campaign / "images.csv"], 30, campaign, out,
                           images=10) == 10
    with open(out, newline="") as fh:
        listed = [row[1] for row in csv.reader(fh)]
    assert listed == [f"vnnlib/{r['vnnlib']}" for r in run_images(campaign / "images.csv", 10)]
