"""The command line of the tables and plots rules (scripts/tables.py, scripts/plots.py): the
campaign config in (its result files found from it, ``vfbench.layout.report_inputs``), every
output the config asks for written."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from vfbench.results import CampaignResults, load_campaign_results
from vfbench.scripting import json_arg


def add_results_arguments(parser: argparse.ArgumentParser) -> None:
    """The config, where its results are, where the outputs go."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-json", type=json_arg, help="the resolved campaign config, JSON")
    source.add_argument("--config", help="a campaign config file (YAML), validated here")
    parser.add_argument("--results", default=None,
                        help="the campaign folder (default: the config's results_dir/campaign)")
    parser.add_argument("--out-dir", required=True)


def load_results_from_arguments(args: argparse.Namespace) -> CampaignResults:
    if args.config is not None:
        from vfbench.config import load_config

        config = load_config(args.config)
    else:
        config = args.config_json
    return load_campaign_results(config, args.results)


def run_report_step(description: str,
                    build: Callable[[CampaignResults, str | os.PathLike], list[Path]]) -> None:
    """Parse the arguments, load the results, ``build`` the outputs and print their paths."""
    parser = argparse.ArgumentParser(description=description)
    add_results_arguments(parser)
    args = parser.parse_args()
    for path in build(load_results_from_arguments(args), args.out_dir):
        print(path)
