"""One verification shard: a few images of one (model, verifier, eps), resumable; and the merge.

The shard loads the ONNX file once (start-up paid once per shard, not per image), checks the
converted model against onnxruntime on every image before verifying it (a mismatch is an
``error`` record, never a verdict), and appends each finished image's record to a JSON-lines
journal. Re-running a shard skips the images its journal already holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vfbench.errors import VfbenchError
from vfbench.verify.onnx_import import DEFAULT_TOLERANCE, load_onnx
from vfbench.verify.records import (
    VerificationRecord,
    append_jsonl,
    repair_journal,
)
from vfbench.verify.verifiers import resolve_verifier_entry

Instance = tuple[int, Any, int]  # (image index, x (C, H, W) in [0, 1], label)


def instances_from_dataset(npz_path: str | os.PathLike, indices: Sequence[int]) -> list[Instance]:
    """Test images by index from the dataset npz, as pixel/255 in float32 (what the exported
    VNNLIB properties are written around)."""
    from vfbench.data import load_dataset

    data = load_dataset(npz_path)
    bad = [i for i in indices if not 0 <= int(i) < len(data.x_test)]
    if bad:
        raise VfbenchError(f"{npz_path}: test images {bad} do not exist "
                           f"({len(data.x_test)} test images)")
    return [(int(i), data.x_test[int(i)].astype(np.float32) / np.float32(255),
             int(data.y_test[int(i)])) for i in indices]


def instances_digest(instances: Sequence[Instance]) -> str:
    """sha256 of the instances' indices, pixels (as the float32 the verifier reads) and
    labels."""
    digest = hashlib.sha256()
    for image, x, label in instances:
        digest.update(json.dumps([int(image), int(label)]).encode())
        pixels = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        digest.update(json.dumps(pixels.shape).encode() + pixels.tobytes())
    return digest.hexdigest()


def shard_journal(out: str | os.PathLike, onnx_path: str | os.PathLike, entry: dict,
                  eps: float, timeout_s: float, instances: Sequence[Instance]) -> Path:
    """The journal of the shard whose finished output is ``out``: a hidden file beside it, named
    by a hash of everything the records depend on (the ONNX file's bytes, the verifier entry,
    eps, timeout, the images' indices, pixels and labels), so a changed input never resumes
    from stale records. Journals of ``out`` under other hashes are removed."""
    out = Path(out)
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()
    key = json.dumps({"onnx": digest, "entry": entry, "eps": float(eps),
                      "timeout_s": float(timeout_s), "instances": instances_digest(instances)},
                     sort_keys=True, default=str)
    name = f".{out.name}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.journal"
    journal = out.parent / name
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.journal"):
        if stale != journal:
            stale.unlink()
    return journal


def _journal_records(journal_path: Path, eps: float, verifier_name: str,
                     labels: dict[int, int]) -> dict[int, dict]:
    """The journal's records by image; VfbenchError for one of another shard (verifier, eps,
    image or label not this shard's)."""
    done: dict[int, dict] = {}
    for record in repair_journal(journal_path):
        where = f"{journal_path}: image {record['image']}"
        if record["verifier"] != verifier_name or record["eps"] != float(eps):
            raise VfbenchError(f"{where} was verified by {record['verifier']!r} at eps "
                               f"{record['eps']}, not {verifier_name!r} at {eps}: "
                               "a journal of another shard")
        if record["image"] not in labels:
            raise VfbenchError(f"{where} is not one of this shard's images")
        if record["label"] != labels[record["image"]]:
            raise VfbenchError(f"{where} was verified with label {record['label']}, but its "
                               f"label is {labels[record['image']]}: a journal of other data")
        if record["image"] in done:
            raise VfbenchError(f"{where} appears twice")
        done[record["image"]] = record
    return done


def verify_shard(onnx_path: str | os.PathLike, instances: Sequence[Instance], eps: float,
                 verifier_name: str, verifier_options: dict | None, timeout_s: float,
                 journal_path: str | os.PathLike, device: torch.device | str = "cpu",
                 tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """Verify ``instances`` (image index, x, label) and return their records in order.

    ``verifier_name`` is the config's short name (the records' ``verifier``);
    ``verifier_options`` its entry (``method`` defaults to the name; other keys are the
    verifier's options). Records already in ``journal_path`` are kept, not recomputed.
    """
    journal_path = Path(journal_path)
    images = [int(i) for i, _, _ in instances]
    if len(set(images)) != len(images):
        raise VfbenchError(f"shard {journal_path}: an image is listed twice in {images}")
    entry = {"method": verifier_name, **(verifier_options or {})}
    cls, options = resolve_verifier_entry(entry)
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    done = _journal_records(journal_path, eps, verifier_name,
                            {int(i): int(label) for i, _, label in instances})
    todo = [inst for inst in instances if int(inst[0]) not in done]
    if todo:
        model = load_onnx(onnx_path)
        verifier = cls(model, options, device, name=verifier_name)
        batch = options["batch_size"]
        with tqdm(total=len(todo), desc=f"{verifier_name} eps={eps}", disable=None) as bar:
            for start in range(0, len(todo), batch):
                for record in _verify_checked(verifier, todo[start:start + batch], eps,
                                              timeout_s, tolerance):
                    append_jsonl(journal_path, record)
                    done[record["image"]] = record
                    bar.update(1)
    return [done[i] for i in images]


def _verify_checked(verifier, instances: Sequence[Instance], eps: float, timeout_s: float,
                    tolerance: float) -> list[dict[str, Any]]:
    """Records for a batch: an image on which torch and onnxruntime disagree gets an error
    record; the others are verified together."""
    x = torch.stack([torch.as_tensor(np.asarray(xi, dtype=np.float32)) for _, xi, _ in instances])
    records: dict[int, dict] = {}
    agreeing = []
    verifier.agreement_tolerance = tolerance  # also at PGD points and counterexamples
    for k, (image, _, label) in enumerate(instances):
        try:
            verifier.checked_logits(x[k:k + 1], "the image")
        except VfbenchError as exc:
            records[k] = VerificationRecord(
                image=int(image), label=int(label), eps=float(eps), verifier=verifier.name,
                status="error", unstable_bound=verifier.options["unstable_bound"],
                error=str(exc)).to_dict()
            continue
        agreeing.append(k)
    if agreeing:
        new = verifier.verify_batch(x[agreeing], [int(instances[k][2]) for k in agreeing], eps,
                                    timeout_s, [int(instances[k][0]) for k in agreeing])
        records.update(zip(agreeing, new, strict=True))
    return [records[k] for k in range(len(instances))]
