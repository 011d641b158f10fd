"""Atomic outputs, checkpoints and provenance shared by every step.

Every file a rule produces is written under a temporary name in the same folder and renamed, so
Snakemake never sees a half-written output as done.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vfbench import __version__
from vfbench.errors import VfbenchError

_UMASK = os.umask(0)
os.umask(_UMASK)

_TRACKED_LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "auto_LiRPA", "pulp", "snakemake")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs follow the umask
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically, keys in insertion order: a report's sites stay in network order (body.10
    after body.9), as the figures and tables that read them expect."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise VfbenchError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise VfbenchError(f"{path}: not valid JSON ({exc})") from exc


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def git_commit() -> str:
    """The commit of the vfbench checkout (with '-dirty' if modified), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "vfbench": __version__}
    for name in _TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def provenance() -> dict[str, Any]:
    """What every artifact carries besides its config: library versions, git commit, host."""
    return {
        "versions": library_versions(),
        "git_commit": git_commit(),
        "host": platform.node(),
    }


def save_checkpoint(path: str | os.PathLike, *, model, arch: str, arch_kwargs: dict,
                    config: dict, metrics: dict, extra: dict | None = None) -> None:
    """Save a model checkpoint as docs/design.md fixes it: loading it never needs the config file.

    ``config`` holds the resolved config of every step so far (``{"data": ..., "train": ...}``).
    """
    import torch

    from vfbench.models import activation_sites

    ckpt = {
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "sites": activation_sites(model),
        "config": config,
        "metrics": metrics,
        "provenance": provenance(),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu"):
    """Return ``(model, checkpoint_dict)``; a bad file is a VfbenchError naming the path."""
    import torch

    from vfbench.models import build_model

    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError as exc:
        raise VfbenchError(f"{path}: checkpoint not found") from exc
    except Exception as exc:  # torch raises many types for a corrupt file
        raise VfbenchError(f"{path}: not a readable checkpoint ({exc})") from exc
    missing = [k for k in ("arch", "arch_kwargs", "state_dict", "config") if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise VfbenchError(f"{path}: not a vfbench checkpoint (missing {missing})")
    model = build_model(ckpt["arch"], **ckpt["arch_kwargs"])
    model.prepare_for_state_dict(ckpt["state_dict"])
    if ckpt.get("bn_folded"):
        from vfbench.fold import strip_batchnorm

        strip_batchnorm(model, ckpt["state_dict"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise VfbenchError(f"{path}: weights do not fit arch {ckpt['arch']!r} ({exc})") from exc
    return model.to(device), ckpt
