"""Linearity grafting and activation pruning on small trained models: real CROWN bounds before
and after, reports that agree with the installed masks, ONNX that onnxruntime runs the same."""

import copy

import numpy as np
import pytest
import torch

from vfbench.export import export_onnx
from vfbench.models import GraftedReLU, get_site, site_names
from vfbench.transforms.graft import gradual_counts, install_grafts
from vfbench.transforms.methods import TRANSFORMS
from vfbench.transforms.score_specs import ScoreSpec
from vfbench.transforms.scores import ScoreSet, instability_counts
from vfbench.transforms.selection import SiteLayout

EPS = 0.05
STANDARD_OPS = {"Gemm", "MatMul", "Conv", "Relu", "Mul", "Add", "Sub", "Div", "Flatten",
                "Reshape", "BatchNormalization", "Constant", "Identity"}


def _run(method, base, dataset, scores=None, **options):
    model, ckpt = base
    return TRANSFORMS[method](copy.deepcopy(model), ckpt, dataset, {"method": method, **options},
                              "cpu", scores)


def _unstable_ratio(model, dataset):
    x, _ = dataset.tensors("test")
    counts = instability_counts(model, x, EPS, "crown", 32, "cpu")
    return sum(int(c.sum()) for c in counts.values()) / (len(x) * sum(c.size for c in
                                                                     counts.values())), counts


@pytest.mark.parametrize("base", ["mlp", "cnn"])
def test_grafting_half_lowers_crown_unstable_ratio_and_report_matches_mask(base, dataset,
                                                                           request):
    name = base
    base = request.getfixturevalue(base)
    before, _ = _unstable_ratio(base[0], dataset)
    result = _run("graft", base, dataset, ratio=0.5, eps=EPS, epochs=2, images=64)
    after, counts = _unstable_ratio(result.model, dataset)
    assert after < before

    sites = result.report["sites"]
    total = sum(s["n"] for s in sites.values())
    assert result.report["totals"]["n_grafted"] == round(0.5 * total)
    for site_name, site in sites.items():
        mask = np.asarray(site["mask"]).reshape(site["shape"])
        installed = get_site(result.model, site_name)
        if site["n_grafted"]:
            np.testing.assert_array_equal(mask, installed.mask.numpy())
        assert site["n_grafted"] == int(mask.sum())
        assert len(site["slope"]) == len(site["intercept"]) == site["n"]
        assert not counts[site_name][mask > 0].any()  # a grafted neuron is never unstable
    assert result.report["finetune"]["history"][0]["lr"] == 0.001  # the weights' lr
    if name == "mlp":  # the MLP learns the synthetic task; grafting half keeps most of it
        assert result.report["accuracy"]["finetuned"] > 0.8


def test_grafted_model_exports_to_standard_onnx_that_onnxruntime_matches(cnn, dataset, tmp_path):
    result = _run("graft", cnn, dataset, ratio=0.5, eps=EPS, epochs=1, images=32)
    assert any(isinstance(get_site(result.model, n), GraftedReLU)
               for n in site_names(result.model))
    x, _ = dataset.tensors("test", limit=16)
    check = export_onnx(result.model, tmp_path / "g.onnx", x)
    assert check["max_abs_diff_onnxruntime"] < 1e-5
    assert set(check["ops"]) <= STANDARD_OPS


def test_precomputed_scores_drive_the_selection(mlp, dataset):
    model, _ = mlp
    names = site_names(model)
    layout = SiteLayout.from_shapes({n: s for n, s in
                                     zip(names, [(32,), (16,)], strict=True)})
    raw_s = layout.split(np.arange(layout.total, dtype=float))  # neuron i has significance i
    spec = ScoreSpec("sap", images=1000)
    result = _run("activation_prune", mlp, dataset, {spec.id: ScoreSet(spec, raw_s, {})},
                  significance="sap", ratio=0.25, epochs=0)
    assert result.report["scores"]["significance"] == spec.id
    flat = np.concatenate([np.asarray(result.report["sites"][n]["mask"]) for n in names])
    assert np.flatnonzero(flat).tolist() == list(range(12))  # the 12 least significant


def test_activation_pruning_silences_the_least_significant_neurons(mlp, dataset):
    result = _run("activation_prune", mlp, dataset, significance="sap", ratio=0.5, epochs=1,
                  images=64)
    model = result.model
    x, _ = dataset.tensors("test", limit=8)
    outputs = {}
    hooks = [get_site(model, n).register_forward_hook(
        lambda m, i, o, n=n: outputs.__setitem__(n, o.detach())) for n in site_names(model)]
    model(x)
    for h in hooks:
        h.remove()
    for name in site_names(model):
        site = get_site(model, name)
        if isinstance(site, GraftedReLU):
            pruned = site.mask > 0.5
            assert torch.all(outputs[name][:, pruned] == 0)
            assert torch.all(site.a[pruned] == 0) and torch.all(site.b[pruned] == 0)
    assert result.report["totals"]["n_grafted"] == 24
    assert result.report["entry"]["activation"] == "zero"


