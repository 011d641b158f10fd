"""The export's standard-op form: normalisation folded into an MLP's first Gemm or as
BatchNormalization, grafted activations with masks folded into Gemm/Conv weights; what
onnxruntime, vfbench's importer and Marabou read."""

import numpy as np
import pytest
import torch

from vfbench.export import export_onnx, onnxruntime_session
from vfbench.export_graft import standard_op_form
from vfbench.fold import fold_batchnorm
from vfbench.models import GraftedReLU, build_model, get_site, set_site, site_shapes
from vfbench.verify.onnx_import import load_onnx

SMALL = {"num_classes": 3, "mean": (0.3,), "std": (0.3,)}
STANDARD_OPS = {"BatchNormalization", "Flatten", "Gemm", "Conv", "Relu", "Add", "Reshape",
                "Constant"}


def graft(model, name, mask, slope=None, intercept=None, seed=0):
    shape = site_shapes(model)[name]
    gen = torch.Generator().manual_seed(seed)
    site = GraftedReLU(shape, mask.reshape(shape))
    with torch.no_grad():
        site.a.copy_(torch.rand(shape, generator=gen) * 2 - 1 if slope is None else slope)
        site.b.copy_(torch.rand(shape, generator=gen) * 0.2 - 0.1 if intercept is None
                     else intercept)
    set_site(model, name, site)
    return mask.reshape(-1).bool()


def mlp():
    torch.manual_seed(0)
    model = build_model("net1", input_shape=(1, 6, 6), hidden=(16, 8), **SMALL).eval()
    with torch.no_grad():  # BN statistics that do something, then folded as the pipeline does
        for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
    return fold_batchnorm(model)[0]


def cnn(seed=1):
    torch.manual_seed(seed)
    return build_model("cnn_4layer", input_shape=(1, 8, 8), channels=(4, 8), hidden=(16,),
                       **SMALL).eval()


def exported(model, tmp_path, name="m.onnx"):
    x = torch.rand(32, *model.input_shape)
    check = export_onnx(model, tmp_path / name, x)
    assert check["max_abs_diff_onnxruntime"] <= 1e-5
    assert set(check["ops"]) <= STANDARD_OPS, check["ops"]
    return str(tmp_path / name), x


def grafted_models():
    """(model, {site: grafted neurons}) for each form the export writes."""
    net = mlp()  # folded into the Gemm (and the second site pruned: a = b = 0)
    m1 = {"body.3": graft(net, "body.3", torch.arange(16) % 2 == 0),
          "body.6": graft(net, "body.6", torch.arange(8) < 3, slope=0.0, intercept=0.0)}
    per_neuron = cnn()  # per-neuron mask after a conv: dense form
    m2 = {"body.1": graft(per_neuron, "body.1",
                          torch.rand(4, 4, 4, generator=torch.Generator().manual_seed(3)) < 0.5)}
    per_channel = cnn()  # whole channels pruned: folded into the Conv
    channels = torch.tensor([1.0, 0, 0, 1]).view(4, 1, 1).expand(4, 4, 4)
    m3 = {"body.1": graft(per_channel, "body.1", channels > 0, slope=0.0, intercept=0.0)}
    return [(net, m1), (per_neuron, m2), (per_channel, m3)]


@pytest.mark.parametrize("case", range(3), ids=["mlp-folded", "conv-dense", "conv-channels"])
def test_grafted_export_has_standard_ops_and_constant_relu_inputs(tmp_path, case):
    model, grafted = grafted_models()[case]
    path, x = exported(model, tmp_path)
    imported = load_onnx(path)
    assert imported.sites[:len(site_shapes(model))] == list(site_shapes(model))  # names kept
    for site, neurons in grafted.items():
        zero = imported.zero_input[imported.sites.index(site)]
        shape = site_shapes(model)[site]
        assert zero is not None
        if zero.numel() != neurons.numel():  # per channel (C, 1, 1)
            zero = zero.expand(shape)
        assert torch.equal(zero.reshape(-1), neurons)
    with torch.no_grad():
        assert (imported(x) - model(x)).abs().max() <= 1e-5
    if case == 2:
        assert "Gemm" not in [n.op_type for n in __import__("onnx").load(path).graph.node][:3]


def test_standard_op_form_of_a_model_without_grafts_only_rewrites_the_normalisation():
    model = cnn()
    form = standard_op_form(model)
    assert isinstance(form.normalize, torch.nn.BatchNorm2d) and form.normalize.eps == 0
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert (form(x) - model(x)).abs().max() <= 1e-5
    assert isinstance(get_site(form, "body.1"), torch.nn.ReLU)


def test_an_mlps_normalisation_is_folded_into_its_first_gemm(tmp_path):
    """Flatten, Gemm, Relu only (what pyNeVer's verifiers take: they refuse
    BatchNormalization), and the same function: the normalisation is exact in the weights."""
    model, _ = grafted_models()[0]
    form = standard_op_form(model)
    assert isinstance(form.normalize, torch.nn.Identity)
    path, x = exported(model, tmp_path)
    ops = [n.op_type for n in __import__("onnx").load(path).graph.node]
    assert ops[:2] == ["Flatten", "Gemm"] and "BatchNormalization" not in ops, ops
    with torch.no_grad():
        assert (form(x) - model(x)).abs().max() <= 1e-5


def test_residual_site_after_an_add_uses_the_identity_dense_form(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet4b", input_shape=(1, 8, 8), channels=(2, 2, 2), hidden=(8,),
                        **SMALL).eval()
    name = "body.2.relu2"  # relu(conv2(...) + shortcut(x)): no single layer before it
    grafted = graft(model, name, torch.rand(site_shapes(model)[name]) < 0.5)
    path, _ = exported(model, tmp_path)
    imported = load_onnx(path)
    zero = imported.zero_input[imported.sites.index(name)]
    assert torch.equal(zero.reshape(-1), grafted)


def test_crown_bounds_the_folded_form_and_grafted_neurons_are_stable(tmp_path):
    from vfbench.verify.verifiers import CrownVerifier

    model, grafted = grafted_models()[1]
    path, x = exported(model, tmp_path)
    verifier = CrownVerifier(load_onnx(path), {"pgd_steps": 0})
    record = verifier.verify(x[0], int(model(x[:1]).argmax()), 0.5, 10)
    assert record["status"] in ("verified", "unknown")
    assert record["n_relu"] == 4 * 4 * 4 + 8 * 2 * 2 + 16
    bounds = verifier.bounds(x[:1], [0], 0.5, "crown").pre_activation[0]
    lower, upper = (b.reshape(-1) for b in bounds)
    neurons = grafted["body.1"]
    assert (lower[neurons] == 0).all() and (upper[neurons] == 0).all()


@pytest.mark.parametrize("case", range(3), ids=["mlp-folded", "conv-dense", "conv-channels"])
def test_marabou_reads_grafted_and_pruned_exports(tmp_path, case):
    marabou = pytest.importorskip("maraboupy.Marabou", reason="maraboupy not installed")
    model, _ = grafted_models()[case]
    path, x = exported(model, tmp_path)
    network = marabou.read_onnx(path)
    want = onnxruntime_session(path).run(None, {"input": x[:1].numpy()})[0]
    got = network.evaluateWithoutMarabou([x[:1].numpy()])[0]
    assert np.abs(got - want).max() <= 1e-5
