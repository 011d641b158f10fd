"""auto_LiRPA shims (each one's effect) and the margin-bound helpers (soundness on samples)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from verify_nets import CLASSES, graft_first_site, sample_ball, small_cnn

from vfbench.errors import VfbenchError
from vfbench.models import GraftedReLU, VfModel, build_model, set_site, site_names, site_shapes
from vfbench.verify import lirpa

# --- the shims -------------------------------------------------------------------------------


def test_numpy_arraysetops_isin_importable():
    from numpy.lib.arraysetops import isin

    assert isin(np.array([1, 2, 3]), [2]).tolist() == [False, True, False]


def test_numpy_builtin_aliases():
    assert np.int is int or np.int is np.int_
    assert np.float(1.5) == 1.5
    assert np.zeros(2, dtype=np.bool).dtype == np.bool_


def test_set_opset_version_sets_the_exporters_global_opset():
    from torch.onnx.symbolic_helper import _set_opset_version

    globals_ = lirpa._onnx_exporter_globals()
    before = globals_.export_onnx_opset_version
    try:
        _set_opset_version(13)
        assert globals_.export_onnx_opset_version == 13
    finally:
        globals_.export_onnx_opset_version = before


def test_node_getitem_reads_attributes():
    graph = torch.jit.trace(lambda x: x * 2.5, torch.ones(2)).graph
    constants = [n for n in graph.nodes() if n.kind() == "prim::Constant" and "value" in
                 n.attributeNames()]
    assert constants and all(n["value"] is not None for n in constants)


def test_torch_six_string_classes():
    import torch._six

    assert str in torch._six.string_classes


def test_bounded_module_parameters_listable(trained_mlp, synthetic):
    bm = lirpa.bounded_model(trained_mlp, synthetic[0][:1])
    assert len(list(bm.parameters())) > 0


def test_patches_times_constant_without_batch_dimension():
    """Channel-wise (batch of 2) and per-neuron constants multiply patches: as the dense matrix
    of the same pieces would be multiplied."""
    from auto_LiRPA.patches import patches_to_matrix

    pieces = torch.randn(1, 2, 4, 4, 2, 3, 3)
    A = lirpa.Patches(pieces, stride=1, padding=1)
    for const in (torch.rand(1, 2, 1, 1), torch.rand(2, 4, 4)):
        product = lirpa.BoundMul._multiply_by_const(A, const)
        dense = patches_to_matrix(product.patches, (2, 2, 4, 4), 1, 1)
        per_input = const.reshape(2, *const.shape[-2:])
        expected = patches_to_matrix(pieces, (2, 2, 4, 4), 1, 1) * per_input
        assert torch.allclose(dense, expected, atol=1e-6)


def test_per_neuron_constant_root_after_strided_conv_bounds_in_patches_mode(grafted_cnn):
    """The grafted site's b is a root behind a stride-2 conv: 0.3 concretised it against the
    image's shape and failed."""
    model = grafted_cnn[0]
    x = torch.rand(3, 1, 8, 8)
    bounds = {mode: lirpa.compute_margin_bounds(lirpa.bounded_model(model, x[:1], mode), x, 0.05,
                                                [0, 1, 2], "crown").lower
              for mode in lirpa.CONV_MODES}
    assert torch.allclose(bounds["patches"], bounds["matrix"], atol=1e-5)


def _mixed_graft_cnn():
    """Convs with a grafted site between them: patches mode meets per-neuron constants."""
    from torch import nn

    torch.manual_seed(3)
    body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64, CLASSES))
    model = VfModel(body, (2, 8, 8), CLASSES, (0.3, 0.5), (0.2, 0.3)).eval()
    graft_first_site(model)  # body.1, followed by two convs
    return model


@pytest.mark.parametrize("method", ["crown", "alpha_crown"])
def test_patches_mode_equals_matrix_mode_on_grafted_cnn(method):
    model = _mixed_graft_cnn()
    x = torch.rand(2, 2, 8, 8)
    options = {"iterations": 3, "optimize_intermediate": False}
    results = {mode: lirpa.compute_margin_bounds(
        lirpa.bounded_model(model, x[:1], conv_mode=mode), x, 0.02, [0, 1], method, options)
        for mode in lirpa.CONV_MODES}
    assert torch.allclose(results["patches"].lower, results["matrix"].lower, atol=1e-5)
    for (lp, up), (lm, um) in zip(results["patches"].pre_activation,
                                  results["matrix"].pre_activation, strict=True):
        assert torch.allclose(lp, lm, atol=1e-5) and torch.allclose(up, um, atol=1e-5)


def test_alpha_crown_with_a_fully_unstable_layer(trained_mlp, synthetic):
    """0.3 crashed here (alpha_indices left set) unless sparse_features_alpha is off."""
    x = synthetic[0][:2]
    bm = lirpa.bounded_model(trained_mlp, x[:1])
    crown = lirpa.compute_margin_bounds(bm, x, 0.5, [0, 1], "crown")
    lower, upper = crown.pre_activation[0]
    assert ((lower < 0) & (upper > 0)).float().mean() > 0.9
    alpha = lirpa.compute_margin_bounds(bm, x, 0.5, [0, 1], "alpha_crown", {"iterations": 3})
    assert (alpha.lower >= crown.lower - 1e-6).all()


