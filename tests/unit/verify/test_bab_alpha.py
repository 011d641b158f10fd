"""bab's ``domain_refine: alpha`` (intermediate bounds optimised per domain, jointly with the
final bound and the splits' betas): its verdicts agree with milp, what it verifies no attack
breaks, its counterexamples hold in onnxruntime, its domains' intermediate bounds are never looser
than ``crown``'s on the same domains and tighter somewhere, and it starts from the root's slopes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from verify_nets import sample_ball

from vfbench.attacks import pgd_attack
from vfbench.verify import bab
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.verifiers import VERIFIERS

NO_PGD = {"pgd_steps": 0}
ALPHA = {**NO_PGD, "domain_refine": "alpha"}
EPS = 0.05
DECIDED = ("verified", "falsified")
# Test images of the MLP at EPS: 201, 206 and 216 need branching, 207 is not robust.
IMAGES = (201, 206, 207, 216)


@pytest.fixture(scope="module")
def mlp(mlp_onnx):
    return load_onnx(mlp_onnx)


def _search(verifier, x, label, budget=None):
    """A search as ``BabVerifier.decide`` starts it (root alpha-CROWN), and its root domains."""
    return verifier.root_search(x, label, EPS, time.perf_counter() + 30, budget)


def test_alpha_agrees_with_milp_and_no_attack_breaks_it(mlp, mlp_onnx, synthetic, monkeypatch):
    x, y = synthetic
    optimised = []
    original = bab._Search._intermediate_slopes

    def spy(search, nodes, bounds):
        optimised.append(nodes)
        return original(search, nodes, bounds)

    monkeypatch.setattr(bab._Search, "_intermediate_slopes", spy)
    records = {}
    for name, options in (("bab", ALPHA), ("milp", NO_PGD)):
        verifier = VERIFIERS[name](mlp, options, "cpu", name=name)
        records[name] = [verifier.verify(x[i], int(y[i]), EPS, 30, image=i) for i in IMAGES]
    assert optimised  # the alpha path bounded domains
    for a, b in zip(records["bab"], records["milp"], strict=True):
        assert a["status"] in DECIDED
        if b["status"] in DECIDED:
            assert a["status"] == b["status"], (a["image"], a["status"], b["status"])
    ort = OrtModel(mlp_onnx)
    verified = [r for r in records["bab"] if r["status"] == "verified"]
    assert sum(r["domains"] > 0 for r in verified) >= 3  # closed by the search, not the root
    for r in verified:
        xi, label = x[r["image"]], r["label"]
        adv = pgd_attack(mlp, xi[None], torch.tensor([label]), EPS, steps=100, restarts=5,
                         loss="margin", generator=torch.Generator().manual_seed(1))
        assert ort(adv.numpy()).argmax(1)[0] == label
        assert (ort(sample_ball(xi, EPS, 4000, seed=r["image"]).numpy()).argmax(1)
                == label).all(), r["image"]
    falsified = [r for r in records["bab"] if r["status"] == "falsified"]
    assert falsified
    for r in falsified:
        point = np.asarray(r["counterexample"], dtype=np.float32)
        assert np.abs(point - x[r["image"]].numpy()).max() <= EPS + 1e-6
        logits = ort(point[None])[0]
        assert np.delete(logits, r["label"]).max() > logits[r["label"]]


def test_alpha_bounds_are_never_looser_than_crowns(mlp, synthetic, monkeypatch):
    """The domains a crown search bounds, bounded again by both choices: every refined node's
    bounds inside crown's, and tighter somewhere; the final bounds tighter on the whole."""
    x, y = synthetic
    image = 216  # the hardest of test_bab.HARD
    xi, label = x[image][None], int(y[image])
    batches, original = [], bab._Search.bound

    def spy(search, domains, optimise):
        if optimise:
            batches.append(domains)
        return original(search, domains, optimise)

    monkeypatch.setattr(bab._Search, "bound", spy)
    search, roots = _search(VERIFIERS["bab"](mlp, NO_PGD, "cpu"), xi, label)
    assert search.run(roots) == "verified"
    monkeypatch.undo()
    pool = [d for batch in batches for d in batch if any(node == 0 for node, _, _ in d.splits)]
    assert len(pool) >= 8
    results = {}
    for name, options in (("crown", NO_PGD), ("alpha", ALPHA)):
        other, _ = _search(VERIFIERS["bab"](mlp, options, "cpu"), xi, label)
        results[name] = other.bound(pool, optimise=True)
    (low_c, dom_c), (low_a, dom_a) = results["crown"], results["alpha"]
    width = {"crown": 0.0, "alpha": 0.0}
    for c, a in zip(dom_c, dom_a, strict=True):
        assert set(c.refined) == set(a.refined) == {1}
        (lo_c, up_c), (lo_a, up_a) = c.refined[1], a.refined[1]
        assert bool((lo_a >= lo_c).all() and (up_a <= up_c).all())
        width["crown"] += float((up_c - lo_c).sum())
        width["alpha"] += float((up_a - lo_a).sum())
    assert width["alpha"] < width["crown"]
    assert float(low_a.mean()) > float(low_c.mean())


def test_alpha_starts_from_the_roots_slopes(mlp, synthetic):
    x, y = synthetic
    xi, label = x[216][None], int(y[216])
    search, _ = _search(VERIFIERS["bab"](mlp, ALPHA, "cpu"), xi, label)
    n = [lo.numel() for lo in search.lower0]
    assert set(search.root_slopes) == {(0, 1)}
    assert search.root_slopes[(0, 1)].shape == (2, n[1], n[0])
    bounds = [(lo.expand(3, -1), up.expand(3, -1)) for lo, up in
              zip(search.lower0, search.upper0, strict=True)]
    for relu in search.relus:
        relu.alpha, relu.alpha_lookup_idx = {}, {}
    search._intermediate_slopes([1], bounds)
    slope = search.relus[0].alpha[search.names[1]]
    assert slope.shape == (2, n[1], 3, n[0]) and slope.requires_grad
    assert torch.equal(slope[:, :, 2], search.root_slopes[(0, 1)])
    # crown's search neither keeps nor needs them
    search, _ = _search(VERIFIERS["bab"](mlp, NO_PGD, "cpu"), xi, label)
    assert search.root_slopes == {}


def test_alpha_sizes_its_batches_to_the_memory_cap(mlp, synthetic):
    x, y = synthetic
    xi, label = x[216][None], int(y[216])
    batches = {}
    for name, options in (("crown", NO_PGD), ("alpha", ALPHA)):
        verifier = VERIFIERS["bab"](mlp, {**options, "max_memory_mb": 4}, "cpu")
        batches[name] = _search(verifier, xi, label)[0].domain_batch
    assert batches["alpha"] < batches["crown"]
