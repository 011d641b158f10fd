"""Compact loading of the export's dense grafted conv sites (vfbench.verify.onnx_compact): the
same bounds and verdicts as the dense Gemm, every hint checked against the file."""

from __future__ import annotations

import base64
import json

import numpy as np
import onnx
import pytest
import torch
from verify_nets import small_cnn

from vfbench.errors import VfbenchError
from vfbench.export import export_onnx
from vfbench.models import GraftedReLU, build_model, set_site, site_shapes
from vfbench.verify import lirpa, onnx_compact
from vfbench.verify.onnx_import import OrtModel, load_onnx
from vfbench.verify.verifiers import VERIFIERS, BabVerifier, CrownVerifier


def _graft(model, name, fraction, seed, slope=True):
    shape = site_shapes(model)[name]
    gen = torch.Generator().manual_seed(seed)
    site = GraftedReLU(shape, (torch.rand(shape, generator=gen) < fraction).float())
    if slope:
        with torch.no_grad():
            site.a.copy_(torch.rand(shape, generator=gen) * 2 - 1)
            site.b.copy_(torch.rand(shape, generator=gen) * 0.2 - 0.1)
    set_site(model, name, site)


@pytest.fixture(scope="module")
def masked_cnn(tmp_path_factory):
    """cnn_4layer on 1x8x8, per-neuron masks after both convs (the first grafted with slopes,
    the second pruned), exported by the export step's own code: two dense sites, three Gemms
    with hints (one inexact scale: the slopes)."""
    model = small_cnn(seed=2)
    _graft(model, "body.1", 0.5, seed=0)
    _graft(model, "body.3", 0.4, seed=1, slope=False)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    path = tmp_path_factory.mktemp("compact") / "masked.onnx"
    export_onnx(model, path, x)
    return model, str(path), x


def _ops(module):
    return [s.module.op_type for s in module._steps]


def test_compact_load_matches_the_dense_load(masked_cnn):
    model, path, x = masked_cnn
    compact, dense = load_onnx(path), load_onnx(path, compact=False)
    assert _ops(dense)[:4] == ["BatchNormalization", "Flatten", "Gemm", "Relu"]
    assert _ops(compact)[:6] == ["BatchNormalization", "Identity", "Conv", "Mul", "Add", "Relu"]
    assert "Reshape" in _ops(dense) and "Reshape" not in _ops(compact)
    assert _ops(compact).count("Gemm") == 2 and _ops(dense).count("Gemm") == 2 + 3  # the FCs
    assert compact.sites == dense.sites
    with torch.no_grad():
        assert (compact(x) - dense(x)).abs().max() <= 1e-6
        assert (compact(x) - model(x)).abs().max() <= 1e-5
    for zc, zd in zip(compact.zero_input, dense.zero_input, strict=True):
        assert (zc is None) == (zd is None)
        if zc is not None:
            assert torch.equal(zc.reshape(-1), zd.reshape(-1)) and bool(zc.any())
    mc, md = compact.magnitudes(x)[0], dense.magnitudes(x)[0]
    assert ((mc - md).abs() <= 1e-6 * md).all()
    for eps in (0.01, 0.05):
        labels = compact(x[:4]).argmax(1).tolist()
        bounds = [lirpa.compute_margin_bounds(lirpa.bounded_model(m, x[:1]), x[:4], eps,
                                              labels, "crown") for m in (compact, dense)]
        scale = max(1.0, float(bounds[1].lower.abs().max()))
        assert (bounds[0].lower - bounds[1].lower).abs().max() <= 1e-5 * scale
        for (lc, uc), (ld, ud) in zip(bounds[0].pre_activation, bounds[1].pre_activation,
                                      strict=True):
            assert torch.allclose(lc.reshape(4, -1), ld.reshape(4, -1), atol=1e-5)
            assert torch.allclose(uc.reshape(4, -1), ud.reshape(4, -1), atol=1e-5)


