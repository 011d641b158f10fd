#!/usr/bin/env python
"""Rule tables: the tables the campaign config names (`tables`), each as CSV, Markdown and LaTeX
plus a JSON sidecar with its provenance, from the campaign's merged records, metrics, transform
reports and score files."""

from vfbench.scripting import run


def main() -> None:
    from vfbench.report.command import run_report_step
    from vfbench.report.render import build_tables

    run_report_step(__doc__, build_tables)


if __name__ == "__main__":
    run(main)
