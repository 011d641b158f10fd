"""Instability and significance scores: real bounds, real gradients, their files and ids."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vfbench.errors import VfbenchError
from vfbench.losses import LOSSES
from vfbench.models import build_model, get_site, site_names
from vfbench.train import resolve_train_entry, train_model
from vfbench.transforms.score_specs import ScoreSpec, parse_score_id
from vfbench.transforms.scores import (
    NATURAL_OBJECTIVE,
    compute_score,
    gap_significance,
    hydra_objective,
    hydra_significance,
    instability_counts,
    instability_score,
    load_scores,
    sap_significance,
    save_scores,
    score_images,
    site_bounds,
)
from vfbench.verify.lirpa import bounded_model

EPS = 0.05


@pytest.mark.parametrize("spec", [
    ScoreSpec("instability", images=100, bound="crown", eps=0.1),
    ScoreSpec("instability", images=7, bound="alpha_crown", eps=2 / 255),
    ScoreSpec("instability", images=7, bound="ibp", eps=1e-5),
    ScoreSpec("gap", images=1000),
    ScoreSpec("hydra", images=50, keep=0.5, epochs=5, loss="natural"),
    ScoreSpec("hydra", images="train", keep=0.3, epochs=20, loss="base"),
])
def test_score_ids_round_trip(spec):
    assert parse_score_id(spec.id) == spec


def test_hydra_ids_name_images_and_loss():
    assert ScoreSpec("hydra", images="train", keep=0.5, epochs=5, loss="base").id == \
        "hydra-train-base-keep0.5-e5"
    assert ScoreSpec("hydra", images=1000, keep=0.5, epochs=5, loss="natural").id == \
        "hydra-n1000-natural-keep0.5-e5"


@pytest.mark.parametrize("bad, message", [
    ("instability-dp-eps0.1-n10", "bound 'dp' unknown"),
    ("gap-n0", "at least 1"),
    ("gap-x3", "cannot read part"),
    ("magic-n10", "unknown score kind"),
    ("instability-crown-eps0.10-n10", "not canonical"),
    ("hydra-n1000-keep0.5-e5", "loss None unknown"),        # an id from before hydra_loss
    ("hydra-train-pgd-keep0.5-e5", "cannot read part 'pgd'"),
    ("hydra-keep0.5-base-train-e5", "not canonical"),
    ("gap-train-base", "cannot read part 'base'"),
])
def test_bad_score_ids_are_errors(bad, message):
    with pytest.raises(VfbenchError, match=message):
        parse_score_id(bad)


def _pre_activations(model, x):
    record = {}
    hooks = [get_site(model, n).register_forward_hook(
        lambda m, inp, out, n=n: record.__setitem__(n, inp[0].detach()))
        for n in site_names(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return record


@pytest.mark.parametrize("bound", ["ibp", "crown"])
def test_instability_counts_cover_every_neuron_seen_changing_sign(mlp, dataset, bound):
    """Soundness: a neuron whose pre-activation takes both signs at sampled points of some image's
    ball must be counted unstable on that image (checked one image at a time)."""
    model, _ = mlp
    x, _ = dataset.tensors("test", limit=6)
    total = {n: np.zeros(s.shape) for n, s in instability_counts(model, x[:1], EPS, bound, 4,
                                                                   "cpu").items()}
    for i in range(len(x)):
        counts = instability_counts(model, x[i:i + 1], EPS, bound, 4, "cpu")
        samples = (x[i:i + 1] + (torch.rand(256, *x.shape[1:]) * 2 - 1) * EPS).clamp(0, 1)
        pre = _pre_activations(model, samples)
        for name, values in pre.items():
            both = (values.amax(0) > 0) & (values.amin(0) < 0)
            assert np.all(counts[name][both.numpy()] == 1), name
            total[name] += counts[name]
    all_counts = instability_counts(model, x, EPS, bound, 4, "cpu")
    for name in total:
        np.testing.assert_array_equal(all_counts[name], total[name])  # batching changes nothing
    assert sum(int(c.sum()) for c in all_counts.values()) > 0


def test_bounds_reach_the_right_site_in_residual_nets():
    """Sites of equal shape (residual blocks) get their own ReLU node's bounds: at eps ~ 0 the
    bounds are the site's own pre-activation."""
    model = build_model("resnet4b", input_shape=(3, 16, 16), num_classes=10, mean=[0.5] * 3,
                        std=[0.3] * 3, channels=(4, 6, 6), hidden=(8,)).eval()
    x = torch.rand(2, 3, 16, 16)
    pre = _pre_activations(model, x)
    bounds = site_bounds(model, bounded_model(model, x[:1]), x, 1e-7, "crown",
                         model(x).argmax(1))
    assert list(bounds) == site_names(model)
    for name, (lower, upper) in bounds.items():
        torch.testing.assert_close(lower, pre[name], atol=1e-4, rtol=0)
        torch.testing.assert_close(upper, pre[name], atol=1e-4, rtol=0)


