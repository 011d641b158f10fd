"""`snakemake --lint` of the real Snakefile, as a list of lint titles, less the one lint vfbench
answers by design: rules have no `conda:` (or container) directive. They run the interpreter that
runs Snakemake (on compute nodes too), whose environment `make venv` builds; no conda environment
can install auto-lirpa 0.3 (its metadata pins torch<1.13), so a `conda:` directive would promise
what it cannot keep (docs/design.md, Execution)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NO_SOFTWARE_DIRECTIVE = "Specify a conda environment or container for each rule."


def snakemake_lints(*args: str, cwd: Path = REPO) -> tuple[list[str], str]:
    """(titles of the lints other than NO_SOFTWARE_DIRECTIVE, the whole lint output)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                          "--lint", *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    text = run.stdout + run.stderr
    titles = re.findall(r"^\s+\* (.+?):$", text, re.M)
    if run.returncode != 0 and not titles:
        raise AssertionError(f"snakemake --lint failed without lints:\n{text[-3000:]}")
    return [t for t in titles if t != NO_SOFTWARE_DIRECTIVE], text