def test_crown_and_bab_verdicts_equal_dense_and_compact(masked_cnn):
    """At eps 0.065 crown leaves image 2 undecided and bab proves it; at 0.3 bab falsifies;
    milp encodes the compact graph."""
    _, path, x = masked_cnn
    compact, dense = load_onnx(path), load_onnx(path, compact=False)
    labels = compact(x[:4]).argmax(1).tolist()
    seen = set()
    for cls, eps, count in [(CrownVerifier, 0.065, 4), (BabVerifier, 0.065, 4),
                            (BabVerifier, 0.3, 1), (VERIFIERS["milp"], 0.065, 2)]:
        records = [cls(m, {"pgd_steps": 0}).verify_batch(x[:count], labels[:count], eps, 20,
                                                         list(range(count)))
                   for m in (compact, dense)]
        for key in ("status", "n_relu", "n_unstable", "unstable_by_site"):
            got = [[r[key] for r in rs] for rs in records]
            assert got[0] == got[1], (cls.__name__, eps, key, got)
        seen.update((cls.__name__, r["status"]) for r in records[0])
    assert {("CrownVerifier", "unknown"), ("BabVerifier", "verified"),
            ("BabVerifier", "falsified")} <= seen, seen


def test_onnxruntime_reads_the_hinted_file_without_a_warning(masked_cnn, capfd):
    import onnxruntime

    _, path, x = masked_cnn
    capfd.readouterr()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    session.run(None, {"input": x[:1].numpy()})
    assert capfd.readouterr().err == ""
    assert np.abs(OrtModel(path)(x) - load_onnx(path)(x).detach().numpy()).max() <= 1e-5


def _rewritten(path, tmp_path, edit):
    proto = onnx.load(path)
    hinted = [n for n in proto.graph.node if n.doc_string]
    edit(proto, hinted)
    out = tmp_path / "edited.onnx"
    onnx.save(proto, str(out))
    return out


def _edit_hint(field):
    def edit(proto, hinted):
        hint = json.loads(hinted[0].doc_string)
        entry = hint["conv"]["weight"] if field == "weight" else hint["scale"]
        data = np.frombuffer(base64.b64decode(entry["float32_le"]), "<f4").copy()
        k = np.flatnonzero(data)[0]
        data[k] = np.nextafter(data[k], np.float32(np.inf))  # one ulp
        entry["float32_le"] = base64.b64encode(data.tobytes()).decode()
        hinted[0].doc_string = json.dumps(hint)
    return edit


def _edit_gemm(proto, hinted):
    init = {i.name: i for i in proto.graph.initializer}[hinted[1].input[1]]
    weight = onnx.numpy_helper.to_array(init).copy()
    o, i = np.nonzero(weight)[0][0], np.nonzero(weight)[1][0]
    weight[o, i] = np.nextafter(weight[o, i], np.float32(np.inf))  # one ulp
    init.CopyFrom(onnx.numpy_helper.from_array(weight, init.name))


@pytest.mark.parametrize("edit", [_edit_hint("weight"), _edit_hint("scale"), _edit_gemm],
                         ids=["hint-weight", "hint-scale", "file-matrix"])
def test_a_hint_that_does_not_reproduce_the_gemm_is_refused(masked_cnn, tmp_path, edit):
    _, path, _ = masked_cnn
    edited = _rewritten(path, tmp_path, edit)
    for compact in (True, False):  # checked even when loading dense
        with pytest.raises(VfbenchError, match=r"node '/body/body\.1/.*_part/Gemm' \(Gemm\): "
                                               r"the compact hint does not reproduce"):
            load_onnx(edited, compact=compact)


