"""auto_LiRPA made to run on this stack, and the bound computations vfbench asks of it.

auto_LiRPA 0.3 (the only release on PyPI) predates torch 2 and numpy 2. Importing this module
applies runtime shims first; each is applied only where the thing it restores is missing, so a
newer auto_LiRPA (or an older stack) gets exactly the ones it needs. None edits the installed
package. ``APPLIED_SHIMS`` names the ones applied in this process.

Shims before the import: ``numpy.lib.arraysetops``, numpy's builtin aliases,
``symbolic_helper._set_opset_version``, ``torch._C.Node.__getitem__``, ``torch._six``. After it:
``BoundedModule._named_members`` (torch 2's ``remove_duplicate``), and two for patches mode
(``conv_mode='patches'``, fast on convs) meeting constants without a batch dimension: input
normalisation on a batch of images, and the grafted activation's per-neuron ``keep``, ``mask`` and
``b`` after a conv (multiplied into the pieces, and concretised at their own layer's shape).

One 0.3 bug is avoided by a bound option instead (``bounded_model`` sets it): alpha-CROWN crashes
when over 90% of a layer is unstable (``alpha_indices`` left set under ``verbosity == 0``), which
``sparse_features_alpha=False`` never reaches.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import io
import sys
import time
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vfbench.errors import VfbenchError
from vfbench.verify import tolerance
from vfbench.verify.options import (
    ALPHA_CROWN_OPTIONS,
    BOUND_METHODS,
    CONV_MODES,
    defaults_of,
    resolve_options,
)

APPLIED_SHIMS: list[str] = []


# --- shims needed before `import auto_LiRPA` -------------------------------------------------

def _module_missing(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return True
    return False


def _shim_numpy_arraysetops() -> None:
    # operators/base.py: `from numpy.lib.arraysetops import isin` (module removed in numpy 2).
    module = types.ModuleType("numpy.lib.arraysetops")
    module.isin = np.isin
    sys.modules["numpy.lib.arraysetops"] = module


_NUMPY_ALIASES = {"bool": bool, "int": int, "float": float}


def _shim_numpy_aliases() -> None:
    # perturbations.py uses np.bool; the builtin aliases were removed in numpy 1.24.
    for alias, builtin in _NUMPY_ALIASES.items():
        if not hasattr(np, alias):
            setattr(np, alias, builtin)


def _onnx_exporter_globals():
    for name in ("torch.onnx._internal.torchscript_exporter._globals", "torch.onnx._globals"):
        try:
            return importlib.import_module(name).GLOBALS
        except ImportError:
            continue
    raise VfbenchError("this torch has no TorchScript ONNX exporter globals; auto_LiRPA 0.3 "
                       "cannot parse graphs with it")


# The module `from torch.onnx.symbolic_helper import ...` reads (not the torch.onnx attribute of
# that name, which torch 2.13 points at another module).
_SYMBOLIC_HELPER = "torch.onnx.symbolic_helper"


def _shim_set_opset_version() -> None:
    # parse_graph imports torch.onnx.symbolic_helper._set_opset_version (gone in torch 2.x);
    # what it did was set the exporter's global opset, which _optimize_graph reads.
    exporter_globals = _onnx_exporter_globals()

    def _set_opset_version(opset_version: int) -> None:
        exporter_globals.export_onnx_opset_version = opset_version

    importlib.import_module(_SYMBOLIC_HELPER)._set_opset_version = _set_opset_version


def _shim_node_getitem() -> None:
    # parse_graph reads node attributes as `n[k]`; torch 2 no longer installs Node.__getitem__.
    def _node_getitem(node, key):
        return getattr(node, node.kindOf(key))(key)

    torch._C.Node.__getitem__ = _node_getitem


def _shim_torch_six() -> None:
    # BoundedModule.register_parameter checks `torch._six.string_classes` (torch._six removed).
    module = types.ModuleType("torch._six")
    module.string_classes = (str, bytes)
    sys.modules["torch._six"] = module
    torch._six = module


_PRE_IMPORT_SHIMS: list[tuple[str, Callable[[], bool], Callable[[], None]]] = [
    ("numpy.lib.arraysetops", lambda: _module_missing("numpy.lib.arraysetops"),
     _shim_numpy_arraysetops),
    ("numpy builtin aliases", lambda: any(not hasattr(np, a) for a in _NUMPY_ALIASES),
     _shim_numpy_aliases),
    ("symbolic_helper._set_opset_version",
     lambda: not hasattr(importlib.import_module(_SYMBOLIC_HELPER), "_set_opset_version"),
     _shim_set_opset_version),
    ("torch._C.Node.__getitem__", lambda: not hasattr(torch._C.Node, "__getitem__"),
     _shim_node_getitem),
    ("torch._six", lambda: _module_missing("torch._six"), _shim_torch_six),
]


def _apply(shims) -> None:
    for name, needed, apply in shims:
        if needed():
            apply()
            APPLIED_SHIMS.append(name)


_apply(_PRE_IMPORT_SHIMS)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script, used by 0.3
    import auto_LiRPA  # noqa: E402  (must follow the shims)
    from auto_LiRPA import (  # noqa: E402
        BoundedModule,
        BoundedTensor,
        PerturbationLpNorm,
        backward_bound,
    )
    from auto_LiRPA.operators import BoundMul, BoundPad, BoundRelu  # noqa: E402
    from auto_LiRPA.patches import Patches, maybe_unfold_patches  # noqa: E402


# --- shims needed after the import ----------------------------------------------------------

def _named_members_lacks_remove_duplicate() -> bool:
    ours = inspect.signature(BoundedModule._named_members).parameters
    torch_side = inspect.signature(torch.nn.Module._named_members).parameters
    return "remove_duplicate" in torch_side and "remove_duplicate" not in ours


def _shim_named_members() -> None:
    # torch 2 calls _named_members(..., remove_duplicate=...); BoundedModule's override has the
    # old signature, so .parameters() raised TypeError. Its body already removes duplicates.
    original = BoundedModule._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix, recurse)

    BoundedModule._named_members = _named_members


# In patches mode, A is a set of conv-shaped pieces (out_c, batch, out_h, out_w, in_c, kh, kw), or
# (unstable, batch, in_c, kh, kw) when only unstable neurons are bounded. 0.3 multiplies it by a
# constant only when the constant has the batch's size or the kernel is 1x1, and concretises a
# constant root against the *image's* shape. The graphs vfbench bounds have constants without a
# batch dimension: channel-wise (input normalisation, batch > 1) and per-neuron after a conv (the
# grafted activation's keep, mask and b).

def _probe_fails(probe: Callable[[], object]) -> bool:
    """True if ``probe`` hits the failure a shim fixes (an auto_LiRPA without the probed
    function at all is not one to patch)."""
    try:
        probe()
    except AttributeError:
        return False
    except (AssertionError, RuntimeError, ValueError):
        return True
    return False


def _probe_patches(in_c: int = 2, size: int = 4) -> Patches:
    # A 3x3, stride-1, padding-1 conv's pieces for a batch of two.
    return Patches(torch.ones(1, 2, size, size, in_c, 3, 3), stride=1, padding=1)


def _constant_as_patches_factor(const: torch.Tensor, A: Patches) -> torch.Tensor | None:
    """``const`` (no batch dimension) shaped to multiply ``A.patches``; None when it is not
    a case this shim handles (left to 0.3)."""
    if const.numel() == 1:
        return const.reshape(())
    if const.dim() == 4 and const.size(0) == 1:
        const = const[0]
    if const.dim() < 3 and A.patches.dim() in (5, 7):
        # leading singletons dropped by the import (e.g. a VNNLIB box's scale on a 1-channel
        # image): back to (C, H, W), the channel broadcast over the pieces' in_c
        const = const.reshape((1,) * (3 - const.dim()) + tuple(const.shape))
        if const.shape[-2:] != (1, 1):
            const = const.expand(A.patches.size(-3), *const.shape[-2:])
    if const.dim() != 3 or A.patches.dim() not in (5, 7):
        return None
    if const.shape[-2:] == (1, 1):  # channel-wise: broadcast against (..., in_c, kh, kw)
        return const
    # per-neuron: unfold into the pieces' layout, exactly as ReLU slopes are.
    return maybe_unfold_patches(const[None, None], A)


def _shim_patches_times_constant() -> None:
    original = BoundMul._multiply_by_const

    def _multiply_by_const(x, const):
        if isinstance(x, Patches) and isinstance(const, torch.Tensor):
            factor = _constant_as_patches_factor(const, x)
            if factor is not None:
                return x.create_similar(x.patches * factor)
        return original(x, const)

    BoundMul._multiply_by_const = staticmethod(_multiply_by_const)


def _shim_patches_constant_root() -> None:
    # backward_bound.concretize adds a constant root's term as A.matmul(value, input_shape=<the
    # image's shape>): wrong for a per-neuron constant at a later layer. Those roots' terms are
    # computed here, at their own shape, and the rest is left to 0.3.
    original = backward_bound.concretize

    def concretize(lb, ub, node, root, batch_size, output_dim, bound_lower=True,
                   bound_upper=True, average_A=False):
        own = [r for r in root if _is_per_neuron_constant_root(r)]
        saved = [(r.lA, r.uA) for r in own]
        terms_l, terms_u = [], []
        for r in own:
            value = r.forward_value.reshape(1, *r.forward_value.shape[-3:])
            value = value.expand(batch_size, *value.shape[1:])
            if bound_lower and r.lA is not None:
                terms_l.append(r.lA.matmul(value))
            if bound_upper and r.uA is not None:
                terms_u.append(r.uA.matmul(value))
            r.lA = r.uA = None
        try:
            lb, ub = original(lb, ub, node, root, batch_size, output_dim, bound_lower,
                              bound_upper, average_A)
        finally:
            for r, (lA, uA) in zip(own, saved, strict=True):
                r.lA, r.uA = lA, uA
        for term in terms_l:
            lb = lb + term.reshape(lb.shape)
        for term in terms_u:
            ub = ub + term.reshape(ub.shape)
        return lb, ub

    backward_bound.concretize = concretize


def _is_per_neuron_constant_root(node) -> bool:
    value = getattr(node, "forward_value", None)
    return (getattr(node, "perturbation", None) is None and isinstance(value, torch.Tensor)
            and value.dim() >= 3 and tuple(value.shape[-2:]) != (1, 1)
            and (isinstance(node.lA, Patches) or isinstance(node.uA, Patches)))


def _pad_needs_input() -> bool:
    return inspect.signature(BoundPad.forward).parameters["pad"].default is inspect.Parameter.empty


def _shim_pad_attribute() -> None:
    # torch 2 traces nn.ZeroPad2d to an onnx::Pad whose pads are an *attribute* (no pad input);
    # 0.3's BoundPad reads them only from an input (its hasattr(attr, 'pads') test on a dict is
    # always False), so CNN-B (ZeroPad2d((1,2,1,2))) failed with "missing 'pad'".
    original_init, original_forward = BoundPad.__init__, BoundPad.forward

    def __init__(self, attr, inputs, output_index, options):
        pads = attr.pop("pads", None) if isinstance(attr, dict) else None
        original_init(self, attr, inputs, output_index, options)
        self.attr_pads = pads

    def forward(self, x, pad=None, value=0.0):
        if pad is None:
            pad = self.attr_pads
        return original_forward(self, x, pad, value)

    BoundPad.__init__, BoundPad.forward = __init__, forward


_POST_IMPORT_SHIMS = [
    ("BoundPad with the pads attribute", _pad_needs_input, _shim_pad_attribute),
    ("BoundedModule._named_members", _named_members_lacks_remove_duplicate,
     _shim_named_members),
    ("patches times a constant without batch dimension",
     lambda: (_probe_fails(lambda: BoundMul._multiply_by_const(
         _probe_patches(), torch.ones(1, 2, 1, 1)))
              or _probe_fails(lambda: BoundMul._multiply_by_const(
                  _probe_patches(), torch.ones(2, 4, 4)))),
     _shim_patches_times_constant),
    # concretize hands Patches.matmul the image's shape; a per-neuron constant fails with it.
    ("patches concretised against a per-neuron constant",
     lambda: _probe_fails(lambda: _probe_patches().matmul(
         torch.ones(2, 4, 4), input_shape=(2, 1, 8, 8))),
     _shim_patches_constant_root),
]
_apply(_POST_IMPORT_SHIMS)

LIRPA_VERSION = getattr(auto_LiRPA, "__version__", "unknown")

__all__ = ["APPLIED_SHIMS", "LIRPA_VERSION", "BoundedModule", "BoundedTensor",
           "PerturbationLpNorm", "BoundRelu", "BOUND_METHODS", "CONV_MODES", "ALPHA_DEFAULTS",
           "MarginBounds", "other_classes", "margin_spec", "bounded_model", "default_dtype",
           "input_box", "ball",
           "pre_activation_bounds", "check_alpha_options", "compute_margin_bounds",
           "alpha_crown_bounds",
           "stop_criterion"]


# --- the bound computations -----------------------------------------------------------------

def other_classes(label: int, num_classes: int) -> list[int]:
    """The classes a margin bound row refers to, in row order."""
    return [j for j in range(num_classes) if j != label]


def margin_spec(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C with C[b, i] = e_{label_b} - e_{other_i}: ``C @ logits`` are the margins y_label - y_j
    for every other class j (ascending), shape (B, K-1, K)."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    eye = torch.eye(num_classes, device=labels.device)
    rows = []
    for label in labels.tolist():
        if not 0 <= label < num_classes:
            raise VfbenchError(f"label {label} outside 0..{num_classes - 1}")
        rows.append(eye[label].unsqueeze(0) - eye[other_classes(label, num_classes)])
    return torch.stack(rows)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """torch's default dtype set to ``dtype`` inside the block: 0.3 creates some tensors (the
    spec, alpha-CROWN's results) in the default dtype, so a float64 bound runs inside it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def bounded_model(model: torch.nn.Module, example_x: torch.Tensor | tuple[torch.Tensor, ...],
                  conv_mode: str = "patches",
                  device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> BoundedModule:
    """Wrap ``model`` (eval mode, pixel-space input) for bounding.

    ``conv_mode``: 'patches' (fast on big convs) or 'matrix' (dense; branch and bound on conv
    layers needs it, since 0.3 ignores beta on conv layers in patches mode). ``dtype``
    float64 bounds a float64 copy of the model (float32 weights are exact in float64); its
    bounds are computed from an input of that dtype (``compute_margin_bounds``). A tuple
    ``example_x``: a model of several inputs, each perturbed (``float_certificate``).
    """
    if conv_mode not in CONV_MODES:
        raise VfbenchError(f"conv_mode {conv_mode!r}: expected one of {CONV_MODES}")
    if getattr(model, "needs_matrix_mode", False):  # see onnx_import.load_onnx
        conv_mode = "matrix"
    examples = example_x if isinstance(example_x, tuple) else (example_x,)
    device = torch.device(device) if device is not None else examples[0].device
    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    model = model.eval().to(device)
    examples = tuple(e.to(device, dtype) for e in examples)

    opts = {"conv_mode": conv_mode, "sparse_features_alpha": False, "verbosity": 0}
    with warnings.catch_warnings(), default_dtype(dtype):
        # torch warns that TorchScript tracing (which 0.3 parses) is deprecated.
        warnings.simplefilter("ignore")
        return BoundedModule(model, examples if len(examples) > 1 else examples[0],
                             bound_opts=opts, device=str(device))


def input_box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) in x's dtype containing the exact box [x - eps, x + eps] ∩ [0, 1] as the
    VNNLIB file states it (computed in float64, then rounded outward), so that every point of
    the exported property is inside what is bounded."""
    exact = x.detach().double()
    lower64, upper64 = (exact - eps).clamp(0, 1), (exact + eps).clamp(0, 1)
    lower, upper = lower64.to(x.dtype), upper64.to(x.dtype)
    lower = torch.where(lower.double() > lower64,
                        torch.nextafter(lower, torch.full_like(lower, -np.inf)), lower)
    upper = torch.where(upper.double() < upper64,
                        torch.nextafter(upper, torch.full_like(upper, np.inf)), upper)
    return lower, upper


def ball(x: torch.Tensor, eps: float) -> BoundedTensor:
    """The L-inf ball of radius eps around x, intersected with the pixel box [0, 1]
    (``input_box``: rounded outward)."""
    x_lower, x_upper = input_box(x, eps)
    return BoundedTensor(x, PerturbationLpNorm(eps=eps, norm=np.inf, x_L=x_lower, x_U=x_upper))


@dataclass
class MarginBounds:
    """Lower bounds on y_label - y_j, shape (B, K-1) (rows follow ``other_classes``), and the
    pre-activation bounds [(lower, upper), ...] of every ReLU node in graph order, (B, *shape).
    ``tol``: the margins' tolerances (``vfbench.verify.tolerance``), and ``pre_tol`` those of
    each ReLU node's input, when the caller gave the model's magnitudes."""

    lower: torch.Tensor
    pre_activation: list[tuple[torch.Tensor, torch.Tensor]]
    tol: torch.Tensor | None = None
    pre_tol: list[torch.Tensor] | None = None

    def proven(self, where: str) -> torch.Tensor:
        """Which margins are proven positive (``tolerance.proven``), (B, K-1)."""
        if self.tol is None:
            raise VfbenchError(f"{where}: bounds without tolerances decide nothing")
        return tolerance.proven(self.lower, self.tol, where)


def pre_activation_bounds(bm: BoundedModule, where: str = "bounds"
                          ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(lower, upper) of each ReLU node's input after the last ``compute_bounds``; a
    non-finite one is a VfbenchError naming ``where`` and the node."""
    out = []
    for relu in relu_nodes(bm):
        if getattr(relu.inputs[0], "lower", None) is None:
            raise VfbenchError(f"no bounds on the input of ReLU node {relu.name}")
        bounds = relu_input_bounds(relu)
        for side, value in zip(("lower", "upper"), bounds, strict=True):
            tolerance.check_finite(value, f"{where}: {side} bound of the input of "
                                   f"ReLU node {relu.name}")
        out.append(bounds)
    return out


