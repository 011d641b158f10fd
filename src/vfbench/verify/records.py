"""The verification record: one per (image, eps, verifier), as docs/design.md fixes it; its files.

Shards append records to a JSON-lines journal as each image finishes (flushed and fsync'd), so a
killed shard loses at most the image it was on; an interrupted last line is ignored.
The merged table is a parquet file; there ``unstable_by_site`` is JSON text (site -> count) and
``counterexample`` a flat list of floats (the image in C, H, W order).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path

STATUSES = ("verified", "falsified", "unknown", "timeout", "misclassified", "error")


@dataclass
class VerificationRecord:
    """What one verifier concluded about one image at one eps.

    ``status``: verified (a sound bound proves every margin positive), falsified (a concrete
    point of the ball, re-checked by onnxruntime, is misclassified; it is ``counterexample``),
    unknown, timeout, misclassified (the clean image is; never verified), error (``error`` says
    why). ``margin_lb``: the verifier's best lower bound on min_j (y_label - y_j), when it has one.
    ``n_relu``/``n_unstable``/``unstable_by_site``: neurons at ReLU sites and the unstable ones
    (pre-activation bounds straddle 0, neurons with identically-0 input excluded), from the bound
    method ``unstable_bound`` whatever the verifier. ``domains``/``depth``: branch and bound only.
    ``external``: the external tool whose word a ``verified`` rests on (VNN-COMP verifiers; None
    when vfbench's own bound proved it).
    """

    image: int
    label: int
    eps: float
    verifier: str
    status: str
    pred: int | None = None
    time_s: float = 0.0
    margin_lb: float | None = None
    n_relu: int | None = None
    n_unstable: int | None = None
    unstable_by_site: dict[str, int] | None = None
    unstable_bound: str | None = None
    domains: int | None = None
    depth: int | None = None
    counterexample: list | None = None
    error: str | None = None
    external: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise VfbenchError(f"record for image {self.image}: status {self.status!r} is not "
                               f"one of {STATUSES}")
        if self.status == "falsified" and self.counterexample is None:
            raise VfbenchError(f"record for image {self.image}: falsified without counterexample")
        if self.margin_lb is not None and not math.isfinite(self.margin_lb):
            self.margin_lb = None  # -inf bounds say nothing and are not JSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECORD_FIELDS = tuple(f.name for f in fields(VerificationRecord))


def record_from_dict(data: dict[str, Any], where: str = "record") -> VerificationRecord:
    unknown = sorted(set(data) - set(RECORD_FIELDS))
    if unknown:
        raise VfbenchError(f"{where}: unknown field(s) {unknown}")
    try:
        return VerificationRecord(**data)
    except TypeError as exc:
        raise VfbenchError(f"{where}: not a verification record ({exc})") from exc


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a line and make it durable before returning."""
    line = json.dumps(record_from_dict(record).to_dict(), allow_nan=False)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write all records at once, atomically (a shard's finished output)."""
    lines = [json.dumps(record_from_dict(r).to_dict(), allow_nan=False) for r in records]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a journal. Only newline-terminated lines count: an unterminated tail is a
    write a kill interrupted, and is ignored. A bad complete line is a VfbenchError."""
    path = Path(path)
    if not path.exists():
        return []
    complete = path.read_text(encoding="utf-8").split("\n")[:-1]
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VfbenchError(f"{path}:{number}: not a JSON record ({exc})") from exc
        records.append(record_from_dict(data, f"{path}:{number}").to_dict())
    return records


def repair_journal(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Drop an interrupted last line from a journal (so appends start on a fresh line) and
    return its records."""
    path = Path(path)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if not text.endswith("\n") and text:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text[: text.rfind("\n") + 1])
                fh.flush()
                os.fsync(fh.fileno())
    return read_jsonl(path)


def to_frame(records: list[dict[str, Any]]):
    """A pandas DataFrame with one row per record, columns in RECORD_FIELDS order."""
    import pandas as pd

    rows = []
    for record in records:
        row = dict(record)
        row["unstable_by_site"] = (None if row["unstable_by_site"] is None
                                   else json.dumps(row["unstable_by_site"]))
        if row["counterexample"] is not None:
            row["counterexample"] = _flatten(row["counterexample"])
        rows.append(row)
    return pd.DataFrame(rows, columns=list(RECORD_FIELDS))


def _flatten(nested) -> list[float]:
    if isinstance(nested, (list, tuple)):
        return [v for item in nested for v in _flatten(item)]
    return [float(nested)]


def merge_shards(shard_paths: Sequence[str | os.PathLike], out_parquet: str | os.PathLike,
                 expected_images: Sequence[int] | None = None):
    """Merge shard journals into one parquet table (written atomically) and return it as a
    DataFrame. Every image must appear exactly once, and be one of ``expected_images`` if given
    (all of them)."""
    records, origin = [], {}
    for path in shard_paths:
        if not Path(path).exists():
            raise VfbenchError(f"{path}: shard journal not found")
        for record in read_jsonl(path):
            image = record["image"]
            if image in origin:
                raise VfbenchError(f"image {image} is in both {origin[image]} and {path}")
            origin[image] = path
            records.append(record)
    if expected_images is not None:
        expected = {int(i) for i in expected_images}
        missing = sorted(expected - set(origin))
        extra = sorted(set(origin) - expected)
        if missing or extra:
            raise VfbenchError(f"merging {len(shard_paths)} shards into {out_parquet}: "
                               f"missing images {missing}, unexpected images {extra}")
    frame = to_frame(sorted(records, key=lambda r: r["image"]))
    with atomic_path(out_parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame
