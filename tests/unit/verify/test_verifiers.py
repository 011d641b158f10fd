"""The incomplete verifiers and the shared pipeline: soundness first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from verify_nets import sample_ball

from vfbench.attacks import pgd_attack
from vfbench.errors import VfbenchError
from vfbench.verify.base import Decision, clip_into_ball, unstable_counts
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.options import verifier_defaults
from vfbench.verify.records import STATUSES, record_from_dict
from vfbench.verify.verifiers import VERIFIERS, CrownVerifier, resolve_verifier_entry

FAST = {"pgd_steps": 20, "pgd_restarts": 2}


@pytest.fixture(scope="module")
def mlp(mlp_onnx):
    return load_onnx(mlp_onnx)


def _images(synthetic, n=12, start=200):
    x, y = synthetic
    return x[start:start + n], y[start:start + n].tolist()


def _run(name, model, x, labels, eps, options=None, timeout_s=30.0):
    verifier = VERIFIERS[name](model, {**FAST, **(options or {})}, "cpu", name=name)
    return verifier.verify_batch(x, labels, eps, timeout_s, list(range(len(labels))))


@pytest.mark.parametrize("name", ["ibp", "crown", "alpha_crown"])
def test_verified_images_survive_pgd_and_random_points(name, mlp, mlp_onnx, synthetic):
    """Soundness: no point of a verified image's ball is misclassified, by a stronger PGD than
    the falsifier's or by 1,000 random points (half of them vertices of the ball)."""
    x, labels = _images(synthetic)
    eps = 0.04
    records = _run(name, mlp, x, labels, eps, {"iterations": 10} if name == "alpha_crown" else {})
    verified = [r for r in records if r["status"] == "verified"]
    assert verified, [r["status"] for r in records]  # the test must have something to check
    ort = OrtModel(mlp_onnx)
    for r in verified:
        xi, label = x[r["image"]], r["label"]
        assert r["margin_lb"] > 0
        adv = pgd_attack(mlp, xi[None], torch.tensor([label]), eps, steps=100, restarts=3,
                         loss="margin", generator=torch.Generator().manual_seed(1))
        points = torch.cat([adv, sample_ball(xi, eps, 1000, seed=r["image"])])
        assert (ort(points).argmax(1) == label).all()


def test_not_every_image_is_verified_at_a_large_eps(mlp, synthetic):
    x, labels = _images(synthetic)
    records = _run("crown", mlp, x, labels, 0.3)
    assert {r["status"] for r in records} <= {"unknown", "falsified", "misclassified"}
    assert any(r["status"] == "falsified" for r in records)


def test_falsified_records_hold_a_checked_counterexample(mlp, mlp_onnx, synthetic):
    x, labels = _images(synthetic)
    eps = 0.3
    records = _run("crown", mlp, x, labels, eps)
    ort = OrtModel(mlp_onnx)
    falsified = [r for r in records if r["status"] == "falsified"]
    assert falsified
    for r in falsified:
        point = np.asarray(r["counterexample"], dtype=np.float32)
        center = x[r["image"]].numpy().astype(np.float64)
        assert (point >= np.clip(center - eps, 0, 1)).all()
        assert (point <= np.clip(center + eps, 0, 1)).all()
        logits = ort(point[None])[0]
        assert np.delete(logits, r["label"]).max() > logits[r["label"]]
        assert r["margin_lb"] is None


def test_misclassified_image_is_never_verified(mlp, synthetic):
    x, labels = _images(synthetic, n=3)
    wrong = [(label + 1) % 3 for label in labels]
    records = _run("crown", mlp, x, wrong, 1e-4)
    for r, label in zip(records, labels, strict=True):
        assert r["status"] == "misclassified"
        assert r["pred"] == label
        assert r["n_relu"] == 24 and r["n_unstable"] is not None  # counts still reported


def test_records_are_complete(mlp, synthetic):
    x, labels = _images(synthetic, n=4)
    for r in _run("alpha_crown", mlp, x, labels, 0.05, {"iterations": 3}):
        assert r["status"] in STATUSES and record_from_dict(r).verifier == "alpha_crown"
        assert r["unstable_bound"] == "crown"
        assert sum(r["unstable_by_site"].values()) == r["n_unstable"]
        assert list(r["unstable_by_site"]) == ["body.3", "body.6"]
        assert r["time_s"] > 0


def test_stronger_bound_verifies_at_least_as_much(mlp, synthetic):
    x, labels = _images(synthetic)
    statuses = {name: [r["status"] for r in _run(name, mlp, x, labels, 0.04)]
                for name in ("ibp", "crown", "alpha_crown")}
    assert statuses["ibp"].count("verified") < statuses["crown"].count("verified")
    assert "unknown" in statuses["crown"] and "falsified" in statuses["crown"]
    for weaker, stronger in (("ibp", "crown"), ("crown", "alpha_crown")):
        for a, b in zip(statuses[weaker], statuses[stronger], strict=True):
            assert a != "verified" or b == "verified"


def test_unstable_counts_come_from_one_bound_method(mlp, synthetic):
    x, labels = _images(synthetic, n=4)
    by_ibp = _run("crown", mlp, x, labels, 0.08, {"unstable_bound": "ibp"})
    by_crown = _run("ibp", mlp, x, labels, 0.08, {"unstable_bound": "crown"})
    crown_self = _run("crown", mlp, x, labels, 0.08)
    for a, b, c in zip(by_ibp, by_crown, crown_self, strict=True):
        assert a["unstable_bound"] == "ibp" and b["unstable_bound"] == "crown"
        assert b["n_unstable"] == c["n_unstable"]  # whatever verifier decides
        assert a["n_unstable"] >= c["n_unstable"]  # IBP's intermediate bounds are looser here


def test_grafted_neurons_never_count_as_unstable(grafted_cnn):
    model, mask, path = grafted_cnn
    module = load_onnx(path)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        labels = module(x).argmax(1).tolist()
    records = _run("crown", module, x, labels, 0.5, {"pgd_steps": 0})
    first_site = records[0]["unstable_by_site"]["body.1"]
    assert 0 < first_site <= int((mask == 0).sum())
    assert records[0]["n_relu"] == 4 * 4 * 4 + 8 * 2 * 2 + 16


def test_unstable_counts_apply_the_zero_input_mask(grafted_cnn):
    module = load_onnx(grafted_cnn[2])
    lower = torch.full((1, 4, 4, 4), -1.0)
    upper = torch.full((1, 4, 4, 4), 1.0)  # every neuron of site 1 "straddles" zero...
    pre = [(lower, upper), (torch.ones(1, 8, 2, 2), torch.ones(1, 8, 2, 2)),
           (torch.zeros(1, 16), torch.ones(1, 16))]
    (n_relu, n_unstable, by_site), = unstable_counts(module, pre)
    assert by_site["body.1"] == int((~module.zero_input[0]).sum())  # ...but the grafted ones
    assert by_site["body.3"] == 0 and by_site["body.6"] == 0
    assert n_relu == 64 + 32 + 16 and n_unstable == by_site["body.1"]


def test_batch_equals_one_at_a_time(mlp, synthetic):
    x, labels = _images(synthetic, n=5)
    batched = _run("crown", mlp, x, labels, 0.08, {"batch_size": 5, "pgd_steps": 0})
    verifier = CrownVerifier(mlp, {"pgd_steps": 0}, "cpu", name="crown")
    single = [verifier.verify(x[i], labels[i], 0.08, 30, image=i) for i in range(5)]
    for a, b in zip(batched, single, strict=True):
        assert a["status"] == b["status"] and a["n_unstable"] == b["n_unstable"]
        assert a["margin_lb"] == pytest.approx(b["margin_lb"], abs=1e-5)


def test_time_over_the_timeout_is_a_timeout(mlp, synthetic):
    x, labels = _images(synthetic, n=2)
    records = _run("crown", mlp, x, labels, 0.01, timeout_s=1e-9)
    assert [r["status"] for r in records] == ["timeout", "timeout"]


def test_a_failing_verifier_gives_error_records(mlp, synthetic, monkeypatch):
    def broken(self, *args):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(CrownVerifier, "decide_batch", broken)
    x, labels = _images(synthetic, n=2)
    records = _run("crown", mlp, x, labels, 0.01, {"pgd_steps": 0})
    assert [r["status"] for r in records] == ["error", "error"]
    assert "solver exploded" in records[0]["error"]


def test_an_unconfirmed_counterexample_is_an_error(mlp, synthetic, monkeypatch):
    def lying(self, x, labels, eps, timeout_s):
        return [(Decision("falsified", counterexample=x[i].clone()), 0.0)
                for i in range(len(labels))]

    monkeypatch.setattr(CrownVerifier, "decide_batch", lying)
    x, labels = _images(synthetic, n=1)
    (record,) = _run("crown", mlp, x, labels, 0.01, {"pgd_steps": 0})
    assert record["status"] == "error" and "does not confirm" in record["error"]


def test_clip_into_ball_is_inside_the_exact_ball():
    x = torch.tensor([0.1, 0.7, 0.999], dtype=torch.float32)
    eps = 0.1
    adv = torch.tensor([0.0, 0.8000001, 1.2])
    point = clip_into_ball(adv, x, eps)
    center = x.numpy().astype(np.float64)
    assert point.dtype == np.float32
    assert (point >= np.clip(center - eps, 0, 1)).all()
    assert (point <= np.clip(center + eps, 0, 1)).all()


def test_options_are_checked():
    with pytest.raises(VfbenchError, match="pgd_stepz"):
        resolve_verifier_entry({"method": "crown", "pgd_stepz": 3})
    with pytest.raises(VfbenchError, match="unknown verifier method"):
        resolve_verifier_entry({"method": "reluplex"})
    with pytest.raises(VfbenchError, match="unstable_bound"):
        resolve_verifier_entry({"method": "crown", "unstable_bound": "deeppoly"})
    cls, options = resolve_verifier_entry({"method": "alpha_crown", "iterations": 5,
                                           "only_arch": ["net1"]})
    assert cls is VERIFIERS["alpha_crown"] and options["iterations"] == 5
    assert "only_arch" not in options and "method" not in options
    assert verifier_defaults("crown")["pgd_steps"] == 50
    assert "iterations" not in verifier_defaults("crown")
