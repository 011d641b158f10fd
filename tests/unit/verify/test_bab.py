"""Branch and bound: it decides what bounds alone cannot, never splits a grafted neuron, decides
fully split domains exactly by an LP, stops at its deadline and domain cap, and resumes in a
shard. (Agreement with the MILP and soundness: test_agreement.py.)"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from vfbench.attacks import pgd_attack
from vfbench.errors import VfbenchError
from vfbench.verify import bab
from vfbench.verify.base import Verifier
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.records import read_jsonl
from vfbench.verify.shard import verify_shard
from vfbench.verify.verifiers import VERIFIERS

NO_PGD = {"pgd_steps": 0}
EPS = 0.05
# Test images of the MLP that need branching at EPS (the root bounds leave them undecided).
HARD = (201, 202, 203, 216)


@pytest.fixture(scope="module")
def mlp(mlp_onnx):
    return load_onnx(mlp_onnx)


def _verify(module, synthetic, images, options=None, eps=EPS, timeout_s=30.0):
    x, y = synthetic
    verifier = VERIFIERS["bab"](module, {**NO_PGD, **(options or {})}, "cpu", name="bab")
    return [verifier.verify(x[i], int(y[i]), eps, timeout_s, image=i) for i in images]


class _Spy:
    """Records the calls to one method of bab._Search."""

    def __init__(self, monkeypatch, method: str):
        self.calls = []
        original = getattr(bab._Search, method)

        def spy(search, *args):
            self.calls.append(args)
            return original(search, *args)

        monkeypatch.setattr(bab._Search, method, spy)


def test_branching_decides_what_the_root_bound_cannot(mlp, synthetic):
    records = _verify(mlp, synthetic, HARD)
    x, y = synthetic
    alpha = VERIFIERS["alpha_crown"](mlp, NO_PGD, "cpu")
    for r in records:
        assert r["status"] == "verified" and r["margin_lb"] > 0
        assert r["domains"] > 0 and 1 <= r["depth"] <= r["n_unstable"]
        assert alpha.verify(x[r["image"]], r["label"], EPS, 30)["status"] == "unknown"


def test_grafted_neurons_are_never_split(grafted_cnn, monkeypatch):
    model, mask, path = grafted_cnn
    module = load_onnx(path)
    grafted = mask.reshape(-1).bool()
    x = torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        labels = module(x).argmax(1).tolist()
    verifier = VERIFIERS["bab"](module, {**NO_PGD, "branch_candidates": 10_000}, "cpu")

    # Bounds where every neuron straddles 0, grafted ones too: only the zero-input mask keeps
    # them out of the candidates.
    bounds = verifier.bounds(x[:1], labels[:1], 0.1, "crown")
    crown = bounds.pre_activation
    pre = [(-torch.ones_like(lo), torch.ones_like(up)) for lo, up in crown]
    search = bab._Search(verifier, x[:1], labels[0], 0.1, time.perf_counter() + 30, pre,
                         bounds.tol[0], bounds.pre_tol)
    for relu, (lo, _) in zip(search.relus, crown, strict=True):
        relu.lA = -torch.ones((1, *lo.shape))
    root = bab.Domain(lower=-1.0, order=0, spec=0, splits=(), betas=(), alphas=[], refined={})
    (candidates,) = search._candidates(search._domain_bounds([root])[0], 1)
    first_site = {n for node, n in candidates if node == 0}
    assert first_site == set(torch.nonzero(~grafted).flatten().tolist())
    assert len(candidates) == sum(lo.numel() for lo, _ in crown) - int(grafted.sum())

    splits = _Spy(monkeypatch, "_split")
    records = [verifier.verify(x[i], labels[i], 0.1, 30, image=i) for i in range(2)]
    assert all(r["status"] == "verified" for r in records) and splits.calls
    assert not any(grafted[n] for (_, (node, n)) in splits.calls if node == 0)


def _leaf_through(search: bab._Search, form, point: torch.Tensor) -> bab.Domain:
    """The fully split domain holding ``point``: every unstable neuron fixed to its phase there."""
    pre, _ = form.evaluate(point.numpy())
    splits = tuple((k, n, 1 if pre[k][n] >= 0 else -1)
                   for k, (lo, up) in enumerate(zip(search.lower0, search.upper0, strict=True))
                   for n in torch.nonzero((lo < 0) & (up > 0)).flatten().tolist())
    return bab.Domain(lower=-1.0, order=0, spec=0, splits=splits, betas=(0.0,) * len(splits),
                      alphas=[], refined={})


@pytest.mark.parametrize("image", [201, 207])  # robust at EPS / not
def test_a_fully_split_domain_is_decided_by_an_lp(mlp, synthetic, image):
    x, y = synthetic
    label = int(y[image])
    verifier = VERIFIERS["bab"](mlp, NO_PGD, "cpu")
    xi = x[image][None]
    bounds = verifier.bounds(xi, [label], EPS, "crown")
    pre = bounds.pre_activation
    adv = pgd_attack(mlp, xi, torch.tensor([label]), EPS, steps=100, restarts=5, loss="margin",
                     generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = mlp(adv)[0]
    robust = bool(logits.argmax() == label)
    assert robust == (image == 201)
    others = [j for j in range(3) if j != label]
    spec = int(logits[others].argmax())  # the row of the class PGD got closest to
    search = bab._Search(verifier, xi, label, EPS, time.perf_counter() + 30, pre,
                         bounds.tol[0], bounds.pre_tol)
    leaf = _leaf_through(search, verifier.form, adv)
    assert leaf.splits and not search._candidates(search._domain_bounds([leaf])[0], 1)[0]
    search._leaf(dataclasses.replace(leaf, spec=spec))
    assert not search.undecided_leaf
    if robust:
        assert search.counterexample is None and search.proven > 0
    else:
        point = search.counterexample.numpy()
        assert np.abs(point - xi[0].numpy()).max() <= EPS + 1e-6
        with torch.no_grad():
            assert int(mlp(torch.from_numpy(point)[None]).argmax()) != label


def test_counterexamples_from_the_search_are_checked(mlp, mlp_onnx, synthetic):
    x, _ = synthetic
    records = [r for r in _verify(mlp, synthetic, range(204, 212))
               if r["status"] == "falsified"]
    assert records
    ort = OrtModel(mlp_onnx)
    for r in records:
        point = np.asarray(r["counterexample"], dtype=np.float32)
        assert np.abs(point - x[r["image"]].numpy()).max() <= EPS + 1e-6
        logits = ort(point[None])[0]
        assert np.delete(logits, r["label"]).max() > logits[r["label"]]


def test_deadline_and_domain_cap(mlp, synthetic):
    x, y = synthetic
    image = HARD[-1]  # the hardest: its search holds several open domains at once
    verifier = VERIFIERS["bab"](mlp, {**NO_PGD, "max_domains": 1, "domain_batch": 1}, "cpu")
    late = verifier.decide(x[image][None], int(y[image]), EPS, deadline=time.perf_counter())
    assert late.status == "timeout" and late.margin_lb <= 0
    capped = verifier.decide(x[image][None], int(y[image]), EPS,
                             deadline=time.perf_counter() + 30)
    assert capped.status == "unknown" and capped.margin_lb <= 0


def test_options_are_checked(mlp):
    with pytest.raises(VfbenchError, match="branching"):
        VERIFIERS["bab"](mlp, {"branching": "random"}, "cpu")
    with pytest.raises(VfbenchError, match="domain_batch"):
        VERIFIERS["bab"](mlp, {"domain_batch": 0}, "cpu")
    with pytest.raises(VfbenchError, match="unknown option"):
        VERIFIERS["bab"](mlp, {"domains": 3}, "cpu")


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing inside the pipeline swallows it."""


