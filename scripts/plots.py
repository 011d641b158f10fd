#!/usr/bin/env python
"""Rule plots: the figures the campaign config names (`plots`), each as PNG and PDF plus a JSON
sidecar with its provenance, from the campaign's merged records, metrics, transform reports and
score files."""

from vfbench.scripting import run


def main() -> None:
    from vfbench.report.command import run_report_step
    from vfbench.report.plots import build_plots

    run_report_step(__doc__, build_plots)


if __name__ == "__main__":
    run(main)
