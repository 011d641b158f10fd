"""Shards: journal, resume after a kill, ONNX/torch mismatch, merge."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vfbench.errors import VfbenchError
from vfbench.verify import shard as shard_module
from vfbench.verify.base import Verifier
from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.records import (
    append_jsonl,
    merge_shards,
    read_jsonl,
    repair_journal,
    write_jsonl,
)
from vfbench.verify.shard import instances_from_dataset, shard_journal, verify_shard

OPTIONS = {"pgd_steps": 10, "pgd_restarts": 1}
EPS = 0.04


@pytest.fixture(scope="module")
def instances(synthetic):
    x, y = synthetic
    return [(i, x[i].numpy(), int(y[i])) for i in range(200, 208)]


def _comparable(records):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


def _shard(mlp_onnx, instances, journal, **kwargs):
    return verify_shard(mlp_onnx, instances, EPS, "crown", OPTIONS, 30.0, journal, "cpu",
                        **kwargs)


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing inside the pipeline swallows it."""


def test_killed_shard_resumes_without_redoing_finished_images(mlp_onnx, instances, tmp_path,
                                                             monkeypatch):
    reference = _shard(mlp_onnx, instances, tmp_path / "whole.jsonl")
    assert [r["image"] for r in reference] == [i for i, _, _ in instances]

    original = Verifier.verify_batch
    seen = []

    def dies_after_three(self, x, labels, eps, timeout_s, images):
        if len(seen) == 3:
            raise _Killed
        seen.extend(images)
        return original(self, x, labels, eps, timeout_s, images)

    journal = tmp_path / "shard0.jsonl"
    monkeypatch.setattr(Verifier, "verify_batch", dies_after_three)
    with pytest.raises(_Killed):
        _shard(mlp_onnx, instances, journal)
    assert [r["image"] for r in read_jsonl(journal)] == [200, 201, 202]

    monkeypatch.setattr(Verifier, "verify_batch", original)
    redone = []
    monkeypatch.setattr(Verifier, "verify_batch",
                        lambda self, x, labels, eps, t, images: redone.extend(images)
                        or original(self, x, labels, eps, t, images))
    resumed = _shard(mlp_onnx, instances, journal)
    assert redone == [203, 204, 205, 206, 207]
    assert _comparable(resumed) == _comparable(reference)
    merged = merge_shards([journal], tmp_path / "eps.parquet", [i for i, _, _ in instances])
    whole = merge_shards([tmp_path / "whole.jsonl"], tmp_path / "whole.parquet")
    pd.testing.assert_frame_equal(merged.drop(columns="time_s"), whole.drop(columns="time_s"))


def test_a_torn_last_line_is_redone(mlp_onnx, instances, tmp_path):
    journal = tmp_path / "s.jsonl"
    first = _shard(mlp_onnx, instances[:2], journal)
    with open(journal, "a") as fh:
        fh.write(json.dumps(first[0])[:40])  # the write a kill interrupted
    assert len(read_jsonl(journal)) == 2
    records = _shard(mlp_onnx, instances[:3], journal)
    assert [r["image"] for r in read_jsonl(journal)] == [200, 201, 202]
    assert _comparable(records[:2]) == _comparable(first)


def test_finished_shard_does_not_load_the_model(mlp_onnx, instances, tmp_path, monkeypatch):
    journal = tmp_path / "s.jsonl"
    done = _shard(mlp_onnx, instances[:2], journal)

    def no_loading(path):
        raise AssertionError("loaded the model for a finished shard")

    monkeypatch.setattr(shard_module, "load_onnx", no_loading)
    assert _shard(mlp_onnx, instances[:2], journal) == done


def test_torch_onnx_mismatch_gives_error_records(mlp_onnx, instances, tmp_path, monkeypatch):
    def corrupted(path):
        module = load_onnx(path)
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(1.5)
        return module

    monkeypatch.setattr(shard_module, "load_onnx", corrupted)
    records = _shard(mlp_onnx, instances[:2], tmp_path / "s.jsonl")
    assert [r["status"] for r in records] == ["error", "error"]
    assert "differs from onnxruntime" in records[0]["error"]
    assert records[0]["margin_lb"] is None


