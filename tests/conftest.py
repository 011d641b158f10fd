"""Shared test setup: one torch thread (2 cores shared by parallel work), deterministic seeds;
tests marked ``gpu`` skip, saying why, where torch sees no CUDA device."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def cuda_problem() -> str | None:
    """Why CUDA tests cannot run here, or None when torch sees a CUDA device."""
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build (install the CUDA wheel of the "
                "pinned version, see benchmarks/gpu_check.sh)")
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return None


def pytest_collection_modifyitems(config, items):
    problem = cuda_problem()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {problem}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