def test_instability_score_is_the_global_rank(mlp, dataset):
    model, _ = mlp
    x, _ = dataset.tensors("test", limit=8)
    counts = instability_counts(model, x, EPS, "crown", 8, "cpu")
    score = instability_score(model, x, EPS, "crown", 8, "cpu")
    flat_c = np.concatenate([counts[n].ravel() for n in counts])
    flat_s = np.concatenate([score[n].ravel() for n in score])
    assert 0 <= flat_s.min() < flat_s.max() <= 1
    assert np.all(np.diff(flat_s[np.argsort(flat_c, kind="stable")]) >= 0)


def test_gap_and_sap_are_mean_gradient_and_activation_magnitudes(mlp, dataset):
    model, _ = mlp
    x, y = dataset.tensors("test", limit=10)
    site = site_names(model)[0]
    record = {}
    hook = get_site(model, site).register_forward_hook(
        lambda m, inp, out: record.__setitem__("out", out))
    out = model(x)
    hook.remove()
    (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), record["out"])
    gap = gap_significance(model, x, y, batch_size=3)
    sap = sap_significance(model, x, y, batch_size=4)
    np.testing.assert_allclose(gap[site], grad.abs().mean(0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sap[site], record["out"].abs().mean(0).detach().numpy(),
                               rtol=1e-5, atol=1e-7)


def test_hydra_learns_scores_with_weights_frozen(mlp, dataset):
    model, _ = mlp
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = score_images(dataset, 64, "cpu")
    meta = {}
    scores = hydra_significance(model, x, y, 16, keep=0.5, epochs=2,
                                rng=np.random.default_rng(0), meta=meta)
    sap = sap_significance(model, x, y, 16)
    init = {n: v / v.max() for n, v in sap.items()}
    assert any(not np.allclose(scores[n], init[n]) for n in scores)  # it learned
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])  # weights and BN statistics untouched
    assert all(p.requires_grad for p in model.parameters())
    assert meta["hydra"]["loss_terms"] == {"natural": 1.0} and meta["hydra"]["images"] == 64
    assert [row["epoch"] for row in meta["hydra"]["history"]] == [1, 2]


@pytest.fixture(scope="module")
def pgd_trained(dataset, mlp):
    """A tiny MLP after one epoch of 2-step PGD training on 64 images, and its checkpoint."""
    data = replace(dataset, x_train=dataset.x_train[:64], y_train=dataset.y_train[:64])
    kwargs = mlp[1]["arch_kwargs"]
    model = build_model("net1", **kwargs)
    entry = resolve_train_entry({"epochs": 1, "batch_size": 32, "losses": {"pgd": 1.0},
                                 "loss_options": {"pgd": {"eps": 0.05, "steps": 2}},
                                 "eps_ramp": {"start_epoch": 0, "epochs": 5}})
    train_model(model, data, entry, "cpu", seed=0)
    return model.eval(), {"arch": "net1", "arch_kwargs": kwargs,
                          "config": {"train": entry, "seed": 0}}, data


