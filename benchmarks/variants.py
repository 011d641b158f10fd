"""What the verifier benchmarks share: variants named on the command line, and the CPU clock.

A variant is ``NAME=METHOD[:JSON options]``, e.g. ``'after=bab:{"branching": "fsb"}'``: the
variants of one run go through the same instances in one process, so their times compare as
ratios.

``use_cpu_clock`` makes every timeout and time of the process its CPU seconds
(``time.perf_counter`` replaced by ``time.process_time``): on a shared machine wall seconds give
the verifier a fraction of a core, and "30 s on one CPU thread" is what a benchmark states. With
one torch and one onnxruntime thread the process's CPU time is that thread's. An LP/MILP solver
subprocess (CBC) counts too: its CPU seconds join the clock when it ends, and its own time limit
counts CPU seconds (``milp.CBC_TIME_MODE``), so a milp instance's solves share one CPU budget.
"""

from __future__ import annotations

import json
import os
import time

from vfbench.errors import VfbenchError
from vfbench.verify import milp


def parse_variant(text: str) -> tuple[str, str, dict]:
    """(name, method, options) of ``NAME=METHOD[:JSON options]``."""
    name, _, rest = text.partition("=")
    method, _, options = rest.partition(":")
    if not name or not method:
        raise VfbenchError(f"--variant {text!r}: expected NAME=METHOD[:JSON options]")
    return name, method, json.loads(options) if options else {}


def cpu_seconds() -> float:
    """This process's CPU seconds plus those of its finished (waited-for) subprocesses."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


def use_cpu_clock() -> None:
    time.perf_counter = cpu_seconds
    milp.CBC_TIME_MODE = "cpu"