_METHOD_NAMES = {"ibp": "IBP", "crown": "backward", "alpha_crown": "CROWN-Optimized"}
# alpha-CROWN's options: vfbench.verify.options.ALPHA_CROWN_OPTIONS.
ALPHA_DEFAULTS = defaults_of(ALPHA_CROWN_OPTIONS)


def check_alpha_options(options: dict | None, where: str = "alpha_crown") -> dict:
    """``options`` completed with ALPHA_DEFAULTS; an unknown key or a bad value is a
    VfbenchError."""
    return resolve_options(ALPHA_CROWN_OPTIONS, options, where)


def compute_margin_bounds(bm: BoundedModule, x: torch.Tensor, eps: float,
                          labels: torch.Tensor | Sequence[int], method: str = "crown",
                          options: dict | None = None,
                          magnitudes: tuple[torch.Tensor, list[torch.Tensor]] | None = None,
                          deadline: float | None = None) -> MarginBounds:
    """Sound lower bounds on the margins y_label - y_j over ``ball(x, eps)`` for a batch x.

    Computed in x's dtype (float32, or float64 on a ``bounded_model`` of that dtype).
    ``method``: 'ibp', 'crown', or 'alpha_crown'. alpha-CROWN starts from CROWN, whose
    intermediate bounds go in as reference bounds (0.3 needs them); ``options`` (ALPHA_DEFAULTS)
    apply to alpha_crown only. ``magnitudes``: the model's over the ball
    (``OnnxModel.magnitudes``), which set the bounds' tolerances; alpha-CROWN's early stop
    waits for every margin above its tolerance, and stops at ``deadline`` (``time.perf_counter``
    seconds; the bounds of the iterations done are as sound as the last one's). A non-finite
    bound is a VfbenchError.
    """
    tol, pre_tol = 0.0, None
    if magnitudes is not None:
        tol = tolerance.margin_slack(tolerance.margin_magnitudes(magnitudes[0], labels))
        tol = tol.to(x.device)
        pre_tol = [tolerance.bound_slack(m, x.dtype).to(x.device) for m in magnitudes[1]]
    if method not in _METHOD_NAMES:
        raise VfbenchError(f"bound method {method!r}: expected one of {BOUND_METHODS}")
    options = check_alpha_options(options)
    # (not bm.final_shape: 0.3 overwrites it with the spec size during alpha-CROWN)
    num_classes = bm[bm.final_name].output_shape[-1]
    C = margin_spec(torch.as_tensor(labels).reshape(-1), num_classes).to(x.device)
    bounded_x = ball(x, eps)
    with warnings.catch_warnings(), default_dtype(x.dtype):
        C = C.to(x.dtype)
        warnings.simplefilter("ignore")
        lower, _ = bm.compute_bounds(x=(bounded_x,), C=C, method=_METHOD_NAMES[
            "crown" if method == "alpha_crown" else method], bound_upper=False)
        where = "crown" if method == "alpha_crown" else method
        tolerance.check_finite(lower.detach(), f"{where} margin lower bound")
        if method == "alpha_crown" and not (options["early_stop"]
                                            and bool((lower > tol).all())):
            # Both bounds are sound; keep the better one per margin.
            alpha = alpha_crown_bounds(bm, (bounded_x,), C, options, tol, deadline)
            tolerance.check_finite(alpha.detach(), "alpha_crown margin lower bound")
            lower = torch.maximum(lower, alpha)
    return MarginBounds(lower=lower.detach(),
                        pre_activation=pre_activation_bounds(bm, f"{method} bounds"),
                        tol=tol if magnitudes is not None else None, pre_tol=pre_tol)


