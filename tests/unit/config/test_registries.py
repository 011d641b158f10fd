"""Each registry's light declaration (names, defaults, option checks: what the Snakefile reads)
matches the registry itself, and reading them costs no torch, scipy, pandas or matplotlib."""

import inspect
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

from vfbench.arch_options import ARCH_OPTIONS
from vfbench.loss_options import LOSS_OPTIONS
from vfbench.losses import LOSSES
from vfbench.models import MODELS
from vfbench.report.entries import PLOT_LAYOUTS, TABLE_LAYOUTS
from vfbench.report.layouts import TABLES
from vfbench.report.plots import PLOTS
from vfbench.train import OPTIMIZERS, SCHEDULES
from vfbench.train_entry import OPTIMIZER_DEFAULTS, SCHEDULE_DEFAULTS
from vfbench.transforms import DEFAULTS as TRANSFORM_DEFAULTS
from vfbench.transforms.entries import CRITERION_NEEDS
from vfbench.transforms.methods import TRANSFORMS
from vfbench.transforms.score_specs import SIGNIFICANCE_KINDS
from vfbench.transforms.scores import SIGNIFICANCE
from vfbench.transforms.selection import CRITERIA
from vfbench.verify.options import COMMON_OPTIONS, METHOD_OPTIONS, verifier_defaults
from vfbench.verify.verifiers import VERIFIERS

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "scipy", "pandas", "matplotlib")


def test_every_registry_names_what_its_declaration_names():
    assert set(VERIFIERS) == set(METHOD_OPTIONS)
    assert set(LOSSES) == set(LOSS_OPTIONS)
    assert set(OPTIMIZERS) == set(OPTIMIZER_DEFAULTS) and set(SCHEDULES) == set(SCHEDULE_DEFAULTS)
    assert set(TABLES) == set(TABLE_LAYOUTS) and set(PLOTS) == set(PLOT_LAYOUTS)
    assert set(TRANSFORMS) == set(TRANSFORM_DEFAULTS)
    assert set(CRITERIA) == set(CRITERION_NEEDS)
    assert set(SIGNIFICANCE) == set(SIGNIFICANCE_KINDS)
    assert set(MODELS) == set(ARCH_OPTIONS)


def test_verifier_classes_take_their_options_from_the_declarations():
    for method, cls in VERIFIERS.items():
        assert cls.OPTIONS == METHOD_OPTIONS[method], method
        assert set(verifier_defaults(method)) == set(COMMON_OPTIONS) | set(cls.OPTIONS)


def test_arch_option_defaults_are_the_builders_keyword_defaults():
    for arch, builder in MODELS.items():
        keywords = dict(builder.keywords) if isinstance(builder, partial) else {}
        function = builder.func if isinstance(builder, partial) else builder
        parameters = list(inspect.signature(function).parameters.values())[4:]  # after data args
        defaults = {p.name: keywords.get(p.name, p.default) for p in parameters}
        assert defaults == ARCH_OPTIONS[arch], arch


def _snakefile_imports() -> list[str]:
    """The vfbench modules the Snakefile and rule files import."""
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile",
                                             *sorted((REPO / "workflow" / "rules").glob("*.smk"))])
    return sorted(set(re.findall(r"^\s*(?:from|import) (vfbench[\w.]*)", text, re.M)))


def test_reading_the_dag_imports_no_torch():
    """What `snakemake -n` and every cluster job pay before running anything: the rule files'
    imports plus a full check of the default and the papers' campaigns."""
    modules = _snakefile_imports()
    assert "vfbench.config" in modules
    code = "\n".join([
        "import sys, glob",
        *(f"import {m}" for m in modules),
        "from vfbench.config import load_config, verifier_specs",
        "for path in ['config/config.yaml', *sorted(glob.glob('config/campaigns/*.yaml'))]:",
        "    verifier_specs(load_config(path))",
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]",
        "assert not heavy, heavy",
    ])
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
