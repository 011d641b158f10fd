"""Export for any verifier: ONNX (pixel-space input, normalisation inside the graph) checked with
onnx.checker and onnxruntime. The VNNLIB properties, images.csv and instances.csv are
``vfbench.specs``.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch

from vfbench.errors import VfbenchError
from vfbench.export_graft import FoldedGraft, standard_op_form
from vfbench.io import atomic_path, provenance

INPUT_NAME, OUTPUT_NAME = "input", "output"


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, check_x: torch.Tensor,
                opset: int = 17, tolerance: float = 1e-5, metadata: dict | None = None,
                graft_form: str = "residual") -> dict:
    """Write ``model`` as ONNX and prove the file computes what the model computes.

    Grafted activations are written with their masks folded into the weights
    (``vfbench.export_graft``, in its ``graft_form``); the check compares the file with
    ``model`` itself on ``check_x``. A form that equals the model only on an input box (the
    sequential one) says so in the ONNX doc_string and in the metadata's ``valid_input_box``.

    Returns the check figures (max |onnxruntime - torch| on ``check_x``, and that difference
    relative to max(1, largest |logit|)); raises VfbenchError, leaving no file, when the checker
    fails or the relative difference exceeds ``tolerance``. Relative because float32 rounding
    grows with the logits: a pruned network with large folded weights differs by more than 1e-5
    in absolute terms while agreeing to 7 digits.
    """
    import onnx

    model = model.cpu().eval()
    example = check_x[:1].cpu()
    form = standard_op_form(model, graft_form)
    box = getattr(form, "valid_input_box", None)
    metadata = {**(metadata or {}), "graft_form": graft_form, "valid_input_box": box}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript-exporter deprecation noise
            torch.onnx.export(
                form, (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        proto = onnx.load(str(tmp))
        _drop_identities(proto.graph)
        _attach_compact_hints(proto.graph, form)
        for key, value in {"vfbench": json.dumps({**metadata, **provenance()},
                                                 default=str)}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        if box is not None:
            proto.doc_string = (
                f"Grafted neurons in vfbench's sequential form: each grafted unit's Relu input "
                f"is shifted by a constant that keeps it positive for every input in "
                f"[{box[0]:g}, {box[1]:g}]^n and the next Gemm's bias takes the shift back. "
                f"This graph equals the trained network ONLY for inputs in [{box[0]:g}, "
                f"{box[1]:g}]^n; verify boxes inside it.")
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        diff, scale = onnxruntime_difference(tmp, model, check_x.cpu())
        shift = getattr(form, "graft_shift", None)
        if not diff / scale <= tolerance:
            why = (f"; the sequential graft form's shifts (up to {shift:.3g}) cost float32 "
                   "precision: export.graft_form residual is exact" if shift else "")
            raise VfbenchError(f"{path}: onnxruntime output differs from torch by {diff:.3g} "
                               f"on logits up to {scale:.3g} in size (relative "
                               f"{diff / scale:.3g} > tolerance {tolerance:g}){why}")
    ops = sorted({node.op_type for node in proto.graph.node})
    return {"max_abs_diff_onnxruntime": diff, "relative_diff_onnxruntime": diff / scale,
            "check_images": len(check_x), "opset": opset, "ops": ops, "graft_form": graft_form,
            "max_graft_shift": shift}


def _attach_compact_hints(graph, form: torch.nn.Module) -> None:
    """Write each dense grafted part's compact hint (``vfbench.compact_hint``) into the
    doc_string of its Gemm, found by the module scope torch names the node with."""
    from vfbench.verify.onnx_import import site_name

    hints = {f"{name}.{part}": hint for name, module in form.named_modules()
             if isinstance(module, FoldedGraft) for part, hint in module.hints.items()}
    for node in graph.node:
        key = site_name(node.name)
        if node.op_type == "Gemm" and key in hints:
            node.doc_string = hints.pop(key)
    if hints:
        raise VfbenchError(f"export: no Gemm node named after the dense parts "
                           f"{sorted(hints)}")


def _drop_identities(graph) -> None:
    """Rewire around the exporter's Identity nodes (it emits them for buffers), so readers with a
    small op set see only the ops that compute."""
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def onnxruntime_session(path: str | os.PathLike):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise VfbenchError(f"{path}: onnxruntime cannot load the model ({exc})") from exc


@torch.no_grad()
def onnxruntime_difference(path, model: torch.nn.Module, x: torch.Tensor
                           ) -> tuple[float, float]:
    """(max |onnxruntime - torch|, max(1, max |torch logit|)) on ``x``."""
    session = onnxruntime_session(path)
    got = session.run(None, {INPUT_NAME: x.numpy().astype(np.float32)})[0]
    want = model(x).numpy()
    return float(np.abs(got - want).max()), max(1.0, float(np.abs(want).max()))
