"""A table as CSV (one header row, full precision), Markdown and LaTeX (booktabs), each with the
campaign's provenance line, plus a JSON sidecar; and the tables step: every table a campaign asks
for."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from vfbench.report.cells import MISSING
from vfbench.report.entries import table_entries
from vfbench.report.layouts import TABLES
from vfbench.report.provenance import provenance_line, write_each, write_with_sidecar
from vfbench.results import CampaignResults


def format_value(value, decimals: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:+d}" if signed and value else str(value)
    value = round(float(value), decimals) + 0.0  # + 0.0: no "-0.0"
    return f"{value:+.{decimals}f}" if signed and value else f"{value:.{decimals}f}"


def _header_levels(frame: pd.DataFrame) -> list[list[str]]:
    if isinstance(frame.columns, pd.MultiIndex):
        return [[str(c[i]) for c in frame.columns] for i in range(frame.columns.nlevels)]
    return [[str(c) for c in frame.columns]]


def _body(frame: pd.DataFrame, decimals: int, signed: bool) -> list[list[str]]:
    """Rows as strings, an index level left blank where it repeats the row above (as in the
    papers)."""
    out, previous = [], None
    for index, values in zip(frame.index, frame.itertuples(index=False), strict=True):
        labels = [str(x) for x in (index if isinstance(index, tuple) else (index,))]
        shown = list(labels)
        if previous is not None:
            for i, label in enumerate(labels):
                if label != previous[i]:
                    break
                shown[i] = ""
        previous = labels
        out.append(shown + [format_value(v, decimals, signed) for v in values])
    return out


def render_markdown(frame: pd.DataFrame, *, title: str, footer: str, decimals: int,
                    signed: bool = False) -> str:
    names = [str(n or "") for n in frame.index.names]
    header = names + [" / ".join(parts) for parts in zip(*_header_levels(frame), strict=True)]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":--"] * len(names) + ["--:"] * len(frame.columns)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _body(frame, decimals, signed)]
    return "\n".join(lines + ["", f"*{footer}*", ""])


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def render_latex(frame: pd.DataFrame, *, title: str, footer: str, decimals: int,
                 signed: bool = False) -> str:
    """A booktabs ``table``: grouped column headers (``\\multicolumn`` + ``\\cmidrule``) for a
    two-level header, the provenance line in small type under the tabular."""
    n_index = frame.index.nlevels
    levels = _header_levels(frame)
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(title)}}}",
             rf"\begin{{tabular}}{{{'l' * n_index}{'r' * len(frame.columns)}}}", r"\toprule"]
    if len(levels) > 1:
        groups, rules, start = [], [], n_index + 1
        runs: list[list] = []
        for label in levels[0]:
            if runs and runs[-1][0] == label:
                runs[-1][1] += 1
            else:
                runs.append([label, 1])
        for label, span in runs:
            groups.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" & ".join([""] * n_index + groups) + r" \\")
        lines.append(" ".join(rules))
    names = [latex_escape(n or "") for n in frame.index.names]
    lines.append(" & ".join(names + [latex_escape(c) for c in levels[-1]]) + r" \\")
    lines.append(r"\midrule")
    for row in _body(frame, decimals, signed):
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              rf"{{\footnotesize {latex_escape(footer)}\par}}", r"\end{table}", ""]
    return "\n".join(lines)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Index levels as leading columns; grouped column labels joined with " / "."""
    flat = frame.copy()
    flat.columns = [" / ".join(str(p) for p in c) if isinstance(c, tuple) else str(c)
                    for c in frame.columns]
    return flat.reset_index()


def render_csv(frame: pd.DataFrame) -> str:
    """One header row, full precision, "-" where missing."""
    flat = _flat(frame).astype(object)
    return flat.where(flat.notna(), MISSING).to_csv(index=False)


def write_table(frame: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str,
                decimals: int, signed: bool, provenance: Mapping) -> list[Path]:
    """``{name}.csv``, ``.md``, ``.tex`` and the ``.json`` sidecar (provenance + cells)."""
    footer = provenance_line(provenance, frame.attrs.get("notes", ()))
    texts = {
        ".csv": render_csv(frame),
        ".md": render_markdown(frame, title=title, footer=footer, decimals=decimals,
                               signed=signed),
        ".tex": render_latex(frame, title=title, footer=footer, decimals=decimals,
                             signed=signed),
    }
    return write_with_sidecar(
        out_dir, name, {suffix: lambda path, text=text: path.write_text(text)
                        for suffix, text in texts.items()},
        {**provenance, "table": name, "title": title, "footer": footer,
         "notes": list(frame.attrs.get("notes", ())),
         "cells": json.loads(_flat(frame).to_json(orient="records"))})


def build_tables(results: CampaignResults, out_dir: str | os.PathLike) -> list[Path]:
    """Build and write every table the campaign config asks for; return the files written."""
    def write(name, layout, options, provenance):
        return write_table(TABLES[layout](results, options), out_dir, name,
                           title=options["title"], decimals=int(options["decimals"]),
                           signed=bool(options["signed"]), provenance=provenance)
    return write_each(results, table_entries(results.config), write)