def test_hydra_with_the_base_loss_optimises_the_recorded_objective(pgd_trained, tmp_path,
                                                                    monkeypatch):
    model, ckpt, data = pgd_trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []  # (eps ramp, steps, model in train mode) of every pgd term evaluation
    pgd = LOSSES["pgd"]

    def spy(batch, opts):
        seen.append((batch.ramp, opts["steps"], batch.model.training))
        return pgd.fn(batch, opts)

    monkeypatch.setitem(LOSSES, "pgd", replace(pgd, fn=spy))
    spec = ScoreSpec("hydra", images="train", keep=0.5, epochs=2, loss="base")
    meta = {}
    raw = compute_score(spec, model, data, "cpu", batch_size=8, ckpt=ckpt, meta=meta)
    assert set(seen) == {(1.0, 2, False)} and len(seen) == 4  # full eps, eval mode, 2 x 2 batches
    hydra = meta["hydra"]
    assert hydra["loss_terms"] == {"pgd": 1.0}
    assert hydra["loss_options"]["pgd"]["steps"] == 2 and hydra["eps_ramp"] == 1.0
    assert meta["images"] == hydra["images"] == 64 and hydra["epochs"] == 2
    assert hydra["batch_size"] == 32  # the base training's, not the score batch size
    assert [set(row) >= {"objective", "pgd", "lr"} for row in hydra["history"]] == [True] * 2
    assert all(np.isfinite(row["objective"]) for row in hydra["history"])
    x, y = data.tensors("train")
    init = {n: v / v.max() for n, v in sap_significance(model, x, y, 8).items()}
    assert any(not np.allclose(raw[n], init[n]) for n in raw)  # optimised away from the init
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    save_scores(tmp_path / "h.npz", spec, raw, meta)
    assert load_scores(tmp_path / "h.npz").meta["hydra"]["loss_terms"] == {"pgd": 1.0}
    natural = compute_score(replace(spec, loss="natural"), model, data, "cpu", batch_size=8,
                            ckpt=ckpt)
    assert any(not np.allclose(natural[n], raw[n]) for n in raw)  # the loss matters


def test_hydra_objective_from_the_base_training(sparse_mlp):
    _, ckpt = sparse_mlp
    objective = hydra_objective("base", ckpt)
    assert objective.losses == {"natural": 1.0} and objective.left_out == ("sparse_bn",)
    assert objective.batch_size == 32
    assert hydra_objective("natural", None) == NATURAL_OBJECTIVE
    with pytest.raises(VfbenchError, match="needs the base model's checkpoint"):
        hydra_objective("base", None)
    certified = {"config": {"train": {"losses": {"crown_ibp": 1.0}}}}
    with pytest.raises(VfbenchError, match="crown_ibp.*hydra_loss: natural"):
        hydra_objective("base", certified)


def test_score_file_round_trip(tmp_path, mlp, dataset):
    model, _ = mlp
    spec = ScoreSpec("sap", images=20)
    raw = compute_score(spec, model, dataset, "cpu", batch_size=8)
    save_scores(tmp_path / "s.npz", spec, raw, {"arch": "net1"})
    loaded = load_scores(tmp_path / "s.npz")
    assert loaded.spec == spec and loaded.meta["arch"] == "net1"
    assert list(loaded.raw) == site_names(model)
    for name in raw:
        np.testing.assert_array_equal(loaded.raw[name], raw[name])
    with np.load(tmp_path / "s.npz") as data:  # the normalised r_s the scatter plot reads
        assert all(0 <= data[f"score/{n}"].min() <= data[f"score/{n}"].max() <= 1 for n in raw)
    with pytest.raises(VfbenchError, match="not found"):
        load_scores(tmp_path / "missing.npz")
