"""The campaign's VNN-COMP package (results/{campaign}/specs/): generate_properties.py SEED
rebuilds the make_specs / make_instances files byte for byte, instances.csv keeps to VNN-COMP's
6 h per benchmark, and verify-benchmark runs on the package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import write_tiny_npz
from torch import nn

from vfbench.cli import main
from vfbench.data import load_dataset
from vfbench.errors import VfbenchError
from vfbench.export import export_onnx
from vfbench.specs import select_images, write_instances, write_specs
from vfbench.specs_package import SCRIPT_NAME
from vfbench.verify.benchmark import read_results

REPO = Path(__file__).resolve().parents[3]
EPS = ("0.02", "0.05")
MODEL = "tiny/net1/natural/none"


def _run(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A campaign folder as the export steps leave it: data, ONNX, specs of two eps, the
    model's instances.csv, and the package files."""
    root = tmp_path_factory.mktemp("specs") / "results" / "c"
    data = write_tiny_npz(root / "data" / "tiny.npz", 32, 12)
    dataset = load_dataset(data)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(),
                        nn.Linear(8, dataset.num_classes))
    onnx_path = root / f"onnx/{MODEL}.onnx"
    export_onnx(net, onnx_path, torch.from_numpy(dataset.x_test / np.float32(255)).float())
    images = select_images("first", dataset.y_test, 3, dataset.num_classes)
    specs = []
    for eps in EPS:
        csv_path = root / f"specs/tiny/eps{eps}/images.csv"
        write_specs(dataset.x_test, dataset.y_test, images, float(eps), dataset.num_classes,
                    csv_path.parent / "vnnlib", csv_path, selection="first")
        specs.append({"data": "data/tiny.npz", "eps": eps,
                      "images_csv": f"specs/tiny/eps{eps}/images.csv"})
    csvs = [f"specs/tiny/eps{eps}/images.csv" for eps in EPS]
    write_instances(onnx_path, [root / c for c in csvs], 30, root,
                    root / f"specs/{MODEL}/instances.csv")
    instances = [{"onnx": f"onnx/{MODEL}.onnx", "images_csvs": csvs, "timeout_s": 30,
                  "out": f"specs/{MODEL}/instances.csv"}]
    result = _run(REPO / "scripts/make_specs_package.py", "--root", root, "--layout-json",
                  json.dumps({"specs": specs, "instances": instances}))
    assert result.returncode == 0, result.stderr
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("seed", [0, 12345])
def test_generate_properties_rebuilds_the_steps_files_byte_for_byte(campaign, tmp_path, seed):
    step = _files(campaign / "specs")
    assert sum(name.endswith(".vnnlib") for name in step) == 2 * 3
    copy = tmp_path / "c"
    shutil.copytree(campaign, copy)
    for generated in ("tiny", "tiny/net1"):  # everything but the package files goes
        shutil.rmtree(copy / "specs" / generated, ignore_errors=True)
    assert not (copy / "specs/tiny").exists()
    result = _run(copy / "specs" / SCRIPT_NAME, seed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"SEED {seed}" in result.stdout
    assert _files(copy / "specs") == step


def test_generate_properties_needs_a_seed(campaign):
    result = _run(campaign / "specs" / SCRIPT_NAME)
    assert result.returncode != 0 and "usage: python generate_properties.py SEED" in result.stderr


def _csvs(campaign):
    return [campaign / f"specs/tiny/eps{eps}/images.csv" for eps in EPS]


def test_instances_keep_to_six_hours_per_benchmark(campaign, tmp_path, capsys):
    out = tmp_path / "instances.csv"
    assert write_instances("m.onnx", _csvs(campaign), 3600, campaign, out) == 3  # 6 h exactly
    assert len(out.read_text().splitlines()) == 6
    # 2 eps x 3 images x 4000 s = 6.7 h: the first 2 images of each eps (4 x 4000 s = 4.4 h)
    assert write_instances("m.onnx", _csvs(campaign), 4000, campaign, out) == 2
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert [Path(r[1]).name for r in rows] == ["img0.vnnlib", "img1.vnnlib"] * 2
    assert sum(float(r[2]) for r in rows) <= 6 * 3600
    assert "listing the first 2 images of each of the 2 eps" in capsys.readouterr().err


def test_instances_fail_clearly_when_one_image_exceeds_six_hours(campaign, tmp_path):
    out = tmp_path / "instances.csv"
    with pytest.raises(VfbenchError, match="exceeds VNN-COMP's 6 h per benchmark even for one"):
        write_instances("m.onnx", _csvs(campaign), 12000, campaign, out)
    assert not out.exists()
    result = _run(REPO / "scripts/make_instances.py", "--onnx", "m.onnx", "--images",
                  *_csvs(campaign), "--count", 3, "--timeout", 12000, "--root", campaign,
                  "--out", out)
    assert result.returncode == 1 and "verify.timeout_s" in result.stderr
    assert not out.exists()


def test_verify_benchmark_runs_on_the_package(campaign, tmp_path):
    out = tmp_path / "results_bab.csv"
    code = main(["verify-benchmark", str(campaign), "--instances",
                 f"specs/{MODEL}/instances.csv", "--verifier", "bab", "--out", str(out)])
    assert code == 0
    results = read_results(out)
    assert len(results) == 6
    assert {r["result"] for r in results} <= {"sat", "unsat"}
    by_image = {}
    for r in results:
        by_image.setdefault(Path(r["vnnlib"]).name, []).append(r["result"])
    # robustness is monotone in eps: unsat at 0.05 implies unsat at 0.02
    assert all(not (big == "unsat" and small == "sat") for small, big in by_image.values())
