"""The ONNX -> torch converter: op by op against onnxruntime, whole exported nets, site mapping."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from verify_nets import CLASSES, export, small_cnn

from vfbench.errors import VfbenchError
from vfbench.models import site_names
from vfbench.verify import lirpa
from vfbench.verify.onnx_import import (
    OrtModel,
    check_against_onnxruntime,
    load_onnx,
    site_name,
)

RNG = np.random.default_rng(0)
OPSET = [helper.make_opsetid("", 17)]
IR_VERSION = 8  # what torch's exporter writes at opset 17; onnxruntime reads it


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _graph_model(path, in_shape, nodes, initializers, out_dim):
    """A model X (batch, *in_shape) -> nodes -> Y (batch, out_dim), written to ``path``."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", out_dim])],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _flatten_to_y(name):
    return helper.make_node("Flatten", [name], ["Y"], name="flatten_out", axis=1)


# op, input shape (no batch), nodes producing "Z" (flattened to Y), initializers
OP_CASES = {
    "Gemm": ((5,), [helper.make_node("Gemm", ["X", "W", "B"], ["Z"], name="g", transB=1)],
             {"W": _rand(4, 5), "B": _rand(4)}),
    "Gemm-alpha-beta-noT": ((5,), [helper.make_node("Gemm", ["X", "W", "B"], ["Z"], name="g",
                                                    alpha=0.5, beta=2.0)],
                            {"W": _rand(5, 4), "B": _rand(4)}),
    "MatMul": ((5,), [helper.make_node("MatMul", ["X", "W"], ["Z"], name="m")],
               {"W": _rand(5, 3)}),
    "Conv": ((2, 6, 6), [helper.make_node("Conv", ["X", "W", "B"], ["Z"], name="c",
                                          pads=[1, 1, 1, 1], strides=[2, 2])],
             {"W": _rand(3, 2, 3, 3), "B": _rand(3)}),
    "Conv-groups-dilation": ((4, 7, 7), [helper.make_node(
        "Conv", ["X", "W"], ["Z"], name="c", group=2, dilations=[2, 2], pads=[2, 2, 2, 2])],
        {"W": _rand(4, 2, 3, 3)}),
    "Relu": ((6,), [helper.make_node("Relu", ["X"], ["Z"], name="r")], {}),
    "Add": ((2, 3, 3), [helper.make_node("Add", ["X", "C"], ["Z"], name="a")],
            {"C": _rand(2, 3, 3)}),
    "Sub": ((2, 3, 3), [helper.make_node("Sub", ["X", "C"], ["Z"], name="s")],
            {"C": _rand(1, 2, 1, 1)}),
    "Mul": ((2, 3, 3), [helper.make_node("Mul", ["C", "X"], ["Z"], name="m")],
            {"C": _rand(2, 3, 3)}),
    "Div": ((2, 3, 3), [helper.make_node("Div", ["X", "C"], ["Z"], name="d")],
            {"C": np.abs(_rand(1, 2, 1, 1)) + 0.5}),
    "Add-two-tensors": ((4,), [helper.make_node("Relu", ["X"], ["R"], name="r"),
                               helper.make_node("Add", ["X", "R"], ["Z"], name="a")], {}),
    "Flatten": ((2, 3, 3), [helper.make_node("Flatten", ["X"], ["Z"], name="f", axis=1)], {}),
    "Reshape": ((2, 3, 3), [helper.make_node("Reshape", ["X", "S"], ["Z"], name="r")],
                {"S": np.array([-1, 18], dtype=np.int64)}),
    "Reshape-keep-batch": ((2, 3, 3), [helper.make_node("Reshape", ["X", "S"], ["Z"], name="r")],
                           {"S": np.array([0, 2, 9], dtype=np.int64)}),
    "Pad": ((2, 3, 3), [helper.make_node("Pad", ["X", "P", "V"], ["Z"], name="p")],
            {"P": np.array([0, 0, 1, 2, 0, 0, 2, 1], dtype=np.int64),
             "V": np.array(0.0, dtype=np.float32)}),  # non-zero: refused (test_soundness)
    "BatchNormalization": ((3, 2, 2), [helper.make_node(
        "BatchNormalization", ["X", "s", "b", "m", "v"], ["Z"], name="bn", epsilon=1e-3)],
        {"s": _rand(3), "b": _rand(3), "m": _rand(3), "v": np.abs(_rand(3)) + 0.1}),
    "BatchNormalization-2d": ((3,), [helper.make_node(
        "BatchNormalization", ["X", "s", "b", "m", "v"], ["Z"], name="bn")],
        {"s": _rand(3), "b": _rand(3), "m": _rand(3), "v": np.abs(_rand(3)) + 0.1}),
    "Constant": ((3,), [helper.make_node("Constant", [], ["K"], name="k",
                                         value=numpy_helper.from_array(_rand(3))),
                        helper.make_node("Mul", ["X", "K"], ["Z"], name="m")], {}),
    "Identity": ((3,), [helper.make_node("Identity", ["X"], ["Z"], name="i")], {}),
}


