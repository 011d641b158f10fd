"""The `vfbench` command: tools around a campaign that do not run the pipeline itself
(the pipeline is `snakemake`)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from vfbench.errors import VfbenchError


def plan_command(args: argparse.Namespace) -> None:
    from vfbench.config import load_config
    from vfbench.plan import format_plan, make_plan

    plan = make_plan(load_config(args.config))
    if args.json:
        print(json.dumps({**asdict(plan), "total_jobs": plan.total_jobs,
                          "gpu_hours_bound": plan.gpu_hours_bound}, indent=2))
    else:
        print(format_plan(plan, source=args.config, list_outputs=args.list_outputs))


def add_plan_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="print what a campaign will run (jobs per rule, GPU-hours bound, outputs)",
        description="Read a campaign config and print, before anything runs: jobs per rule, "
        "images, an upper bound of the verification GPU-hours and the expected outputs.",
    )
    parser.add_argument("config", nargs="?", default="config/config.yaml",
                        help="campaign config (default: %(default)s)")
    parser.add_argument("--list-outputs", action="store_true",
                        help="list every expected output path, not only counts")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=plan_command)


def options_command(args: argparse.Namespace) -> None:
    from vfbench.options_listing import format_options

    print(format_options(args.name))


def add_options_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "options",
        help="print every method's options with their defaults (and allowed values, help)",
        description="Print what a campaign entry may set: each verifier method's options with "
        "default, allowed values and help, and the options with defaults of every loss, "
        "transform, architecture, table and plot layout.",
    )
    parser.add_argument("name", nargs="?",
                        help="only this method / loss / transform / arch / layout (e.g. bab)")
    parser.set_defaults(handler=options_command)


# Subcommand name -> function adding its parser.
COMMANDS = {"plan": add_plan_parser, "options": add_options_parser}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vfbench", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_parser in COMMANDS.values():
        add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except VfbenchError as exc:
        print(f"vfbench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
