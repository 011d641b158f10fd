"""Every table layout and figure has a report caption that renders as Snakemake renders it
(Jinja with ``snakemake.config``, then reStructuredText), without a docutils warning."""

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from docutils.core import publish_parts

from vfbench.report.layouts import TABLES
from vfbench.report.plots import PLOTS

REPORT = Path(__file__).resolve().parents[3] / "workflow" / "report"
CONFIG = {"campaign": "default", "evaluate": {"pgd": {"steps": 20, "restarts": 1}},
          "verify": {"unstable_bound": "crown", "timeout_s": 30, "images": 100,
                     "image_selection": "first"}}
CAPTIONS = [REPORT / "workflow.rst"] + [REPORT / "tables" / f"{n}.rst" for n in TABLES] + \
    [REPORT / "plots" / f"{n}.rst" for n in PLOTS]


@pytest.mark.parametrize("path", CAPTIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_caption_renders(path):
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        path.read_text()).render(snakemake=SimpleNamespace(config=CONFIG))
    assert "{{" not in text and "snakemake" not in text
    html = publish_parts(text, writer="html",
                         settings_overrides={"halt_level": 2, "report_level": 5})["body"]
    assert html.strip()
