"""Which score a transform reads, and its file name: ``ScoreSpec`` and its id, checked.

Light on purpose (no torch): the Snakefile lists each model's score outputs from these ids; the
computations are ``vfbench.transforms.scores``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vfbench.errors import VfbenchError
from vfbench.verify.options import BOUND_METHODS

# Significance scores (r_s) a transform may select by (``scores.SIGNIFICANCE`` computes them).
SIGNIFICANCE_KINDS = ("gap", "sap", "hydra", "random")
# Score kinds that are DAG outputs of their own ('random' is drawn where it is used).
SCORE_KINDS = ("instability", "gap", "sap", "hydra")

# ``images`` value meaning the whole training split (in its stored order).
WHOLE_TRAIN_SPLIT = "train"

# What Hydra's scores minimise: the base model's training losses, or cross-entropy.
HYDRA_LOSSES = ("base", "natural")


# --- which score, and its file ---------------------------------------------------------------

@dataclass(frozen=True)
class ScoreSpec:
    """One score computation; ``id`` names its output file and is what ``needs_scores`` lists."""

    kind: str                    # instability | gap | sap | hydra
    images: int | str = 1000     # N seeded score images, or 'train' (the whole training split)
    bound: str | None = None     # instability: ibp | crown | alpha_crown
    eps: float | None = None     # instability: radius of the ball
    keep: float | None = None    # hydra: fraction of neurons its top-k mask keeps
    epochs: int | None = None    # hydra: epochs of score learning
    loss: str | None = None      # hydra: base | natural (HYDRA_LOSSES)

    @property
    def id(self) -> str:
        parts = [self.kind]
        if self.kind == "instability":
            parts += [self.bound, f"eps{_decimal(self.eps)}"]
        parts.append(self.images if self.images == WHOLE_TRAIN_SPLIT else f"n{self.images}")
        if self.kind == "hydra":
            parts += [self.loss, f"keep{_decimal(self.keep)}", f"e{self.epochs}"]
        return "-".join(str(p) for p in parts)


def _decimal(value: float) -> str:
    """Shortest exact positional decimal (no exponent, whose '-' would split an id)."""
    return np.format_float_positional(float(value), trim="-")


_ID_FIELDS = {"n": ("images", int), "eps": ("eps", float), "keep": ("keep", float),
              "e": ("epochs", int)}


def parse_score_id(score_id: str) -> ScoreSpec:
    """Inverse of ``ScoreSpec.id`` (what scripts/scores.py gets from the rule)."""
    kind, *rest = score_id.split("-")
    fields: dict = {"kind": kind}
    if kind == "instability" and rest:
        fields["bound"], rest = rest[0], rest[1:]
    for part in rest:
        if part == WHOLE_TRAIN_SPLIT:
            fields["images"] = part
            continue
        if kind == "hydra" and part in HYDRA_LOSSES:
            fields["loss"] = part
            continue
        match = re.fullmatch(r"([a-z]+)([0-9.]+)", part)
        if not match or match.group(1) not in _ID_FIELDS:
            raise VfbenchError(f"score id {score_id!r}: cannot read part {part!r}")
        name, cast = _ID_FIELDS[match.group(1)]
        fields[name] = cast(match.group(2))
    spec = ScoreSpec(**fields)
    try:
        check_score_spec(spec)
    except VfbenchError as exc:
        raise VfbenchError(f"score id {score_id!r}: {exc}") from exc
    if spec.id != score_id:
        raise VfbenchError(f"score id {score_id!r} is not canonical (expected {spec.id!r})")
    return spec


def check_score_spec(spec: ScoreSpec) -> None:
    if spec.kind not in SCORE_KINDS:
        raise VfbenchError(f"unknown score kind {spec.kind!r}; known: {sorted(SCORE_KINDS)}")
    if spec.images != WHOLE_TRAIN_SPLIT and not (
            isinstance(spec.images, int) and not isinstance(spec.images, bool)
            and spec.images >= 1):
        raise VfbenchError(f"score {spec.kind}: images must be at least 1 or "
                           f"{WHOLE_TRAIN_SPLIT!r}, got {spec.images!r}")
    if spec.kind == "instability":
        if spec.bound not in BOUND_METHODS:
            raise VfbenchError(f"instability score: bound {spec.bound!r} unknown; "
                               f"known: {list(BOUND_METHODS)}")
        if spec.eps is None or not spec.eps > 0:
            raise VfbenchError(f"instability score: eps must be positive, got {spec.eps}")
    if spec.kind == "hydra":
        if not (spec.keep is not None and 0 < spec.keep <= 1
                and spec.epochs is not None and spec.epochs >= 1):
            raise VfbenchError(f"hydra score: keep in (0, 1] and epochs >= 1 needed, got "
                               f"keep={spec.keep}, epochs={spec.epochs}")
        if spec.loss not in HYDRA_LOSSES:
            raise VfbenchError(f"hydra score: loss {spec.loss!r} unknown; known: "
                               f"{list(HYDRA_LOSSES)}")
