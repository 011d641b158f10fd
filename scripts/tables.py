#!/usr/bin/env python
"""Rule tables: the tables the campaign config names (`tables`), each as CSV, Markdown and LaTeX
plus a JSON sidecar with its provenance, from the campaign's merged records, metrics, transform
reports and score files."""

import argparse

from vfbench.scripting import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    from vfbench.results import add_results_arguments, load_results_from_arguments
    from vfbench.tables import build_tables

    add_results_arguments(p)
    args = p.parse_args()
    for path in build_tables(load_results_from_arguments(args), args.out_dir):
        print(path)


if __name__ == "__main__":
    run(main)
