"""The training losses' options, declared once: each term's kind, options with their defaults
(the papers' values), allowed values of string options, and reference.

Light on purpose (no torch): the Snakefile checks every training entry of a campaign against these
declarations at start-up. The terms themselves are ``vfbench.losses.LOSSES`` (a test checks both
name the same terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vfbench.errors import VfbenchError


@dataclass(frozen=True)
class LossOptions:
    """``kind`` 'data' (a whole classification objective) or 'regulariser' (added to one);
    ``defaults`` lists every option; ``choices`` restricts string options."""

    kind: str
    defaults: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    reference: str = ""


_ATTACK = {"eps": 0.1, "steps": 10, "step_ratio": 0.1}  # paper 001: 10 steps of eps/10

LOSS_OPTIONS: dict[str, LossOptions] = {
    "natural": LossOptions("data", reference="cross-entropy"),
    "pgd": LossOptions("data", dict(_ATTACK), reference="Madry et al. 2018"),
    "trades": LossOptions("data", {**_ATTACK, "beta": 6.0}, reference="Zhang et al. 2019"),
    "fat_gradalign": LossOptions("data",
                                 {"eps": 2 / 255, "alpha_ratio": 1.25, "gradalign_lambda": 0.2},
                                 reference="paper 000; Wong et al. 2020; Andriushchenko 2020"),
    "crown_ibp": LossOptions("data",
                             {"eps": 0.1, "beta_start": 1.0, "beta_end": 0.0,
                              "kappa_start": 1.0, "kappa_end": 0.0},
                             reference="Zhang et al. 2020"),
    "nbc": LossOptions("regulariser",
                       {**_ATTACK, "step": "gradient", "layer_weights": "pow2_rank"},
                       {"step": ("gradient", "sign"),
                        "layer_weights": ("pow2_rank", "one", "rank_size")},
                       reference="paper 001 Algorithms 1-2"),
    "relu_stable": LossOptions("regulariser", {"eps": 0.1, "rs_weight": 1e-4, "l1_weight": 2e-5},
                               reference="Xiao et al. 2019 (MadryLab/relu_stable config.json)"),
    "sparse_bn": LossOptions("regulariser", reference="paper 002 Algorithm 1"),
}

def resolve_loss_options(name: str, options: dict | None) -> dict:
    """The term's defaults updated with ``options``; unknown terms or options, wrong types and
    values outside a term's choices are VfbenchErrors naming them."""
    if name not in LOSS_OPTIONS:
        raise VfbenchError(f"unknown loss {name!r}; known: {sorted(LOSS_OPTIONS)}")
    term = LOSS_OPTIONS[name]
    options = dict(options or {})
    unknown = sorted(set(options) - set(term.defaults))
    if unknown:
        raise VfbenchError(f"loss {name!r}: unknown options {unknown}; "
                           f"allowed (with defaults): {term.defaults}")
    for key, value in options.items():
        default = term.defaults[key]
        if isinstance(default, str):
            if value not in term.choices.get(key, (default,)):
                raise VfbenchError(f"loss {name!r}: option {key}={value!r}; expected one of "
                                   f"{term.choices.get(key, (default,))}")
        elif isinstance(default, int | float) and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise VfbenchError(f"loss {name!r}: option {key}={value!r} must be a number")
        elif isinstance(default, int | float) and value < 0:
            raise VfbenchError(f"loss {name!r}: option {key}={value!r} must not be negative")
    resolved = {**term.defaults, **options}
    if "steps" in resolved:
        resolved["steps"] = int(resolved["steps"])
    return resolved