def test_every_shim_is_in_place_and_recorded_once():
    """Each shim's own probe no longer finds its failure (applied, or never needed), and the
    applied ones are recorded once each. The concretise shim patches the caller
    (backward_bound.concretize), not the Patches.matmul its probe calls: it stays 'needed' and
    must be applied (its effect: the patches/matrix agreement tests above)."""
    caller_shims = {"patches concretised against a per-neuron constant"}
    shims = lirpa._PRE_IMPORT_SHIMS + lirpa._POST_IMPORT_SHIMS
    still_needed = {name for name, needed, _ in shims if needed()}
    assert still_needed - caller_shims == set()
    assert still_needed & caller_shims <= set(lirpa.APPLIED_SHIMS)
    assert len(set(lirpa.APPLIED_SHIMS)) == len(lirpa.APPLIED_SHIMS)
    assert set(lirpa.APPLIED_SHIMS) <= {name for name, _, _ in shims}


# --- helpers ---------------------------------------------------------------------------------

def test_margin_spec_rows():
    C = lirpa.margin_spec(torch.tensor([2, 0]), 4)
    assert C.shape == (2, 3, 4)
    logits = torch.tensor([[1.0, 2.0, 5.0, 3.0], [4.0, 1.0, 0.0, 2.0]])
    margins = torch.einsum("bjk,bk->bj", C, logits)
    assert margins.tolist() == [[4.0, 3.0, 2.0], [3.0, 4.0, 2.0]]
    with pytest.raises(VfbenchError, match="label 4"):
        lirpa.margin_spec(torch.tensor([4]), 4)


def test_ball_is_clipped_to_pixel_box():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    region = lirpa.ball(x, 0.1)
    assert torch.allclose(region.ptb.x_L, torch.tensor([[0.0, 0.4, 0.9]]))
    assert torch.allclose(region.ptb.x_U, torch.tensor([[0.1, 0.6, 1.0]]))


def _sampled_margins(model, x, labels, eps, n=300):
    out = []
    with torch.no_grad():
        for xi, label in zip(x, labels, strict=True):
            logits = model(sample_ball(xi, eps, n))
            others = [j for j in range(logits.shape[1]) if j != label]
            out.append((logits[:, label:label + 1] - logits[:, others]).min(0).values)
    return torch.stack(out)


@pytest.mark.parametrize("method", lirpa.BOUND_METHODS)
@pytest.mark.parametrize("net", ["mlp", "cnn", "grafted"])
def test_margin_lower_bounds_hold_on_samples(method, net, trained_mlp, synthetic, grafted_cnn):
    if net == "mlp":
        model, x = trained_mlp, synthetic[0][:3]
    else:
        model = small_cnn() if net == "cnn" else grafted_cnn[0]
        x = torch.rand(3, 1, 8, 8)
    labels = [0, 1, 2]
    eps = 0.05
    bounds = lirpa.compute_margin_bounds(lirpa.bounded_model(model, x[:1]), x, eps, labels,
                                         method, {"iterations": 5})
    assert bounds.lower.shape == (3, CLASSES - 1)
    assert (bounds.lower <= _sampled_margins(model, x, labels, eps) + 1e-5).all()


def test_pre_activation_bounds_contain_sampled_pre_activations(grafted_cnn):
    model, mask, _ = grafted_cnn
    x = torch.rand(1, 1, 8, 8)
    eps = 0.05
    bounds = lirpa.compute_margin_bounds(lirpa.bounded_model(model, x), x, eps, [0], "crown")
    seen = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, inp, out, n=n: seen.__setitem__(
            n, m.keep * inp[0] if isinstance(m, GraftedReLU) else inp[0]))
        for n in site_names(model)]
    with torch.no_grad():
        model(sample_ball(x[0], eps, 200))
    for h in hooks:
        h.remove()
    for name, (lower, upper) in zip(site_names(model), bounds.pre_activation, strict=True):
        assert (seen[name] >= lower - 1e-5).all() and (seen[name] <= upper + 1e-5).all()
    first_lower, first_upper = bounds.pre_activation[0]
    grafted = mask.bool().expand_as(first_lower)
    assert (first_lower[grafted] == 0).all() and (first_upper[grafted] == 0).all()


def test_alpha_crown_is_at_least_crown(trained_mlp, synthetic):
    x = synthetic[0][:4]
    bm = lirpa.bounded_model(trained_mlp, x[:1])
    crown = lirpa.compute_margin_bounds(bm, x, 0.1, [0, 1, 2, 0], "crown")
    alpha = lirpa.compute_margin_bounds(bm, x, 0.1, [0, 1, 2, 0], "alpha_crown",
                                        {"iterations": 5, "early_stop": False})
    assert (alpha.lower >= crown.lower - 1e-6).all()
    # after alpha-CROWN the same wrapper still bounds other batch sizes
    again = lirpa.compute_margin_bounds(bm, x[:3], 0.1, [0, 1, 2], "crown")
    assert torch.allclose(again.lower, crown.lower[:3], atol=1e-6)


