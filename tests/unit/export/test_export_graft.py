"""The export's standard-op form: normalisation folded into an MLP's first Gemm or as
BatchNormalization, grafted activations with masks folded into Gemm/Conv weights; what
onnxruntime, vfbench's importer and Marabou read."""

import numpy as np
import pytest
import torch

from vfbench.errors import VfbenchError
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


def grafted_mlp_both_sites():
    """An MLP with a third of each site's neurons grafted (random slopes and intercepts)."""
    net = mlp()
    grafted = {name: graft(net, name, torch.arange(n) % 3 == 0, seed=k)
               for k, (name, n) in enumerate([("body.3", 16), ("body.6", 8)])}
    return net, grafted


def test_sequential_form_is_a_plain_chain_equal_to_the_model_on_the_unit_box(tmp_path):
    """graft_form sequential: Flatten/Gemm/Relu only (no Add: what pyNeVer's sequential reader
    takes), onnxruntime equal to torch on [0, 1] inputs, and the ONNX file says that it is the
    model on [0, 1]^n only, which is true: far outside it differs."""
    import onnx

    model, _ = grafted_mlp_both_sites()
    x = torch.rand(256, *model.input_shape)
    check = export_onnx(model, tmp_path / "s.onnx", x, graft_form="sequential")
    assert check["max_abs_diff_onnxruntime"] <= 1e-5 and check["max_graft_shift"] > 0
    with pytest.raises(VfbenchError, match="shifts .*graft_form residual is exact"):
        export_onnx(model, tmp_path / "t.onnx", x, graft_form="sequential", tolerance=1e-12)
    proto = onnx.load(str(tmp_path / "s.onnx"))
    assert [n.op_type for n in proto.graph.node] == ["Flatten"] + ["Gemm", "Relu"] * 2 + ["Gemm"]
    assert "ONLY for inputs in [0, 1]^n" in proto.doc_string
    meta = __import__("json").loads(proto.metadata_props[0].value)
    assert meta["graft_form"] == "sequential" and meta["valid_input_box"] == [0.0, 1.0]
    session = onnxruntime_session(tmp_path / "s.onnx")
    outside = (torch.rand(64, *model.input_shape) * 40 - 20).numpy()
    with torch.no_grad():
        far = np.abs(session.run(None, {"input": outside})[0] - model(torch.from_numpy(outside))
                     .numpy()).max()
    assert far > 1e-2
    residual = onnx.load(exported(model, tmp_path, "r.onnx")[0])  # the default stays residual
    assert "Add" in {n.op_type for n in residual.graph.node} and not residual.doc_string


def test_sequential_form_keeps_grafted_neurons_stable_for_crown(tmp_path):
    """vfbench's CROWN on the sequential export, over the whole input box [0, 1]^n and over a
    small ball: every grafted neuron's Relu input is > 0 (stable), every pruned one is 0."""
    from vfbench.verify.verifiers import CrownVerifier

    model, grafted = grafted_mlp_both_sites()
    pruned = torch.arange(8) % 3 == 1  # also prune three neurons of the second site: a = b = 0
    with torch.no_grad():
        site = get_site(model, "body.6")
        site.set_mask(site.mask + pruned.float())
        site.a[pruned], site.b[pruned] = 0.0, 0.0
    x = torch.rand(32, *model.input_shape)
    export_onnx(model, tmp_path / "s.onnx", x, graft_form="sequential")
    verifier = CrownVerifier(load_onnx(tmp_path / "s.onnx"), {"pgd_steps": 0})
    centre = torch.full((1, *model.input_shape), 0.5)
    for point, eps in ((centre, 0.5), (x[:1], 0.05)):
        for k, name in enumerate(["body.3", "body.6"]):
            lower, upper = (b.reshape(-1) for b in
                            verifier.bounds(point, [0], eps, "crown").pre_activation[k])
            assert (lower[grafted[name]] > 0).all(), (name, eps)
        assert (lower[pruned] == 0).all() and (upper[pruned] == 0).all()


def test_sequential_form_needs_an_mlp_site(tmp_path):
    model, _ = grafted_models()[1]  # a per-neuron mask after a conv
    with pytest.raises(VfbenchError, match="body.1 must sit between two Linear layers"):
        export_onnx(model, tmp_path / "c.onnx", torch.rand(4, *model.input_shape),
                    graft_form="sequential")
    assert not (tmp_path / "c.onnx").exists()
    with pytest.raises(VfbenchError, match="graft_form 'dag'"):
        standard_op_form(model, "dag")


def test_graft_forms_are_the_schemas():
    import yaml

    from vfbench.config import SCHEMA_PATH
    from vfbench.export_graft import GRAFT_FORMS

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert tuple(schema["properties"]["export"]["properties"]["graft_form"]["enum"]) == GRAFT_FORMS
