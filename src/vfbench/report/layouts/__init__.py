"""The tables: layout name -> ``(results, options) -> DataFrame``, one module per paper. Each
layout's options and the cells it reads are declared in ``vfbench.report.entries``."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from vfbench.report.layouts import paper000, paper001, paper002, summary
from vfbench.results import CampaignResults

TABLES: dict[str, Callable[[CampaignResults, dict], pd.DataFrame]] = {
    **summary.TABLES, **paper000.TABLES, **paper001.TABLES, **paper002.TABLES,
}