def test_malformed_or_misplaced_hints_are_refused(masked_cnn, tmp_path):
    _, path, _ = masked_cnn

    def garble(proto, hinted):
        hinted[0].doc_string = '{"vfbench_compact": 1, "input_shape": [1, 8'

    def wrong_shape(proto, hinted):
        hint = json.loads(hinted[0].doc_string)
        hint["input_shape"] = [1, 4, 16]
        hinted[0].doc_string = json.dumps(hint)

    def orphan(proto, hinted):  # the Flatten then also feeds a Gemm without a hint
        hinted[1].doc_string = ""

    for edit, message in [(garble, "unreadable vfbench compact hint"),
                          (wrong_shape, r"input shape \(1, 4, 16\) is not the Flatten's"),
                          (orphan, "only hinted Gemms may")]:
        with pytest.raises(VfbenchError, match=message):
            load_onnx(_rewritten(path, tmp_path, edit))


def test_a_file_without_hints_loads_dense_as_before(masked_cnn, tmp_path):
    _, path, x = masked_cnn

    def strip(proto, hinted):
        for node in hinted:
            node.doc_string = ""

    module = load_onnx(_rewritten(path, tmp_path, strip))
    assert _ops(module) == _ops(load_onnx(path, compact=False))
    with torch.no_grad():
        assert torch.equal(module(x), load_onnx(path, compact=False)(x))


def test_more_inexact_parts_than_the_tolerance_allows_load_dense(masked_cnn, monkeypatch):
    _, path, _ = masked_cnn
    monkeypatch.setattr(onnx_compact, "COMPACT_INEXACT_PARTS", 0)  # the slope part is inexact
    assert "Reshape" in _ops(load_onnx(path))
    monkeypatch.setattr(onnx_compact, "COMPACT_INEXACT_PARTS", 1)
    assert "Reshape" not in _ops(load_onnx(path))


def test_residual_identity_site_loads_compact(tmp_path):
    """A site after a residual sum: the identity dense form becomes a per-neuron Mul."""
    torch.manual_seed(0)
    model = build_model("resnet4b", input_shape=(1, 8, 8), num_classes=3, mean=(0.3,),
                        std=(0.3,), channels=(2, 2, 2), hidden=(8,)).eval()
    _graft(model, "body.2.relu2", 0.5, seed=3)
    x = torch.rand(8, 1, 8, 8)
    export_onnx(model, tmp_path / "res.onnx", x)
    compact, dense = load_onnx(tmp_path / "res.onnx"), load_onnx(tmp_path / "res.onnx",
                                                                 compact=False)
    assert _ops(dense).count("Gemm") == _ops(compact).count("Gemm") + 2
    assert "Reshape" in _ops(dense) and "Reshape" not in _ops(compact)
    with torch.no_grad():
        assert (compact(x) - dense(x)).abs().max() <= 1e-6


def test_a_vnnlib_instance_on_the_hinted_file_as_on_the_dense_one(masked_cnn, tmp_path):
    """The VNN-COMP path (input box wrapper around the file) bounds the compact form in
    patches mode, the box's per-pixel scale included; same results as the file without hints."""
    from vfbench.verify.instance import verify_instance

    _, path, x = masked_cnn
    label = int(OrtModel(path)(x[:1]).argmax())
    lines = [f"(declare-const X_{i} Real)" for i in range(64)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i, v in enumerate(x[0].reshape(-1).tolist()):
        lines += [f"(assert (>= X_{i} {max(0.0, v - 0.065):.8f}))",
                  f"(assert (<= X_{i} {min(1.0, v + 0.065):.8f}))"]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(3)
                                          if j != label) + "))")
    (tmp_path / "p.vnnlib").write_text("\n".join(lines) + "\n")

    def strip(proto, hinted):
        for node in hinted:
            node.doc_string = ""

    dense = _rewritten(path, tmp_path, strip)
    for method in ("crown", "bab"):
        results = [verify_instance(f, tmp_path / "p.vnnlib", method, timeout_s=20).result
                   for f in (path, dense)]
        assert results[0] == results[1] and results[0] in ("unsat", "unknown"), results