def test_torch_onnx_mismatch_at_pgd_points_gives_error_records(mlp_onnx, instances, tmp_path,
                                                               monkeypatch):
    """A converted model (once bounded) that agrees with onnxruntime at the images but not
    elsewhere in the ball."""
    centres = torch.stack([torch.as_tensor(x) for _, x, _ in instances]).reshape(
        len(instances), -1)
    resolve = shard_module.resolve_verifier_entry

    def off_centre(entry):
        cls, options = resolve(entry)

        class OffCentre(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                forward = self.model.forward

                def shifted(x):
                    away = torch.cdist(x.reshape(len(x), -1), centres).min(dim=1).values
                    return forward(x) + (away > 1e-6).float()[:, None] * torch.tensor(
                        [1.0, 0.0, 0.0])

                self.model.forward = shifted

        return OffCentre, options

    monkeypatch.setattr(shard_module, "resolve_verifier_entry", off_centre)
    records = _shard(mlp_onnx, instances[:2], tmp_path / "s.jsonl")
    assert [r["status"] for r in records] == ["error", "error"]
    assert all("differs from onnxruntime" in r["error"] and "at a PGD point" in r["error"]
               for r in records)


def test_journal_of_another_run_is_refused(mlp_onnx, instances, tmp_path):
    journal = tmp_path / "s.jsonl"
    _shard(mlp_onnx, instances[:1], journal)
    with pytest.raises(VfbenchError, match="another shard"):
        verify_shard(mlp_onnx, instances[:1], 0.1, "crown", OPTIONS, 30.0, journal)
    with pytest.raises(VfbenchError, match="not one of this shard"):
        _shard(mlp_onnx, instances[1:2], journal)


def test_unknown_verifier_option_fails_before_work(mlp_onnx, instances, tmp_path):
    with pytest.raises(VfbenchError, match="stepz"):
        verify_shard(mlp_onnx, instances[:1], EPS, "crown", {"stepz": 1}, 30.0,
                     tmp_path / "s.jsonl")
    assert not (tmp_path / "s.jsonl").exists()


def test_short_name_and_method(mlp_onnx, instances, tmp_path):
    (record,) = verify_shard(mlp_onnx, instances[:1], EPS, "fast-ibp",
                             {"method": "ibp", "pgd_steps": 0}, 30.0, tmp_path / "s.jsonl")
    assert record["verifier"] == "fast-ibp"


def _record(image, status="unknown"):
    return {"image": image, "label": 0, "eps": EPS, "verifier": "crown", "status": status}


def test_merge_checks_every_image_once(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for i in (0, 1):
        append_jsonl(a, _record(i))
    append_jsonl(b, {**_record(2, "falsified"), "counterexample": [[[0.5, 0.25]]],
                     "unstable_by_site": {"body.3": 2}})
    frame = merge_shards([a, b], tmp_path / "m.parquet", [0, 1, 2])
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert back["image"].tolist() == [0, 1, 2]
    assert list(back.columns) == list(frame.columns)
    assert list(back.loc[2, "counterexample"]) == [0.5, 0.25]
    assert json.loads(back.loc[2, "unstable_by_site"]) == {"body.3": 2}
    with pytest.raises(VfbenchError, match=r"missing images \[3\]"):
        merge_shards([a, b], tmp_path / "m2.parquet", [0, 1, 2, 3])
    append_jsonl(b, _record(1))
    with pytest.raises(VfbenchError, match="image 1 is in both"):
        merge_shards([a, b], tmp_path / "m3.parquet")
    assert not (tmp_path / "m3.parquet").exists()


def test_records_are_validated(tmp_path):
    with pytest.raises(VfbenchError, match="status"):
        append_jsonl(tmp_path / "s.jsonl", _record(0, "proved"))
    with pytest.raises(VfbenchError, match="without counterexample"):
        append_jsonl(tmp_path / "s.jsonl", _record(0, "falsified"))
    (tmp_path / "bad.jsonl").write_text('{"image": 0}\nnot json\n')
    with pytest.raises(VfbenchError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_repair_drops_only_the_unterminated_tail(tmp_path):
    journal = tmp_path / "s.jsonl"
    append_jsonl(journal, _record(0))
    journal.write_text(journal.read_text() + json.dumps(_record(1)))  # complete, no newline
    assert [r["image"] for r in repair_journal(journal)] == [0]
    append_jsonl(journal, _record(1))
    assert [r["image"] for r in read_jsonl(journal)] == [0, 1]


def test_shard_journal_is_keyed_by_what_the_records_depend_on(mlp_onnx, cnn_onnx, tmp_path,
                                                               instances):
    out = tmp_path / "shard0.jsonl"
    pair = instances[1:3]
    args = {"entry": {"method": "crown"}, "eps": EPS, "timeout_s": 30.0, "instances": pair}
    journal = shard_journal(out, mlp_onnx, **args)
    assert journal.parent == tmp_path and journal.name.startswith(".shard0.jsonl.")
    assert shard_journal(out, mlp_onnx, **args) == journal
    append_jsonl(journal, _record(1))
    (i, x, label), second = pair
    nudged = x.copy()
    nudged.flat[0] = np.nextafter(nudged.flat[0], np.float32(1))
    changed = [shard_journal(out, cnn_onnx, **args),
               shard_journal(out, mlp_onnx, **{**args, "entry": {"method": "ibp"}}),
               shard_journal(out, mlp_onnx, **{**args, "eps": 0.1}),
               shard_journal(out, mlp_onnx, **{**args, "instances": [pair[0], instances[3]]}),
               shard_journal(out, mlp_onnx, **{**args, "instances": [(i, nudged, label), second]}),
               shard_journal(out, mlp_onnx, **{**args, "instances": [(i, x, label + 1), second]})]
    assert len({journal, *changed}) == 7
    assert not journal.exists()  # a stale journal is removed, never resumed


def test_resumed_record_with_another_label_is_refused(mlp_onnx, instances, tmp_path):
    journal = tmp_path / "s.jsonl"
    _shard(mlp_onnx, instances[:1], journal)
    image, x, label = instances[0]
    with pytest.raises(VfbenchError, match="label .* a journal of other data"):
        _shard(mlp_onnx, [(image, x, (label + 1) % 3)], journal)


def test_write_jsonl_then_read(tmp_path):
    records = [_record(0), {**_record(1, "falsified"), "counterexample": [0.5]}]
    write_jsonl(tmp_path / "out.jsonl", records)
    assert [r["status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["unknown", "falsified"]


def test_instances_from_dataset(tmp_path):
    x_test = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2) * 20
    arrays = {"x_train": np.zeros((4, 1, 2, 2), np.uint8), "y_train": np.arange(4) % 2,
              "x_test": x_test, "y_test": np.array([1, 0])}
    np.savez(tmp_path / "d.npz", **arrays)
    (image, x, label), = instances_from_dataset(tmp_path / "d.npz", [1])
    assert image == 1 and label == 0 and x.dtype == np.float32
    assert np.array_equal(x, x_test[1].astype(np.float32) / np.float32(255))
    with pytest.raises(VfbenchError, match=r"\[5\]"):
        instances_from_dataset(tmp_path / "d.npz", [5])


def test_sigkilled_shard_process_resumes(mlp_onnx, instances, tmp_path, monkeypatch):
    """A real kill: a child process verifying the shard is SIGKILLed once three images are in
    its journal; the resumed shard verifies only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    np.save(tmp_path / "x.npy", np.stack([x for _, x, _ in instances]))
    journal = tmp_path / "killed.jsonl"
    slow = {**OPTIONS, "pgd_steps": 300}
    script = (
        "import numpy as np, torch; torch.set_num_threads(1)\n"
        "from vfbench.verify.shard import verify_shard\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"inst = [(i, x[k], l) for k, (i, l) in enumerate({[(i, l) for i, _, l in instances]!r})]\n"
        f"verify_shard({mlp_onnx!r}, inst, {EPS}, 'crown', {slow!r}, 30.0, {str(journal)!r})\n")
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and len(read_jsonl(journal)) < 3 and child.poll() is None:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = [r["image"] for r in read_jsonl(journal)]
    assert 3 <= len(finished) < len(instances)

    original = Verifier.verify_batch
    redone = []
    monkeypatch.setattr(Verifier, "verify_batch",
                        lambda self, x, labels, eps, t, images: redone.extend(images)
                        or original(self, x, labels, eps, t, images))
    records = verify_shard(mlp_onnx, instances, EPS, "crown", slow, 30.0, journal)
    assert sorted(redone + finished) == [i for i, _, _ in instances]
    assert [r["image"] for r in records] == [i for i, _, _ in instances]
