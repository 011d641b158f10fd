"""Running a rule's CLI script in-process, as Snakemake would run it, for tests that need the
files the real step writes."""

import runpy
import sys
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, *args) -> None:
    """``scripts/<name>`` with ``args`` as its command line; torch threads reset to 1 after
    (a script sets its own)."""
    old = sys.argv
    sys.argv = [name, *map(str, args)]
    try:
        runpy.run_path(str(SCRIPTS / name), run_name="__main__")
    finally:
        sys.argv = old
        torch.set_num_threads(1)
