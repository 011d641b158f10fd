"""The pipeline every verifier shares, and the base class complete verifiers plug into.

Per image: clean prediction (onnxruntime) -> misclassified? -> PGD falsifier -> every
counterexample re-checked by a plain onnxruntime forward pass inside the ball -> the verifier's
own ``decide`` -> unstable-neuron counts from one named bound method (``unstable_bound``).

Writing a verifier (this is how bab, milp and vnncomp plug in):

- subclass ``Verifier``; declare its own options (default, allowed values, help) in
  ``vfbench.verify.options.METHOD_OPTIONS`` (light: the Snakefile checks campaign entries against
  it at start-up) and set ``OPTIONS`` to that declaration (``COMMON_OPTIONS`` are added; an
  unknown option or a value outside the declared ones is a VfbenchError);
- implement ``decide(x, label, eps, deadline) -> Decision`` for one image ``x`` (1, C, H, W) on
  ``self.device`` that the clean check and PGD did not settle (``deadline``: a
  ``time.perf_counter()`` value), or override ``decide_batch`` to bound several images at once;
- available: ``self.model`` (the ONNX model as torch), ``self.bm`` (its auto_LiRPA BoundedModule,
  conv_mode from the options), ``self.ort`` (onnxruntime on the ONNX file), ``self.options``,
  ``self.device``, ``self.bounds(...)``, ``self.margins_proven(...)`` (decide margins from a
  root bound: the float32 tolerance, then the float certificate),
  ``self.confirm_counterexample(...)``;
- an external tool's answer that cannot be used (e.g. a counterexample onnxruntime does not
  confirm) is ``Decision("unknown", reason=...)``;
- return ``verified`` only from a sound bound; ``falsified`` only with a counterexample (the
  pipeline re-checks it with onnxruntime and turns an unconfirmed one into an error);
- do not import ``vfbench.verify.verifiers``; that module imports the class into ``VERIFIERS``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from vfbench.attacks import pgd_attack
from vfbench.errors import VfbenchError
from vfbench.verify import lirpa, tolerance
from vfbench.verify.float_certificate import (
    CERTIFIED_METHODS,
    FloatCertifier,
    assumed_upper_bounds,
    supported,
)
from vfbench.verify.onnx_import import DEFAULT_TOLERANCE, OnnxModel, OrtModel
from vfbench.verify.options import COMMON_OPTIONS, Option, resolve_options
from vfbench.verify.records import VerificationRecord

DECISIONS = ("verified", "falsified", "unknown", "timeout")


@dataclass
class Decision:
    """What ``decide`` concluded about one image. ``pre_activation`` (this image's, batch
    dimension 1) with the ``bound_method`` that produced it may carry bounds computed anyway:
    they are reused for the unstable counts when the method is ``unstable_bound``."""

    status: str
    margin_lb: float | None = None
    domains: int | None = None
    depth: int | None = None
    counterexample: torch.Tensor | None = None
    bound_method: str | None = None
    pre_activation: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    # Why an external tool's answer became unknown (kept in the record's ``error``).
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in DECISIONS:
            raise VfbenchError(f"a verifier decided {self.status!r}; expected one of {DECISIONS}")


def check_options(cls: type[Verifier], options: dict | None, where: str) -> dict:
    """``options`` completed with the verifier's defaults; an unknown key or a value outside the
    declared ones is a VfbenchError."""
    return resolve_options({**COMMON_OPTIONS, **cls.OPTIONS}, options, where)


def unstable_counts(model: OnnxModel, pre_activation: list[tuple[torch.Tensor, torch.Tensor]]
                    ) -> list[tuple[int, int, dict[str, int]]]:
    """Per image: (neurons at ReLU sites, unstable ones, unstable per site). Unstable: l < 0 < u,
    except neurons whose ReLU input is identically 0 (grafted or pruned)."""
    if len(pre_activation) != len(model.sites):
        raise VfbenchError(f"{len(pre_activation)} bounded ReLU nodes but the ONNX graph has "
                           f"{len(model.sites)} Relu nodes")
    batch = pre_activation[0][0].shape[0] if pre_activation else 1  # no ReLU: one image, 0s
    n_relu = 0
    per_site = {}
    for site, zero, (lower, upper) in zip(model.sites, model.zero_input, pre_activation,
                                          strict=True):
        unstable = (lower < 0) & (upper > 0)
        if zero is not None:
            unstable &= ~zero.to(unstable.device).expand(unstable.shape[1:])
        n_relu += unstable[0].numel()
        per_site[site] = unstable.reshape(batch, -1).sum(1).tolist()
    return [(n_relu, sum(per_site[s][b] for s in per_site), {s: per_site[s][b] for s in per_site})
            for b in range(batch)]


def _image_seed(seed: int, x: torch.Tensor) -> int:
    return (zlib.crc32(x.detach().cpu().numpy().tobytes()) + 7919 * int(seed)) % 2**63


def clip_into_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> np.ndarray:
    """x_adv as float32, moved (by at most one float32 step) so that it lies in the exact ball
    [x - eps, x + eps] ∩ [0, 1] computed in float64."""
    center = x.detach().cpu().numpy().astype(np.float64)
    lo, hi = np.clip(center - eps, 0, 1), np.clip(center + eps, 0, 1)
    point = np.clip(x_adv.detach().cpu().numpy().astype(np.float64), lo, hi).astype(np.float32)
    point = np.where(point < lo, np.nextafter(point, np.float32(np.inf)), point)
    point = np.where(point > hi, np.nextafter(point, np.float32(-np.inf)), point)
    return point.astype(np.float32)


class Verifier:
    """One per shard: loads the bounding machinery once, then ``verify``/``verify_batch``."""

    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, model: OnnxModel, options: dict | None = None,
                 device: torch.device | str = "cpu", name: str | None = None):
        self.name = name or type(self).__name__
        self.options = check_options(type(self), options, f"verifier {self.name}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if model.onnx_path is None:
            raise VfbenchError("a verifier needs the model loaded from its ONNX file "
                               "(vfbench.verify.onnx_import.load_onnx)")
        self.ort = OrtModel(model.onnx_path)
        # Max |torch - onnxruntime| on logits at any point the verifier looks at.
        self.agreement_tolerance = DEFAULT_TOLERANCE
        example = torch.zeros((1, *model.input_shape), device=self.device)
        self.bm = lirpa.bounded_model(self.model, example, conv_mode=self.options["conv_mode"],
                                      device=self.device)
        self._bm64: lirpa.BoundedModule | None = None  # float64 copy, built when first asked
        self._certifier: FloatCertifier | None = None  # built when first asked

    # --- tools for decide ------------------------------------------------------------------

    def magnitudes(self, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The model's magnitudes over the ball (``OnnxModel.magnitudes``): what the
        tolerances of its bounds scale with."""
        lower, upper = lirpa.input_box(x, eps)
        return self.model.magnitudes(torch.maximum(lower.abs(), upper.abs()))

    def bounds(self, x: torch.Tensor, labels: Sequence[int], eps: float, method: str,
               options: dict | None = None, dtype: torch.dtype = torch.float32,
               deadline: float | None = None) -> lirpa.MarginBounds:
        """Margin bounds with their tolerances (``MarginBounds.proven`` decides). ``dtype``
        float64: computed on a float64 copy of the model, whose intermediate bounds need a
        far smaller tolerance (``vfbench.verify.tolerance``). ``deadline``: alpha-CROWN stops
        optimising there (``lirpa.stop_criterion``)."""
        bm = self.bm
        if dtype == torch.float64:
            if self._bm64 is None:
                example = torch.zeros((1, *self.model.input_shape), device=self.device)
                self._bm64 = lirpa.bounded_model(self.model, example, self.options["conv_mode"],
                                                 self.device, dtype)
            bm = self._bm64
        elif dtype != torch.float32:
            raise VfbenchError(f"bounds in {dtype}: expected float32 or float64")
        return lirpa.compute_margin_bounds(bm, x.to(dtype), eps, labels, method, options,
                                           self.magnitudes(x.float(), eps), deadline)

    def margins_proven(self, x: torch.Tensor, labels: Sequence[int], eps: float,
                       lower: torch.Tensor, tol: torch.Tensor, bounds: lirpa.MarginBounds,
                       method: str, where: str, options: dict | None = None,
                       extra_tol: float = 0.0, deadline: float | None = None,
                       already: torch.Tensor | None = None,
                       tried: torch.Tensor | None = None,
                       whole_image: bool = False) -> torch.Tensor:
        """Which margins (B, K-1) the root bounds ``lower`` prove: lower > tol
        (``tolerance.proven``), or, for an image with rows in (0, tol] that ``already`` (same
        shape) does not hold proven and ``tried`` (same shape) does not mark as certified before
        with the same result, its float certificate (``vfbench.verify.float_certificate``,
        by ``method`` 'crown' or 'alpha_crown' with ``options``, assuming ``bounds``'
        pre-activation bounds; ``extra_tol`` added to its threshold). ``whole_image``: only
        for an image with no row at or below 0 (a verifier that decides nothing less). The one
        place every verifier decides its margins from a root bound."""
        proven = tolerance.proven(lower, tol, where)
        if already is not None:
            proven |= already
        open_rows = (lower > 0) & ~proven
        if tried is not None:
            open_rows &= ~tried
        if whole_image:
            open_rows &= (proven | (lower > 0)).all(dim=1, keepdim=True)
        sizes = [lo[0].numel() for lo, _ in bounds.pre_activation]
        if method not in CERTIFIED_METHODS or not supported(self.model, sizes):
            return proven
        for b in open_rows.any(dim=1).nonzero().flatten().tolist():
            if self._certifier is None:
                self._certifier = FloatCertifier(self.model, self.device)
            certificate = self._certifier.certify(
                x[b:b + 1], int(labels[b]), eps, assumed_upper_bounds(bounds, b), method,
                options, extra_tol, deadline)
            proven[b] |= certificate.proven.to(proven.device) & open_rows[b]
        return proven

    def checked_logits(self, points: torch.Tensor | np.ndarray, where: str) -> np.ndarray:
        """onnxruntime's logits at ``points`` (B, *input_shape); a VfbenchError if the torch
        model (what the bounds are computed on) differs from them by more than
        ``agreement_tolerance`` there (``where`` names the points)."""
        points = torch.as_tensor(np.asarray(points, dtype=np.float32) if isinstance(
            points, np.ndarray) else points.detach(), dtype=torch.float32).to(self.device)
        logits = self.ort(points)
        with torch.no_grad():
            ours = self.model(points).cpu().numpy()
        diff = float(np.abs(ours - logits).max())
        if not diff <= self.agreement_tolerance:
            raise VfbenchError(f"the ONNX model converted to torch differs from onnxruntime by "
                               f"{diff:.3g} (> {self.agreement_tolerance:g}) at {where}")
        return logits

    def confirm_counterexample(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float,
                               label: int, where: str = "a counterexample candidate"
                               ) -> np.ndarray | None:
        """The counterexample (float32, C x H x W, inside the exact ball) if onnxruntime
        classifies it as another class than ``label`` (strictly larger logit), else None. The
        torch model must agree with onnxruntime at the point (``checked_logits``)."""
        point = clip_into_ball(x_adv.reshape(x.shape), x, eps)
        logits = self.checked_logits(point.reshape(1, *self.model.input_shape), where)[0]
        others = np.delete(logits, label)
        return point.reshape(self.model.input_shape) if others.max() > logits[label] else None

    def decide(self, x: torch.Tensor, label: int, eps: float, deadline: float) -> Decision:
        raise NotImplementedError

    def decide_batch(self, x: torch.Tensor, labels: list[int], eps: float,
                     timeout_s: float) -> list[tuple[Decision, float]]:
        """(decision, seconds) per image; by default ``decide`` one image at a time, each
        with its own deadline."""
        out = []
        for i, label in enumerate(labels):
            start = time.perf_counter()
            decision = self.decide(x[i:i + 1], label, eps, start + timeout_s)
            out.append((decision, time.perf_counter() - start))
        return out

    # --- the pipeline ------------------------------------------------------------------------

    def verify(self, x: torch.Tensor, label: int, eps: float, timeout_s: float,
               image: int = -1) -> dict[str, Any]:
        """The record for one image x (C, H, W) in [0, 1]."""
        return self.verify_batch(x[None], [label], eps, timeout_s, [image])[0]

    def verify_batch(self, x: torch.Tensor, labels: Sequence[int], eps: float,
                     timeout_s: float, images: Sequence[int]) -> list[dict[str, Any]]:
        """Records for a batch x (B, C, H, W). Times: each image's own decide time plus an
        equal share of the batch's clean check and PGD. An exception becomes ``error``
        records naming it."""
        labels = [int(v) for v in labels]
        base = {"eps": float(eps), "verifier": self.name,
                "unstable_bound": self.options["unstable_bound"]}
        start = time.perf_counter()
        try:
            records = self._run(torch.as_tensor(x, dtype=torch.float32).to(self.device),
                                labels, float(eps), float(timeout_s), start)
        except Exception as exc:  # a verifier failing on an image is a result, not a crash
            return [VerificationRecord(image=int(i), label=lab, status="error",
                                       time_s=time.perf_counter() - start,
                                       error=f"{type(exc).__name__}: {exc}", **base).to_dict()
                    for i, lab in zip(images, labels, strict=True)]
        return [VerificationRecord(image=int(i), label=lab, **base, **fields).to_dict()
                for i, lab, fields in zip(images, labels, records, strict=True)]

    def _run(self, x, labels, eps, timeout_s, start) -> list[dict[str, Any]]:
        n = len(labels)
        logits = self.ort(x)
        preds = logits.argmax(axis=1).tolist()
        fields: list[dict[str, Any]] = [{"pred": int(p)} for p in preds]
        todo = [i for i in range(n) if preds[i] == labels[i]]
        for i in set(range(n)) - set(todo):
            fields[i]["status"] = "misclassified"
        todo = self._falsify(x, labels, eps, todo, fields)
        shared = (time.perf_counter() - start) / n
        for i in range(n):
            fields[i]["time_s"] = shared
        reusable: dict[int, list] = {}
        if todo:
            decisions = self.decide_batch(x[todo], [labels[i] for i in todo], eps,
                                          timeout_s - shared)
            for i, (decision, seconds) in zip(todo, decisions, strict=True):
                fields[i].update(self._record_fields(decision, x[i], eps, labels[i]))
                fields[i]["time_s"] = shared + seconds
                if decision.bound_method == self.options["unstable_bound"]:
                    reusable[i] = decision.pre_activation
        for i in range(n):
            if fields[i]["status"] != "misclassified" and fields[i]["time_s"] > timeout_s:
                fields[i]["status"] = "timeout"
        self._add_unstable_counts(x, labels, eps, fields, reusable)
        return fields

    def _falsify(self, x, labels, eps, todo, fields) -> list[int]:
        """PGD on the images in ``todo``; returns those it did not falsify."""
        if not todo or self.options["pgd_steps"] == 0:
            return todo
        generator = torch.Generator().manual_seed(_image_seed(self.options["seed"], x[todo]))
        y = torch.tensor([labels[i] for i in todo], device=self.device)
        x_adv = pgd_attack(self.model, x[todo], y, eps, steps=self.options["pgd_steps"],
                           step_size=self.options["pgd_step_size"],
                           restarts=self.options["pgd_restarts"], loss="margin",
                           generator=generator)
        left = []
        for k, i in enumerate(todo):
            point = self.confirm_counterexample(x_adv[k], x[i], eps, labels[i], "a PGD point")
            if point is None:
                left.append(i)
            else:
                fields[i].update(status="falsified", counterexample=point.tolist())
        return left

    def _record_fields(self, decision: Decision, x, eps, label) -> dict[str, Any]:
        out = {"status": decision.status, "margin_lb": decision.margin_lb,
               "domains": decision.domains, "depth": decision.depth}
        if decision.reason:
            out["error"] = decision.reason
        if decision.status == "falsified":
            point = (None if decision.counterexample is None
                     else self.confirm_counterexample(decision.counterexample, x, eps, label))
            if point is None:
                raise VfbenchError(f"verifier {self.name} reported a counterexample that "
                                   "onnxruntime does not confirm inside the ball")
            out["counterexample"] = point.tolist()
        return out

    def _add_unstable_counts(self, x, labels, eps, fields, reusable) -> None:
        method = self.options["unstable_bound"]
        missing = [i for i in range(len(labels)) if i not in reusable]
        if missing:
            bounds = self.bounds(x[missing], [labels[i] for i in missing], eps, method)
            for k, i in enumerate(missing):
                reusable[i] = [(lo[k:k + 1], up[k:k + 1]) for lo, up in bounds.pre_activation]
        for i in range(len(labels)):
            n_relu, n_unstable, by_site = unstable_counts(self.model, reusable[i])[0]
            fields[i].update(n_relu=n_relu, n_unstable=n_unstable, unstable_by_site=by_site)