def stop_criterion(proven, deadline: float | None):
    """auto_LiRPA's per-iteration ``stop_criterion_func``: ``proven(lower)`` (a bool tensor, or
    None for no early stop), and every row stops once ``time.perf_counter()`` passes
    ``deadline``. 0.3 calls it after each iteration and keeps the best bounds so far, all
    sound, so stopping at the deadline costs tightness, never soundness."""
    def criterion(lower: torch.Tensor):
        if deadline is not None and time.perf_counter() >= deadline:
            return torch.ones((lower.shape[0], 1), dtype=torch.bool, device=lower.device)
        return False if proven is None else proven(lower)
    return criterion


def alpha_crown_bounds(bm: BoundedModule, inputs: tuple[BoundedTensor, ...], C: torch.Tensor,
                       options: dict, tol: torch.Tensor | float,
                       deadline: float | None = None) -> torch.Tensor:
    """alpha-CROWN's lower bounds of C @ output over ``inputs``, right after a CROWN pass on
    them (whose intermediate bounds it starts from); ``options`` as ``ALPHA_DEFAULTS``, early
    stop once every row is above ``tol``, stop at ``deadline``."""
    crown = {relu_input_name(relu): list(relu_input_bounds(relu)) for relu in relu_nodes(bm)}
    proven = ((lambda lower: (lower > tol).all(dim=1, keepdim=True))
              if options["early_stop"] else None)
    bm.set_bound_opts({"optimize_bound_args": {
        "iteration": int(options["iterations"]),
        "lr_alpha": float(options["lr_alpha"]),
        "stop_criterion_func": stop_criterion(proven, deadline),
    }})
    fixed = None if options["optimize_intermediate"] else crown
    # auto_LiRPA 0.3 prints "all verified at Nth iter" on stdout; stdout belongs to the caller.
    with contextlib.redirect_stdout(io.StringIO()):
        lower, _ = bm.compute_bounds(x=inputs, C=C, method="CROWN-Optimized",
                                     bound_upper=False, reference_bounds=crown,
                                     intermediate_layer_bounds=fixed)
    return lower


