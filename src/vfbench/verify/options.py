"""Every verifier method's options, declared once: default, allowed values, help.

Light on purpose (no torch): the Snakefile checks each verifier entry of a campaign against these
declarations at start-up, so a bad option stops ``snakemake -n`` instead of a verification job
after training. The Verifier classes (``vfbench.verify.verifiers.VERIFIERS``) take their
``DEFAULTS`` from here; a test checks both registries name the same methods.

A config entry is ``{method: <METHOD_OPTIONS key>, only_arch: [...], timeout: s, ...options}``;
``method``, ``only_arch``, ``only_dataset``, ``timeout`` and ``images`` are the workflow's
(``WORKFLOW_KEYS``), the rest are the method's options (``COMMON_OPTIONS`` plus its own).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vfbench.errors import VfbenchError

# auto_LiRPA's bound methods as vfbench names them, and its convolution modes.
BOUND_METHODS = ("ibp", "crown", "alpha_crown")
CONV_MODES = ("patches", "matrix")


@dataclass(frozen=True)
class Option:
    """One option: its default and help; ``choices`` (the allowed values), or for a number its
    ``minimum`` (and ``integer``); ``required``: the default (None) is not a usable value."""

    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    integer: bool = False
    required: bool = False
    also: tuple = ()  # values allowed besides the rule above (e.g. 'auto')

    def allowed(self) -> str:
        """The allowed values, in words (what an error message says)."""
        if self.also:
            return " or ".join([replace(self, also=()).allowed(), *map(repr, self.also)])
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.required:
            return "a value (no default)"
        if isinstance(self.default, bool):
            return "true or false"
        if self.minimum is not None:
            kind = "an integer" if self.integer else "a number"
            return f"{kind} >= {self.minimum:g}"
        return "any value"

    def check(self, value: Any) -> bool:
        if value in self.also:
            return True
        if self.choices is not None:
            return value in self.choices
        if self.required and value in (None, ""):
            return False
        if isinstance(self.default, bool):
            return isinstance(value, bool)
        if self.minimum is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            return value >= self.minimum and (not self.integer or isinstance(value, int))
        return True


def defaults_of(options: dict[str, Option]) -> dict[str, Any]:
    return {name: option.default for name, option in options.items()}


# PGD steps that refine an external tool's counterexample onnxruntime does not confirm.
REFINE_STEPS = 20

# Options every verifier takes. PGD: steps x restarts of margin-loss PGD (0 steps: no falsifier),
# random starts seeded from `seed` and the image's bytes (so a resumed shard reproduces an
# uninterrupted one).
COMMON_OPTIONS: dict[str, Option] = {
    "pgd_steps": Option(50, "PGD steps of the falsifier run before deciding (0: no falsifier)",
                        minimum=0, integer=True),
    "pgd_restarts": Option(5, "PGD random restarts", minimum=0, integer=True),
    "pgd_step_size": Option(None, "PGD step size (null: eps/4)"),
    "seed": Option(0, "seed of the PGD random starts (with the image's bytes); in a campaign, "
                      "the campaign's seed unless the entry sets one"),
    "unstable_bound": Option("crown", "bound method behind n_unstable / UNR; in a campaign, "
                                      "verify.unstable_bound (an entry cannot set it)",
                             BOUND_METHODS),
    "conv_mode": Option("patches", "auto_LiRPA's convolution mode", CONV_MODES),
    "batch_size": Option(1, "images per bound call", minimum=1, integer=True),
}

ALPHA_CROWN_OPTIONS: dict[str, Option] = {
    "iterations": Option(20, "alpha optimisation steps", minimum=1, integer=True),
    "lr_alpha": Option(0.1, "Adam step size of alpha", minimum=0),
    "early_stop": Option(True, "stop once every margin is positive"),
    "optimize_intermediate": Option(True, "optimise the intermediate layers' bounds too "
                                          "(standard alpha-CROWN, tighter and slower) or keep "
                                          "CROWN's"),
}

BAB_OPTIONS: dict[str, Option] = {
    "domain_batch": Option(64, "domains split per round; their children (twice as many) are "
                               "bounded in one batch; 'auto': sized to the machine (per CPU "
                               "thread, or the GPU's)", minimum=1, integer=True, also=("auto",)),
    "iterations": Option(10, "alpha/beta optimisation steps per round", minimum=1, integer=True),
    "root_iterations": Option(20, "alpha-CROWN steps at the root", minimum=0, integer=True),
    "lr_alpha": Option(0.1, "Adam step size of alpha", minimum=0),
    "lr_beta": Option(0.05, "Adam step size of beta", minimum=0),
    "max_domains": Option(20000, "open domains beyond which the image is 'unknown'",
                          minimum=1, integer=True),
    "max_memory_mb": Option(2048, "memory the open domains (and a full alpha-CROWN root, "
                                  "skipped when it would not fit) may take",
                            minimum=1, integer=True),
    "branching": Option("babsr", "'babsr': max(-lA, 0) * u(-l)/(u-l), lA the final bound's "
                                 "coefficient of the ReLU's output; 'fsb' (filtered smart "
                                 "branching): the best of that score and of BaBSR's score with "
                                 "the pre-activation bias term, branch_candidates of each, go to "
                                 "the probe; 'width': u(-l)/(u-l) alone",
                        ("babsr", "fsb", "width")),
    "branch_candidates": Option(4, "best-scored neurons a probe (one CROWN pass on their "
                                   "children) chooses between", minimum=1, integer=True),
    "refine_max_neurons": Option(256, "ReLU nodes up to this size are optimised at the root and "
                                      "re-bounded per domain; larger ones keep CROWN's bounds "
                                      "at first", minimum=0, integer=True),
    "domain_refine": Option("crown", "per domain, after a split: 'crown' re-bounds the (small) "
                                     "nodes after it by CROWN with the splits' betas, only the "
                                     "neurons still unstable on the domain; 'alpha' then "
                                     "optimises those bounds too, jointly with the final "
                                     "bound and the betas (alpha-beta-CROWN; tighter, but "
                                     "34-47x the CPU time per domain on deep_mlp: 39/60 "
                                     "decided against crown's 40/60); 'none' keeps the root's",
                            ("crown", "alpha", "none")),
    "attack_every": Option(0, "BaB attack: every this many rounds (0: never), PGD from the "
                              "minimisers of the linear bounds of the lowest-bounded domains",
                           minimum=0, integer=True),
    "attack_domains": Option(8, "domains whose minimisers start the BaB attack", minimum=1,
                             integer=True),
    "attack_steps": Option(20, "PGD steps of the BaB attack (margin loss)", minimum=1,
                           integer=True),
    "escalate_after": Option(20, "branches after which an image with larger nodes gets a full "
                                 "alpha-CROWN root and a fresh search", minimum=0, integer=True),
    "leaf_solver": Option("cbc", "LP solver for domains with every neuron stable",
                          ("cbc", "highs")),
}

MILP_OPTIONS: dict[str, Option] = {
    "solver": Option("cbc", "MILP solver (highs needs highspy)", ("cbc", "highs")),
    "bounds": Option("alpha_crown", "bound method giving the big-M constants",
                     ("crown", "alpha_crown")),
    "tolerance": Option(1e-5, "an optimum within this of 0 decides nothing (solver feasibility "
                              "tolerances are ~1e-6)", minimum=0),
    "mip_gap": Option(1e-4, "relative optimality gap at which the solver may stop", minimum=0),
}

VNNCOMP_OPTIONS: dict[str, Option] = {
    "tool": Option(None, "the tool's folder with prepare_instance.sh and run_instance.sh",
                   required=True),
    "category": Option("vfbench", "the benchmark name passed to the tool's scripts"),
    "prepare_timeout_s": Option(600, "limit on prepare_instance.sh (s)", minimum=0),
    "grace_s": Option(15, "how long run_instance.sh may overrun the image's timeout before it "
                          "is killed (s)", minimum=0),
    "env": Option({}, "variables added to the tool's environment (e.g. ABCROWN_TEST_RUN: 1)"),
    "refine_steps": Option(REFINE_STEPS, "PGD steps from a tool's point that onnxruntime does "
                                         "not confirm", minimum=0, integer=True),
}

MARABOU_OPTIONS: dict[str, Option] = {
    "refine_steps": Option(REFINE_STEPS, "PGD steps from a Marabou point that onnxruntime does "
                                         "not confirm", minimum=0, integer=True),
    "verbosity": Option(0, "Marabou's verbosity", minimum=0, integer=True),
}

# method -> its own options (COMMON_OPTIONS come on top).
METHOD_OPTIONS: dict[str, dict[str, Option]] = {
    "ibp": {},
    "crown": {},
    "alpha_crown": ALPHA_CROWN_OPTIONS,
    "bab": BAB_OPTIONS,
    "milp": MILP_OPTIONS,
    "vnncomp": VNNCOMP_OPTIONS,
    "marabou": MARABOU_OPTIONS,
}

METHOD_HELP: dict[str, str] = {
    "ibp": "interval bound propagation (auto_LiRPA); incomplete",
    "crown": "CROWN (auto_LiRPA); incomplete",
    "alpha_crown": "alpha-CROWN (auto_LiRPA); incomplete",
    "bab": "branch and bound over ReLU splits with alpha/beta-CROWN bounds; complete",
    "milp": "exact MILP per undecided class (PuLP); complete",
    "vnncomp": "an external tool through the VNN-COMP scripts",
    "marabou": "Marabou (maraboupy) on the exported ONNX + a VNNLIB file; complete",
}

# Keys of a config entry that are the workflow's, not the verifier's.
WORKFLOW_KEYS = ("method", "only_arch", "only_dataset", "timeout", "images")


def method_options(method: str) -> dict[str, Option]:
    """Every option of ``method`` (common ones first)."""
    if method not in METHOD_OPTIONS:
        raise VfbenchError(f"unknown verifier method {method!r}; known: {sorted(METHOD_OPTIONS)}")
    return {**COMMON_OPTIONS, **METHOD_OPTIONS[method]}


def verifier_defaults(method: str) -> dict[str, Any]:
    """Every option of ``method`` with its default (what a config entry may set)."""
    return defaults_of(method_options(method))


def resolve_options(declared: dict[str, Option], options: dict | None, where: str) -> dict:
    """``options`` completed with the ``declared`` defaults; an unknown option or a value outside
    the allowed ones is a VfbenchError naming ``where``, the option and the allowed values."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise VfbenchError(f"{where}: unknown option(s) {unknown}; known: {sorted(declared)}")
    resolved = {**defaults_of(declared), **options}
    for name, option in declared.items():
        if not option.check(resolved[name]):
            raise VfbenchError(f"{where}: option {name!r} = {resolved[name]!r}; allowed: "
                               f"{option.allowed()}")
    return resolved


def resolve_verifier_entry(entry: dict) -> tuple[str, dict[str, Any]]:
    """A config entry -> (method, options with defaults filled in)."""
    if not isinstance(entry, dict) or "method" not in entry:
        raise VfbenchError(f"a verifier entry needs a 'method' (one of {sorted(METHOD_OPTIONS)})")
    method = entry["method"]
    options = {k: v for k, v in entry.items() if k not in WORKFLOW_KEYS}
    return method, resolve_options(method_options(method), options, f"verifier {method!r}")
