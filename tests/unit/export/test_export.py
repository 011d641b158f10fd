import re

import numpy as np
import onnx
import pytest
import torch

from vfbench.errors import VfbenchError
from vfbench.export import export_onnx, onnxruntime_session
from vfbench.models import GraftedReLU, build_model, set_site, site_shapes
from vfbench.specs import read_images_csv, vnnlib_text, write_instances, write_specs

MNIST = {"input_shape": (1, 28, 28), "num_classes": 10, "mean": (0.13,), "std": (0.31,)}


@pytest.mark.parametrize("arch", ["net1", "cnn_4layer"])
def test_export_matches_torch_and_normalises_inside(tmp_path, arch):
    model = build_model(arch, **MNIST).eval()
    x = torch.rand(16, 1, 28, 28)
    check = export_onnx(model, tmp_path / "m.onnx", x, metadata={"arch": arch})
    assert check["max_abs_diff_onnxruntime"] <= 1e-5
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    # normalisation is in the graph (Marabou reads no Div): folded into the MLP's first Gemm,
    # a BatchNormalization before the CNN's first Conv
    ops = [n.op_type for n in proto.graph.node]
    assert ops[:2] == (["Flatten", "Gemm"] if arch == "net1" else ["BatchNormalization", "Conv"])
    assert any(p.key == "vfbench" for p in proto.metadata_props)
    out = onnxruntime_session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0]
    assert out.shape == (16, 10)


def test_export_grafted_activation_uses_standard_ops(tmp_path):
    model = build_model("net1", **MNIST).eval()
    name = "body.3"  # first ReLU site of net1: Flatten, Linear, BN, ReLU
    shape = site_shapes(model)[name]
    mask = (torch.arange(shape[0]) % 2).float()
    set_site(model, name, GraftedReLU(shape, mask, slope=0.4, intercept=0.1))
    x = torch.rand(8, 1, 28, 28)
    check = export_onnx(model, tmp_path / "g.onnx", x)
    assert set(check["ops"]) <= {"Flatten", "Gemm", "BatchNormalization", "Relu", "Add", "Reshape",
                                 "Constant"}


def test_failed_check_leaves_no_file(tmp_path):
    model = build_model("net1", **MNIST).eval()
    with pytest.raises(VfbenchError, match="differs"):
        export_onnx(model, tmp_path / "m.onnx", torch.rand(4, 1, 28, 28), tolerance=-1.0)
    assert not list(tmp_path.iterdir())


def test_the_check_is_relative_to_the_size_of_the_logits(tmp_path):
    """float32 rounding grows with the logits (large folded weights after heavy pruning): the
    check scales the difference by max(1, largest |logit|)."""
    model = build_model("net1", **MNIST).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(1e6)
    x = torch.rand(64, 1, 28, 28)
    check = export_onnx(model, tmp_path / "m.onnx", x)
    scale = float(model(x).abs().max())
    assert scale > 1e5
    assert check["relative_diff_onnxruntime"] == pytest.approx(
        check["max_abs_diff_onnxruntime"] / scale)
    assert check["relative_diff_onnxruntime"] <= 1e-5


def test_vnnlib_box_is_clipped_and_property_lists_other_classes():
    x = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    text = vnnlib_text(x, label=2, eps=0.1, num_classes=3)
    assert "(assert (>= X_0 0.0))" in text and "(assert (<= X_2 1.0))" in text
    assert "(assert (<= X_1 0.6))" in text and "(assert (>= X_1 0.4))" in text
    assert re.search(r"\(assert \(or \(and \(>= Y_0 Y_2\)\) \(and \(>= Y_1 Y_2\)\)\)\)", text)
    assert text.count("declare-const") == 6


def test_specs_and_instances(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 1, 4, 4), dtype=np.uint8)
    y = np.array([3, 1, 4, 1, 5])
    write_specs(x, y, [0, 2], 0.05, 10, tmp_path / "eps0.05/vnnlib",
                tmp_path / "eps0.05/images.csv")
    rows = read_images_csv(tmp_path / "eps0.05/images.csv")
    assert rows == [{"image": 0, "label": 3, "vnnlib": "img0.vnnlib"},
                    {"image": 2, "label": 4, "vnnlib": "img2.vnnlib"}]
    text = (tmp_path / "eps0.05/vnnlib/img2.vnnlib").read_text()
    hi = float(re.search(r"\(assert \(<= X_0 ([0-9.e-]+)\)\)", text).group(1))
    assert hi == pytest.approx(min(x[2].reshape(-1)[0] / 255.0 + 0.05, 1.0), abs=1e-7)
    (tmp_path / "onnx").mkdir()
    write_instances(tmp_path / "onnx/m.onnx", [tmp_path / "eps0.05/images.csv"], 30, tmp_path,
                    tmp_path / "instances.csv")
    lines = (tmp_path / "instances.csv").read_text().splitlines()
    assert lines == ["onnx/m.onnx,eps0.05/vnnlib/img0.vnnlib,30",
                     "onnx/m.onnx,eps0.05/vnnlib/img2.vnnlib,30"]