# --- the per-node state branch and bound reads and writes -------------------------------------
# 0.3 keeps a bounded graph's ReLU nodes, their inputs' bounds, the slopes (alpha), the split
# constraints' multipliers (beta) and the last backward coefficients as attributes of its node
# objects; these are the only functions outside this module that reach them, so a later
# auto_LiRPA that moves them needs this section changed, not its callers.

def relu_nodes(bm: BoundedModule) -> list:
    """The bounded graph's ReLU nodes, in graph order."""
    return list(bm.relus)


def relu_input_name(relu) -> str:
    """Name of the node feeding a ReLU node (the key of its bounds in ``compute_bounds``'s
    intermediate_layer_bounds / reference_bounds)."""
    return relu.inputs[0].name


def relu_input_bounds(relu) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) of a ReLU node's input after the last ``compute_bounds``, detached."""
    node = relu.inputs[0]
    return node.lower.detach(), node.upper.detach()


def final_node(bm: BoundedModule) -> str:
    """Name of the graph's output node (the key of final-bound slopes and of ``return_A``)."""
    return bm.final_name


def input_node(bm: BoundedModule) -> str:
    """Name of the bounded graph's image input (its other roots are weights and buffers)."""
    names = [n for n in bm.root_name if type(bm[n]).__name__ == "BoundInput"]
    if len(names) != 1:
        raise VfbenchError(f"the bounded graph has {len(names)} image inputs, expected 1")
    return names[0]