def test_a_killed_bab_shard_resumes_from_its_journal(mlp_onnx, synthetic, tmp_path,
                                                     monkeypatch):
    x, y = synthetic
    instances = [(i, x[i].numpy(), int(y[i])) for i in (*HARD, 204)]
    journal = tmp_path / "shard0.jsonl"
    original = Verifier.verify_batch
    done = []

    def dies_after_two(self, *args):
        if len(done) == 2:
            raise _Killed
        records = original(self, *args)
        done.extend(r["image"] for r in records)
        return records

    monkeypatch.setattr(Verifier, "verify_batch", dies_after_two)
    with pytest.raises(_Killed):
        verify_shard(mlp_onnx, instances, EPS, "bab", NO_PGD, 30.0, journal, "cpu")
    first = read_jsonl(journal)
    assert [r["image"] for r in first] == list(HARD[:2])

    monkeypatch.setattr(Verifier, "verify_batch", original)
    redone = []
    monkeypatch.setattr(Verifier, "verify_batch", lambda self, *args: redone.extend(args[-1])
                        or original(self, *args))
    records = verify_shard(mlp_onnx, instances, EPS, "bab", NO_PGD, 30.0, journal, "cpu")
    assert redone == [*HARD[2:], 204]
    assert [r["image"] for r in records] == [i for i, _, _ in instances]
    assert records[:2] == first  # kept from the journal, not recomputed
    assert all(r["verifier"] == "bab" and r["domains"] is not None for r in records)


