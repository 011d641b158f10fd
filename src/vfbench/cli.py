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
    from vfbench.plan import format_plan, make_plan, measure_plan

    config = load_config(args.config)
    plan = make_plan(config)
    if args.measured:
        measure_plan(plan, config, args.measured)
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
    parser.add_argument("--measured", metavar="RESULTS",
                        help="a finished campaign's results folder (e.g. results/default): add "
                        "its measured seconds per image per arch/verifier and the hours they "
                        "predict for this campaign")
    parser.set_defaults(handler=plan_command)


# Subcommand name -> function adding its parser.
COMMANDS = {"plan": add_plan_parser}


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