def input_coefficients(bm: BoundedModule, A: dict) -> torch.Tensor:
    """The lower bound's coefficients on the image, from ``compute_bounds(..., return_A=True,
    needed_A_dict={final_node(bm): [input_node(bm)]})``: (batch, specs, *input_shape)."""
    return A[bm.final_name][input_node(bm)]["lA"]


def pre_activation_bias(relu, shape: tuple[int, ...]) -> torch.Tensor:
    """The bias of the Linear / Conv feeding a ReLU node, or the constant an Add of one adds
    (the compact form of a dense grafted site: ``vfbench.verify.onnx_compact``), flattened to
    its neurons (zeros for any other node)."""
    node = relu.inputs[0]
    kind = type(node).__name__
    bias = None
    if kind in ("BoundLinear", "BoundConv") and len(node.inputs) > 2:
        bias = getattr(node.inputs[2], "param", None)
    if kind == "BoundAdd":
        constants = [p for p in (getattr(i, "param", None) for i in node.inputs) if p is not None]
        if len(constants) == 1 and constants[0].numel() == int(np.prod(shape)):
            bias = constants[0]
    if bias is None:
        return torch.zeros(int(np.prod(shape)))
    bias = bias.detach().reshape(-1)
    if kind == "BoundConv":  # per channel: the same bias at every position
        bias = bias.view(-1, *[1] * (len(shape) - 1)).expand(shape)
    return bias.reshape(-1).clone()


