"""A VNN-COMP benchmark folder verified in one process: ``vfbench verify-benchmark``.

The folder holds ``instances.csv`` (rows ``onnx,vnnlib,timeout``, paths relative to the folder,
``.gz`` files read as they are). Every instance goes through ``verify_instance`` with one
``ModelCache`` for the run, so a model is loaded once for its consecutive rows (VNN-COMP lists
them model by model). Each finished instance is appended to a journal beside the results file
(fsync'd), so a killed run resumes without redoing finished instances. At the end: the results
CSV in the VNN-COMP format (rows ``benchmark,onnx,vnnlib,prepare_time,result,run_time``,
written atomically; prepare_time is loading the model, when not cached, and preparing the
property, run_time the decision alone, which the row's timeout bounds), one counterexample
file per ``sat`` (the VNN-COMP result file), and a summary. An instance whose input is bad
(unreadable ONNX or VNNLIB, an unsupported op) gets the result ``error`` with its message,
never a verdict.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path
from vfbench.verify.instance import InstanceResult, ModelCache, verify_instance

RESULTS_COLUMNS = ("benchmark", "onnx", "vnnlib", "prepare_time", "result", "run_time")
RESULT_WORDS = ("unsat", "sat", "timeout", "unknown", "error")


def read_instances(path: str | os.PathLike) -> list[tuple[str, str, float]]:
    """(onnx, vnnlib, timeout) per row of a VNN-COMP instances.csv."""
    rows = []
    try:
        with open(path, newline="") as fh:
            for number, row in enumerate(csv.reader(fh), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 3:
                    raise VfbenchError(f"{path}:{number}: expected onnx,vnnlib,timeout, got "
                                       f"{len(row)} fields")
                try:
                    timeout = float(row[2])
                except ValueError as exc:
                    raise VfbenchError(f"{path}:{number}: timeout {row[2]!r} is not a number"
                                       ) from exc
                if not timeout > 0:
                    raise VfbenchError(f"{path}:{number}: timeout {timeout} is not positive")
                rows.append((row[0].strip(), row[1].strip(), timeout))
    except OSError as exc:
        raise VfbenchError(f"{path}: cannot read instances ({exc})") from exc
    if not rows:
        raise VfbenchError(f"{path}: no instances")
    return rows


def _journal_path(out: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return out.parent / f".{out.name}.{digest[:16]}.journal"


def _read_journal(path: Path) -> dict[int, dict]:
    if not path.exists():
        return {}
    text = path.read_text()
    if text and not text.endswith("\n"):  # a write the kill interrupted
        text = text[: text.rfind("\n") + 1]
        path.write_text(text)
    done = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
            done[int(entry["index"])] = entry
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise VfbenchError(f"{path}:{number}: not a journal entry ({exc})") from exc
    return done


def _append(path: Path, entry: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def verify_benchmark(folder: str | os.PathLike, instances: str | os.PathLike | None = None,
                     method: str = "bab", options: dict | None = None,
                     out: str | os.PathLike | None = None, progress: bool | None = None
                     ) -> dict:
    """Verify every instance of the benchmark ``folder``; returns the summary (also written
    as ``<out>.summary.json``). ``out`` defaults to ``<folder>/results_<method>.csv``."""
    folder = Path(folder)
    instances_csv = Path(instances) if instances else folder / "instances.csv"
    if not instances_csv.is_absolute() and not instances_csv.exists():
        instances_csv = folder / instances_csv
    rows = read_instances(instances_csv)
    out = Path(out) if out else folder / f"results_{method}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    journal = _journal_path(out, {"journal": 2, "instances": rows, "method": method,
                                  "options": options,
                                  "folder": str(folder.resolve())})
    for stale in out.parent.glob(f".{out.name}.*.journal"):
        if stale != journal:
            stale.unlink()
    done = _read_journal(journal)
    counterexamples = out.parent / f"{out.stem}_counterexamples"
    benchmark = folder.resolve().name
    todo = [k for k in range(len(rows)) if k not in done]
    cache = ModelCache()
    try:
        with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"{method} {benchmark}",
                  disable=progress is False or None) as bar:
            for k in todo:
                onnx, vnnlib, timeout = rows[k]
                try:
                    result = verify_instance(folder / onnx, folder / vnnlib, method, options,
                                             timeout, cache)
                except VfbenchError as exc:  # bad input: an error row naming it, never a verdict
                    result = InstanceResult("error", 0.0, error=str(exc))
                entry = {"index": k, "onnx": onnx, "vnnlib": vnnlib, "result": result.result,
                         "prepare_time": result.prepare_s, "run_time": result.time_s,
                         "error": result.error, "counterexample": None}
                if result.result == "sat":
                    name = f"{k}_{Path(onnx).name.split('.')[0]}_{Path(vnnlib).name.split('.')[0]}"
                    path = counterexamples / f"{name}.counterexample"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(path) as tmp:
                        tmp.write_text(result.text())
                    entry["counterexample"] = str(path.relative_to(out.parent))
                _append(journal, entry)
                done[k] = entry
                bar.update(1)
    finally:
        cache.close()
    entries = [done[k] for k in range(len(rows))]
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        for e in entries:
            writer.writerow([benchmark, e["onnx"], e["vnnlib"], f"{e['prepare_time']:.6f}",
                             e["result"], f"{e['run_time']:.6f}"])
    counts = Counter(e["result"] for e in entries)
    summary = {"benchmark": benchmark, "verifier": method, "instances": len(entries),
               "holds": counts["unsat"], "violated": counts["sat"],
               "timeout": counts["timeout"], "unknown": counts["unknown"],
               "error": counts["error"],
               "total_time_s": sum(e["run_time"] for e in entries),
               "total_prepare_s": sum(e["prepare_time"] for e in entries),
               "results": str(out),
               "errors": [f"{e['onnx']} {e['vnnlib']}: {e['error']}" for e in entries
                          if e["result"] == "error"]}
    with atomic_path(out.parent / f"{out.stem}.summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a VNN-COMP results CSV as dicts (prepare_time and run_time floats)."""
    with open(path, newline="") as fh:
        return [dict(zip(RESULTS_COLUMNS, row, strict=True))
                | {"prepare_time": float(row[3]), "run_time": float(row[5])}
                for row in csv.reader(fh) if row]
