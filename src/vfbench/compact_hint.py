"""The compact-form hint of a dense grafted site: what the export writes in the doc_string of a
Gemm whose matrix is a per-neuron scale times an unrolled Conv (or the identity), so that
vfbench's importer can bound ``scale * Conv(x) + bias`` instead of the dense Gemm.

The ONNX graph itself is unchanged (standard ops, read by every tool); the hint is text, so no
reader sees an extra tensor (onnxruntime warns about initializers no node uses). The importer
trusts nothing in it: ``vfbench.verify.onnx_compact`` rebuilds the map and checks it against the
Gemm's matrix before using it.

Format: JSON ``{"vfbench_compact": 1, "input_shape": [C, H, W], "scale": TENSOR,
"conv": null | {"weight": TENSOR, "strides": [..], "pads": [..], "dilations": [..],
"group": g}}``, a TENSOR being ``{"shape": [..], "float32_le": base64}``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vfbench.errors import VfbenchError

KEY = "vfbench_compact"
VERSION = 1


@dataclass
class CompactHint:
    input_shape: tuple[int, ...]  # the site's input, no batch dimension
    scale: torch.Tensor  # one per output unit of the Gemm (flat)
    weight: torch.Tensor | None  # the Conv's weight; None: the identity
    conv_attrs: dict  # ONNX Conv attributes (strides, pads, dilations, group)


def _tensor(t: torch.Tensor) -> dict:
    data = np.ascontiguousarray(t.detach().cpu().numpy(), dtype="<f4")
    return {"shape": list(data.shape), "float32_le": base64.b64encode(data.tobytes()).decode()}


def _untensor(entry: dict) -> torch.Tensor:
    shape = [int(s) for s in entry["shape"]]
    data = np.frombuffer(base64.b64decode(entry["float32_le"], validate=True), dtype="<f4")
    return torch.from_numpy(data.astype(np.float32).reshape(shape))


def encode(input_shape: tuple[int, ...], conv: nn.Conv2d | None, scale: torch.Tensor
           ) -> str | None:
    """The hint of a Gemm computing ``scale * conv(x)`` (bias aside) on flattened ``x``; None
    for a conv whose padding is not plain zeros given per side (no compact form then)."""
    hint = {KEY: VERSION, "input_shape": list(input_shape), "scale": _tensor(scale.reshape(-1)),
            "conv": None}
    if conv is not None:
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            return None
        hint["conv"] = {"weight": _tensor(conv.weight), "strides": list(conv.stride),
                        "pads": list(conv.padding) * 2, "dilations": list(conv.dilation),
                        "group": conv.groups}
    return json.dumps(hint)


def decode(doc_string: str, where: str) -> CompactHint | None:
    """The hint in a node's doc_string; None when it holds none; VfbenchError when it is one but
    unreadable."""
    if KEY not in doc_string:
        return None
    try:
        hint = json.loads(doc_string)
        if hint.get(KEY) != VERSION:
            raise ValueError(f"version {hint.get(KEY)!r}, expected {VERSION}")
        conv = hint["conv"]
        attrs = {} if conv is None else {
            "strides": [int(v) for v in conv["strides"]], "pads": [int(v) for v in conv["pads"]],
            "dilations": [int(v) for v in conv["dilations"]], "group": int(conv["group"])}
        return CompactHint(tuple(int(s) for s in hint["input_shape"]), _untensor(hint["scale"]),
                           None if conv is None else _untensor(conv["weight"]), attrs)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VfbenchError(f"{where}: unreadable vfbench compact hint in its doc_string "
                           f"({type(exc).__name__}: {exc})") from exc