def test_hydra_pruning_without_a_score_file_learns_scores_with_the_base_loss(mlp, dataset):
    """The transform computes a missing score itself; Hydra's default loss is the base model's,
    read from the checkpoint it is given."""
    result = _run("activation_prune", mlp, dataset, significance="hydra", ratio=0.5, epochs=1,
                  hydra_epochs=1)
    assert result.report["totals"]["n_grafted"] == 24
    assert result.report["scores"]["significance"].endswith("(computed in place)")


def test_tuning_only_the_graft_keeps_the_weights(mlp, dataset):
    result = _run("graft", mlp, dataset, eps=EPS, tune="graft", epochs=2, images=32,
                  a_init=0.2, lr_graft=0.5)
    weights = {k: v for k, v in mlp[0].state_dict().items()
               if k.endswith("weight") or k.endswith("bias")}
    tuned = result.model.state_dict()
    for key, value in weights.items():
        torch.testing.assert_close(tuned[key], value)
    slopes = np.concatenate([np.asarray(s["slope"])[np.asarray(s["mask"]) > 0]
                             for s in result.report["sites"].values()])
    assert not np.allclose(slopes, 0.2)  # (a, b) moved
    assert all(p.requires_grad for p in result.model.parameters())


def test_gradual_grafting_follows_the_cubic_schedule(mlp, dataset):
    assert gradual_counts(100, 10) == [49, 78, 94, 99, 100, 100, 100, 100, 100, 100]
    result = _run("graft", mlp, dataset, eps=EPS, gradual=True, epochs=4, images=32)
    assert result.report["gradual"]["schedule"] == gradual_counts(24, 4) == [21, 24, 24, 24]
    assert result.report["gradual"]["applied"] == [21, 24, 24, 24]  # one stage per epoch
    assert result.report["totals"]["n_grafted"] == 24


def test_grafting_variants_select_as_configured(mlp, dataset):
    zero = _run("graft", mlp, dataset, eps=EPS, activation="zero", epochs=1, images=32)
    rand = _run("graft", mlp, dataset, selection="random", epochs=0)
    for result in (zero, rand):
        assert result.report["totals"]["n_grafted"] == 24
    assert all(s["a"]["max"] in (None, 0.0) for s in zero.report["sites"].values())
    assert rand.report["scores"] == {"instability": "not used", "significance": "not used"}
    rs = _run("graft", mlp, dataset, selection="random", epochs=1, extra_losses={"relu_stable": 1},
              finetune={"loss_options": {"relu_stable": {"eps": EPS, "l1_weight": 0.0}}})
    finetune = rs.report["finetune"]
    assert finetune["entry"]["losses"] == {"natural": 1.0, "relu_stable": 1.0}
    assert finetune["entry"]["loss_options"]["relu_stable"]["eps"] == EPS
    assert finetune["entry"]["schedule"]["name"] == "cosine"
    assert "loss_relu_stable" in finetune["history"][0]
    swp = _run("graft", mlp, dataset, eps=EPS, epochs=0, images=32, small_weight_threshold=0.02)
    zeroed = swp.report["small_weight_pruning"]["weights_zeroed"]
    assert zeroed == sum(int((m.weight == 0).sum()) for m in swp.model.modules()
                         if isinstance(m, torch.nn.Linear)) > 0



def test_grafting_a_grafted_site_keeps_the_earlier_grafts(mlp):
    model = copy.deepcopy(mlp[0])
    name = site_names(model)[0]
    first = np.zeros(32)
    first[:4] = 1
    install_grafts(model, {name: first}, slope=0.3, intercept=0.1)
    with torch.no_grad():
        get_site(model, name).a[:4] = 0.7
    second = np.zeros(32)
    second[2:8] = 1
    assert install_grafts(model, {name: second, site_names(model)[1]: np.zeros(16)},
                          slope=0.4, intercept=0.0) == [name]
    site = get_site(model, name)
    assert site.mask.tolist() == [1.0] * 8 + [0.0] * 24
    assert site.a[:4].tolist() == pytest.approx([0.7] * 4)
    assert site.a[4:8].tolist() == pytest.approx([0.4] * 4)
    assert not isinstance(get_site(model, site_names(model)[1]), GraftedReLU)