# --- the options for deeper networks: FSB branching, no per-domain refinement, BaB attack ---

@pytest.mark.parametrize("options", [{"branching": "fsb"}, {"domain_refine": "none"},
                                     {"domain_refine": "alpha"},
                                     {"attack_every": 1, "domain_batch": "auto"}])
def test_each_search_option_verifies_what_needs_branching(mlp, synthetic, monkeypatch, options):
    refined, original = [], bab._Search._refine

    def refine(search, *args):
        nodes = original(search, *args)
        refined.extend(nodes)
        return nodes

    monkeypatch.setattr(bab._Search, "_refine", refine)
    records = _verify(mlp, synthetic, HARD, options)
    for r in records:
        assert r["status"] == "verified" and r["margin_lb"] > 0 and r["domains"] > 0
    # Bounds of later nodes are recomputed per domain unless domain_refine is 'none'.
    assert bool(refined) == (options.get("domain_refine", "crown") != "none")


def test_fsb_adds_the_babsr_bias_score_picks(mlp, synthetic):
    x, y = synthetic
    image = HARD[-1]
    xi, label = x[image][None], int(y[image])
    picks = {}
    for branching in ("babsr", "fsb"):
        verifier = VERIFIERS["bab"](mlp, {**NO_PGD, "branching": branching,
                                          "branch_candidates": 2}, "cpu")
        bounds = verifier.bounds(xi, [label], EPS, "crown")
        search = bab._Search(verifier, xi, label, EPS, time.perf_counter() + 30,
                             bounds.pre_activation, bounds.tol[0], bounds.pre_tol)
        root = bab.Domain(lower=-1.0, order=0, spec=0, splits=(), betas=(), alphas=[],
                          refined={})
        gen = torch.Generator().manual_seed(0)  # the final bound's coefficients, as stored
        for relu, lo in zip(search.relus, search.lower0, strict=True):
            relu.lA = -torch.rand((1, 1, lo.numel()), generator=gen)
        (picks[branching],) = search._candidates(search._domain_bounds([root])[0], 1)
        assert all(search.lower0[k][n] < 0 < search.upper0[k][n] for k, n in picks[branching])
    assert picks["fsb"][:2] == picks["babsr"] and 2 <= len(picks["fsb"]) <= 4
    for relu, bias in zip(search.relus, search.bias, strict=True):
        node = relu.inputs[0]  # BaBSR's bias term: the Linear's bias, else none
        if type(node).__name__ == "BoundLinear":
            assert torch.equal(bias, node.inputs[2].param.detach().reshape(-1))
        else:
            assert not bias.any()


def test_the_bab_attack_confirms_what_it_finds(mlp, synthetic):
    """PGD from the stored starts: a start next to a counterexample gives a confirmed one; on a
    verified ball nothing is found."""
    x, y = synthetic
    verifier = VERIFIERS["bab"](mlp, {**NO_PGD, "attack_every": 1}, "cpu")
    for image, robust in ((201, True), (207, False)):
        xi, label = x[image][None], int(y[image])
        bounds = verifier.bounds(xi, [label], EPS, "crown")
        search = bab._Search(verifier, xi, label, EPS, time.perf_counter() + 30,
                             bounds.pre_activation, bounds.tol[0], bounds.pre_tol)
        adv = pgd_attack(mlp, xi, torch.tensor([label]), EPS, steps=100, restarts=5,
                         loss="margin", generator=torch.Generator().manual_seed(0))
        search.attack_starts = torch.cat([xi, 0.5 * (xi + adv)])  # the centre; half-way there
        search._attack()
        assert search.attack_starts is None
        if robust:
            assert search.counterexample is None
        else:
            point = verifier.confirm_counterexample(search.counterexample, xi[0], EPS, label)
            assert point is not None


def test_search_options_are_checked(mlp):
    for options, match in (({"domain_refine": "beta"}, "domain_refine"),
                           ({"attack_every": -1}, "attack_every"),
                           ({"attack_steps": 0}, "attack_steps"),
                           ({"domain_batch": "many"}, "domain_batch")):
        with pytest.raises(VfbenchError, match=match):
            VERIFIERS["bab"](mlp, options, "cpu")
    auto = VERIFIERS["bab"](mlp, {"domain_batch": "auto"}, "cpu")
    assert auto.domain_batch == bab.AUTO_DOMAIN_BATCH["cpu_thread"] * torch.get_num_threads()
