"""CUDA paths of verification (marked ``gpu``: skipped, saying why, where torch sees no CUDA
device; benchmarks/gpu_check.sh runs them on a GPU machine). Each compares the CUDA run with the
CPU run of the same instances: bounds agree to float tolerance, decided verdicts are equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.shard import verify_shard
from vfbench.verify.verifiers import VERIFIERS

pytestmark = pytest.mark.gpu

NO_PGD = {"pgd_steps": 0}
DECIDED = ("verified", "falsified")
EPS = 0.05
# MLP test images that need branching at EPS (as in test_bab) and a few easy ones.
IMAGES = (201, 202, 203, 216, 220, 225)
REPO = Path(__file__).resolve().parents[3]


def _records(name, onnx, synthetic, device, options=None):
    x, y = synthetic
    verifier = VERIFIERS[name](load_onnx(onnx), {**NO_PGD, **(options or {})}, device, name=name)
    assert verifier.device.type == torch.device(device).type
    return [verifier.verify(x[i], int(y[i]), EPS, 60.0, image=i) for i in IMAGES]


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha_crown"])
def test_bounds_on_cuda_equal_the_cpu_bounds(method, mlp_onnx, synthetic):
    x, y = synthetic
    labels = [int(y[i]) for i in IMAGES]
    batch = x[list(IMAGES)]
    lower = {}
    for device in ("cpu", "cuda"):
        verifier = VERIFIERS["crown"](load_onnx(mlp_onnx), NO_PGD, device, name="crown")
        bounds = verifier.bounds(batch.to(device), labels, EPS, method, None)
        assert bounds.lower.device.type == device
        lower[device] = bounds.lower.cpu()
    # alpha-CROWN optimises on each device: close, not bit-equal
    tolerance = 1e-4 if method != "alpha_crown" else 1e-2
    torch.testing.assert_close(lower["cuda"], lower["cpu"], atol=tolerance, rtol=tolerance)


def test_bab_on_cuda_decides_as_on_cpu(mlp_onnx, synthetic):
    cpu = _records("bab", mlp_onnx, synthetic, "cpu")
    cuda = _records("bab", mlp_onnx, synthetic, "cuda")
    for a, b in zip(cpu, cuda, strict=True):
        assert b["status"] in DECIDED, b
        assert a["status"] == b["status"], (a, b)


def test_milp_with_its_bounds_on_cuda_decides_as_on_cpu(mlp_onnx, synthetic):
    """MILP's bound step (the pre-activation bounds that tighten the big-M encoding) on CUDA."""
    cpu = _records("milp", mlp_onnx, synthetic, "cpu")
    cuda = _records("milp", mlp_onnx, synthetic, "cuda")
    for a, b in zip(cpu, cuda, strict=True):
        assert a["status"] == b["status"], (a, b)
    assert any(r["status"] in DECIDED for r in cuda)


def test_a_shard_with_device_cuda(mlp_onnx, synthetic, tmp_path):
    x, y = synthetic
    instances = [(i, x[i].numpy(), int(y[i])) for i in IMAGES]
    records = {}
    for device in ("cpu", "cuda"):
        records[device] = verify_shard(mlp_onnx, instances, EPS, "bab", {}, 60.0,
                                       tmp_path / f"{device}.jsonl", device=device)
    assert [r["status"] for r in records["cuda"]] == [r["status"] for r in records["cpu"]]
    for record in records["cuda"]:
        if record["status"] == "falsified":  # re-checked by onnxruntime inside the verifier
            assert np.asarray(record["counterexample"]).size > 0


def run_shard_script(onnx, synthetic, folder: Path, device: str) -> list[dict]:
    """scripts/verify_shard.py on the MLP's IMAGES with CROWN; its records."""
    x, y = synthetic
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data.npz"
    pixels = (x.numpy() * 255).round().astype(np.uint8)
    labels = y.numpy().astype(np.int64)
    np.savez(data, x_train=pixels[:8], y_train=labels[:8], x_test=pixels, y_test=labels)
    csv = folder / "images.csv"
    csv.write_text("image,label,vnnlib,selection\n"
                   + "".join(f"{i},{labels[i]},img{i}.vnnlib,first\n" for i in IMAGES))
    out = folder / "shard0.jsonl"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/verify_shard.py"), "--onnx", str(onnx),
         "--data", str(data), "--images", str(csv), "--count", str(len(IMAGES)),
         "--positions", "0", str(len(IMAGES)),
         "--eps", str(EPS), "--verifier", "crown", "--entry-json", json.dumps({"method": "crown"}),
         "--timeout", "30", "--out", str(out), "--device", device, "--threads", "1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_the_verify_shard_script_with_device_cuda(mlp_onnx, synthetic, tmp_path):
    """scripts/verify_shard.py --device cuda: what a campaign with `device: cuda` runs."""
    cuda = run_shard_script(mlp_onnx, synthetic, tmp_path / "cuda", "cuda")
    cpu = run_shard_script(mlp_onnx, synthetic, tmp_path / "cpu", "cpu")
    assert [r["image"] for r in cuda] == list(IMAGES)
    assert all(r["status"] != "error" for r in cuda), cuda
    assert [r["status"] for r in cuda] == [r["status"] for r in cpu]
    bounded = [k for k, r in enumerate(cpu) if r["margin_lb"] is not None]
    assert bounded, cpu  # CROWN bounded some image (the others: falsified or misclassified)
    np.testing.assert_allclose([cuda[k]["margin_lb"] for k in bounded],
                               [cpu[k]["margin_lb"] for k in bounded], atol=1e-4, rtol=1e-4)
