"""CUDA paths of training (marked ``gpu``: skipped, saying why, where torch sees no CUDA device;
benchmarks/gpu_check.sh runs them on a GPU machine)."""

import pytest
import torch

from vfbench.train import train_model

pytestmark = pytest.mark.gpu

SHORT = {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adam", "lr": 1e-2},
         "schedule": {"name": "none"}}


@pytest.mark.parametrize("losses", [{"natural": 1.0}, {"pgd": 1.0}, {"crown_ibp": 1.0},
                                    {"natural": 1.0, "nbc": 0.1}])
def test_training_on_cuda_matches_cpu(dataset, make_model, losses):
    """Same seed, same batches: the CUDA run's losses follow the CPU run's, and the model ends on
    the GPU with its metrics saying so."""
    results = {}
    for device in ("cpu", "cuda"):
        model = make_model("cnn_4layer")
        results[device] = train_model(model, dataset, {**SHORT, "losses": losses}, device,
                                      seed=0)
        assert next(model.parameters()).device.type == device
    assert results["cuda"]["metrics"]["device"].startswith("cuda:")
    cpu_loss = [row["loss"] for row in results["cpu"]["history"]]
    cuda_loss = [row["loss"] for row in results["cuda"]["history"]]
    # kernels differ (TF32, reduction order): close, not bit-equal
    assert cuda_loss == pytest.approx(cpu_loss, rel=0.05, abs=0.02)
    assert torch.isfinite(torch.tensor(cuda_loss)).all()