def last_lower_coefficients(relu) -> torch.Tensor | None:
    """The lower bound's coefficients on a ReLU node's output from the last backward pass
    through it (None if none went through)."""
    return getattr(relu, "lA", None)


def set_split_betas(relu, loc: torch.Tensor, sign: torch.Tensor, beta: torch.Tensor) -> None:
    """A ReLU node's split constraints for a batch of domains (beta-CROWN, sparse form): per
    domain the split neurons (flat index), their signs (+1: input >= 0, -1: <= 0, 0: padding)
    and multipliers, each (batch, splits). ``beta`` is optimised in place."""
    relu.sparse_beta = beta.requires_grad_()
    relu.sparse_beta_loc = loc
    relu.sparse_beta_sign = sign


def split_betas(relu) -> torch.Tensor:
    """A ReLU node's multipliers as the last optimisation left them, (batch, splits)."""
    return relu.sparse_beta.detach()


def clear_split_betas(bm: BoundedModule) -> None:
    """No split constraints on any ReLU node (bounds of the whole ball)."""
    for relu in bm.relus:
        relu.sparse_beta = None


def set_final_slopes(bm: BoundedModule, relu, alpha: torch.Tensor) -> None:
    """A ReLU node's lower-relaxation slopes for the final bound, (batch, *node shape) for one
    spec per domain; optimised in place. Slopes for intermediate bounds are dropped."""
    relu.alpha = {bm.final_name: alpha[None, None].repeat(2, 1, 1, *[1] * (alpha.dim() - 1))
                  .requires_grad_()}
    relu.alpha_lookup_idx = {bm.final_name: None}
    relu.alpha_indices = None


def set_intermediate_slopes(relu, start: str, alpha: torch.Tensor) -> None:
    """A ReLU node's lower-relaxation slopes for the bounds of the node named ``start`` (a
    later ReLU node's input): (2, start node's neurons, batch, *node shape), [0] for their
    lower bounds, [1] for their upper ones; optimised in place with the final bound's (call
    after ``set_final_slopes``)."""
    relu.alpha[start] = alpha.clone().requires_grad_()
    relu.alpha_lookup_idx[start] = None


def intermediate_slopes(bm: BoundedModule, relu) -> dict[str, torch.Tensor]:
    """A ReLU node's lower-relaxation slopes for the bounds of later nodes, as the last
    optimisation left them, for the first element of the batch: per start node name,
    (2, start node's neurons, *node shape), detached (0.3's sparse spec slots expanded)."""
    out = {}
    for start, alpha in (getattr(relu, "alpha", None) or {}).items():
        if start == bm.final_name:
            continue
        lookup = (getattr(relu, "alpha_lookup_idx", None) or {}).get(start)
        alpha = alpha.detach()[:, :, 0]
        if lookup is not None:
            alpha = alpha[:, lookup.reshape(-1)]
        out[start] = alpha.clone()
    return out


def final_slopes(bm: BoundedModule, relu) -> torch.Tensor | None:
    """A ReLU node's lower-relaxation slopes for the final bound as the last optimisation left
    them, (specs, batch, *node shape), detached; None if it has none."""
    slope = (getattr(relu, "alpha", None) or {}).get(bm.final_name)
    return None if slope is None else slope[0].detach()