def _out_dim(in_shape, nodes, initializers):
    """Per-image size of Z, found by running the graph in onnxruntime."""
    import onnxruntime

    graph = helper.make_graph(
        nodes, "probe",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    out = session.run(None, {"X": np.zeros((1, *in_shape), np.float32)})[0]
    return int(np.prod(out.shape[1:]))


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_each_op_matches_onnxruntime(case, tmp_path):
    in_shape, nodes, initializers = OP_CASES[case]
    out_dim = _out_dim(in_shape, nodes, initializers)
    path = _graph_model(tmp_path / "op.onnx", in_shape, [*nodes, _flatten_to_y("Z")],
                        initializers, out_dim)
    module = load_onnx(path)
    x = torch.from_numpy(_rand(4, *in_shape))
    assert check_against_onnxruntime(path, module, x) < 1e-5


def test_constant_subgraphs_are_folded(tmp_path):
    nodes = [helper.make_node("Sub", ["one", "m"], ["keep"], name="keep"),
             helper.make_node("Mul", ["keep", "X"], ["Z"], name="mul"), _flatten_to_y("Z")]
    path = _graph_model(tmp_path / "f.onnx", (3,), nodes,
                        {"one": np.ones(3, np.float32), "m": np.array([0, 1, 0], np.float32)}, 3)
    module = load_onnx(path)
    assert [s.module.op_type for s in module._steps] == ["Mul", "Flatten"]
    assert check_against_onnxruntime(path, module, torch.rand(2, 3)) == 0


def test_unsupported_op_names_the_node(tmp_path):
    nodes = [helper.make_node("Sigmoid", ["X"], ["Z"], name="my_sigmoid"), _flatten_to_y("Z")]
    path = _graph_model(tmp_path / "s.onnx", (3,), nodes, {}, 3)
    with pytest.raises(VfbenchError, match="my_sigmoid.*Sigmoid.*not supported"):
        load_onnx(path)


def test_unsupported_attribute_names_the_node(tmp_path):
    nodes = [helper.make_node("Conv", ["X", "W"], ["Z"], name="lopsided", pads=[0, 0, 1, 1]),
             _flatten_to_y("Z")]
    path = _graph_model(tmp_path / "c.onnx", (1, 4, 4), nodes, {"W": _rand(1, 1, 2, 2)}, 16)
    with pytest.raises(VfbenchError, match="lopsided.*asymmetric pads"):
        load_onnx(path)


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(VfbenchError, match="bad.onnx"):
        load_onnx(bad)


# --- whole exported networks -----------------------------------------------------------------

@pytest.fixture
def exported_nets(trained_mlp, synthetic, grafted_cnn, cnn_onnx, mlp_onnx):
    return {
        "mlp+bn": (trained_mlp, mlp_onnx, synthetic[0][:5]),
        "cnn": (small_cnn(), cnn_onnx, torch.rand(5, 1, 8, 8)),
        "grafted": (grafted_cnn[0], grafted_cnn[2], torch.rand(5, 1, 8, 8)),
    }


@pytest.mark.parametrize("net", ["mlp+bn", "cnn", "grafted"])
def test_exported_net_matches_onnxruntime_and_torch(net, exported_nets):
    model, path, x = exported_nets[net]
    module = load_onnx(path)
    assert check_against_onnxruntime(path, module, x) < 1e-5
    with torch.no_grad():
        assert torch.allclose(module(x), model(x), atol=1e-5)
    assert module.sites == site_names(model)
    assert module.input_shape == model.input_shape and module.num_classes == CLASSES


@pytest.mark.parametrize("net", ["mlp+bn", "cnn", "grafted"])
def test_bounds_on_converted_net_equal_bounds_on_the_model(net, exported_nets):
    model, path, x = exported_nets[net]
    module = load_onnx(path)
    labels = [0, 1, 2, 0, 1]
    ours = lirpa.compute_margin_bounds(lirpa.bounded_model(module, x[:1]), x, 0.03, labels,
                                       "crown")
    theirs = lirpa.compute_margin_bounds(lirpa.bounded_model(model, x[:1]), x, 0.03, labels,
                                         "crown")
    assert torch.allclose(ours.lower, theirs.lower, atol=1e-4)
    assert len(ours.pre_activation) == len(module.sites)


def test_grafted_neurons_are_marked_identically_zero(grafted_cnn):
    model, mask, path = grafted_cnn
    module = load_onnx(path)
    assert module.zero_input[0] is not None
    assert torch.equal(module.zero_input[0], mask.bool())
    assert all(z is None for z in module.zero_input[1:])


def test_site_name_from_exporter_node_names():
    assert site_name("/body/body.3/Relu") == "body.3"
    assert site_name("/body/body.2/relu1/Relu") == "body.2.relu1"
    assert site_name("/body/body.2/features/features.0/Relu_1") == "body.2.features.0"
    assert site_name("relu7") == "relu7"


@pytest.mark.parametrize("arch", ["resnet4b", "cnn_b"])
def test_zoo_nets_with_blocks_and_asymmetric_padding(arch, tmp_path):
    """Residual blocks (nested sites, Add of two paths) and ZeroPad2d (pads computed by a
    constant subgraph of Slice/Concat/...): converted, sites named, bounded soundly."""
    from verify_nets import sample_ball

    from vfbench.models import build_model

    widths = {"resnet4b": {}, "cnn_b": {"channels": (4, 8), "hidden": (16,)}}[arch]
    model = build_model(arch, input_shape=(3, 16, 16), num_classes=CLASSES, mean=(0.5,) * 3,
                        std=(0.25,) * 3, **widths).eval()
    path = export(model, tmp_path / "m.onnx", torch.rand(1, 3, 16, 16))
    module = load_onnx(path)
    x = torch.rand(2, 3, 16, 16)
    assert check_against_onnxruntime(path, module, x) < 1e-5
    assert module.sites == site_names(model)
    bounds = lirpa.compute_margin_bounds(lirpa.bounded_model(module, x[:1]), x, 0.01, [0, 1],
                                         "crown")
    with torch.no_grad():
        for k, label in enumerate([0, 1]):
            logits = model(sample_ball(x[k], 0.01, 200))
            margins = logits[:, label:label + 1] - logits
            margins = torch.cat([margins[:, :label], margins[:, label + 1:]], dim=1)
            assert (bounds.lower[k] <= margins.min(0).values + 1e-5).all()


def test_mismatch_is_measured(cnn_onnx):
    module = load_onnx(cnn_onnx)
    x = torch.rand(2, 1, 8, 8)
    assert check_against_onnxruntime(OrtModel(cnn_onnx), module, x) < 1e-5
    with torch.no_grad():
        module.const0.add_(0.5)  # a corrupted constant
    assert check_against_onnxruntime(cnn_onnx, module, x) > 1e-3


def test_two_output_graph_is_refused(tmp_path):
    model = small_cnn()
    path = export(model, tmp_path / "m.onnx", torch.rand(1, 1, 8, 8))
    proto = onnx.load(path)
    proto.graph.output.append(helper.make_tensor_value_info(proto.graph.node[0].output[0],
                                                            TensorProto.FLOAT, None))
    onnx.save(proto, path)
    with pytest.raises(VfbenchError, match="one input and one output"):
        load_onnx(path)