@pytest.mark.parametrize("deadline_passed", [False, True])
def test_alpha_crown_stops_optimising_at_the_deadline(trained_mlp, synthetic, monkeypatch,
                                                      deadline_passed):
    """The verification timeout reaches alpha-CROWN's iterations (ResNet-4B's ran 263 s per
    image at a 20 s timeout before): past the deadline the first iteration ends it, and the
    bound is still at least CROWN's."""
    calls = []
    real = lirpa.stop_criterion

    def counting(proven, deadline):
        criterion = real(proven, deadline)
        return lambda lower: calls.append(1) or criterion(lower)

    monkeypatch.setattr(lirpa, "stop_criterion", counting)
    x = synthetic[0][:2]
    bm = lirpa.bounded_model(trained_mlp, x[:1])
    crown = lirpa.compute_margin_bounds(bm, x, 0.1, [0, 1], "crown")
    deadline = time.perf_counter() - 1 if deadline_passed else time.perf_counter() + 600
    alpha = lirpa.compute_margin_bounds(bm, x, 0.1, [0, 1], "alpha_crown",
                                        {"iterations": 20, "early_stop": False},
                                        deadline=deadline)
    assert len(calls) == (1 if deadline_passed else 20)
    assert (alpha.lower >= crown.lower - 1e-6).all()


def test_bad_method_and_options_are_errors(trained_mlp, synthetic):
    bm = lirpa.bounded_model(trained_mlp, synthetic[0][:1])
    with pytest.raises(VfbenchError, match="bound method"):
        lirpa.compute_margin_bounds(bm, synthetic[0][:1], 0.1, [0], "deeppoly")
    with pytest.raises(VfbenchError, match="iters"):
        lirpa.compute_margin_bounds(bm, synthetic[0][:1], 0.1, [0], "alpha_crown", {"iters": 3})
    with pytest.raises(VfbenchError, match="conv_mode"):
        lirpa.bounded_model(trained_mlp, synthetic[0][:1], conv_mode="dense")


def test_bounds_on_zoo_model_match_batch_and_single():
    model = build_model("net1", input_shape=(1, 6, 6), num_classes=CLASSES, mean=(0.5,),
                        std=(0.5,), hidden=(8, 8)).eval()
    x = torch.rand(3, 1, 6, 6)
    bm = lirpa.bounded_model(model, x[:1])
    batch = lirpa.compute_margin_bounds(bm, x, 0.03, [0, 1, 2], "crown").lower
    single = torch.cat([lirpa.compute_margin_bounds(bm, x[i:i + 1], 0.03, [i], "crown").lower
                        for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-6)
    assert site_shapes(model)  # the model has activation sites to bound


def test_grafted_model_with_relu_swapped_in_still_bounds():
    model = small_cnn(seed=2)
    name, shape = next(iter(site_shapes(model).items()))
    set_site(model, name, GraftedReLU(shape, torch.ones(shape)))  # fully grafted site
    x = torch.rand(2, 1, 8, 8)
    bounds = lirpa.compute_margin_bounds(lirpa.bounded_model(model, x[:1]), x, 0.05, [0, 1],
                                         "crown")
    lower, upper = bounds.pre_activation[0]
    assert (lower == 0).all() and (upper == 0).all()


def test_zero_pad_traced_from_torch_is_bounded_soundly():
    """CNN-B's ZeroPad2d traces to an onnx::Pad with a pads attribute (crown_ibp training bounds
    the torch model directly); the BoundPad shim makes it boundable, and the bound is sound."""
    import torch

    from vfbench.models import build_model
    from vfbench.verify import lirpa

    torch.manual_seed(0)
    model = build_model("cnn_b", input_shape=(3, 32, 32), num_classes=10,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    x = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([0, 1])
    bm = lirpa.bounded_model(model, x)
    lower = lirpa.compute_margin_bounds(bm, x, 0.001, labels, "crown", {}).lower
    spec = lirpa.margin_spec(labels, 10)
    with torch.no_grad():
        for _ in range(20):
            z = model((x + 0.001 * (2 * torch.rand_like(x) - 1)).clamp(0, 1))
            assert (lower <= torch.einsum("bkc,bc->bk", spec, z) + 1e-5).all()


def test_alpha_crown_keeps_stdout_clean(trained_mlp, synthetic, capfd):
    """auto_LiRPA prints 'all verified at Nth iter' when its early stop fires; a script's stdout
    (file lists, JSON) must not carry it."""
    x, y = synthetic[0][239:240], synthetic[1][239:240]  # CROWN fails, alpha-CROWN proves it
    bm = lirpa.bounded_model(trained_mlp, x)
    crown = lirpa.compute_margin_bounds(bm, x, 0.01, y.tolist(), "crown")
    alpha = lirpa.compute_margin_bounds(bm, x, 0.01, y.tolist(), "alpha_crown",
                                        {"iterations": 20})
    assert not (crown.lower > 0).all() and (alpha.lower > 0).all()
    assert "verified" not in capfd.readouterr().out
