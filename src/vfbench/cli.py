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


def _add_verifier_parser(subparsers, name: str, handler, help: str) -> argparse.ArgumentParser:
    """A subcommand that runs a verifier (described by ``handler``'s docstring): ``--verifier``
    and ``--options``; the caller adds the rest."""
    from vfbench.scripting import json_arg

    parser = subparsers.add_parser(name, help=help, description=handler.__doc__)
    parser.set_defaults(handler=handler)
    parser.add_argument("--verifier", default="bab",
                        help="a vfbench verifier method: ibp, crown, alpha_crown, bab, milp, "
                        "marabou, vnncomp (default: %(default)s)")
    parser.add_argument("--options", type=json_arg, default=None,
                        help='the verifier\'s options as JSON, e.g. \'{"pgd_steps": 0}\'')
    return parser


def verify_command(args: argparse.Namespace) -> None:
    """Verify the property of a VNNLIB file on an ONNX network and print the VNN-COMP result
    (sat + counterexample, unsat, timeout, unknown). Bad input or a verifier error: a message on
    stderr, exit status 1, no result file."""
    from vfbench.io import atomic_path
    from vfbench.runtime import set_threads
    from vfbench.verify.instance import verify_instance

    set_threads(1)
    result = verify_instance(args.onnx, args.vnnlib, args.verifier, args.options, args.timeout)
    if result.result == "error":
        raise VfbenchError(f"{args.verifier} on {args.onnx} + {args.vnnlib}: {result.error}")
    text = result.text()
    print(text, end="")
    if result.error:
        print(f"({result.result}: {result.error})", file=sys.stderr)
    if args.result:
        with atomic_path(args.result) as tmp:
            tmp.write_text(text)


def add_verify_parser(subparsers) -> None:
    parser = _add_verifier_parser(subparsers, "verify", verify_command,
                                  "verify one VNN-COMP instance (ONNX + VNNLIB)")
    parser.add_argument("--onnx", required=True, help="the network (.onnx or .onnx.gz)")
    parser.add_argument("--vnnlib", required=True, help="the property (.vnnlib or .vnnlib.gz)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds for the decision; loading the model and the property "
                        "is not counted (VNN-COMP: prepare time) (default: 60)")
    parser.add_argument("--result", help="also write the result file here")


def verify_benchmark_command(args: argparse.Namespace) -> None:
    """Verify every row of a VNN-COMP instances.csv in one process, resuming from its journal if
    killed; writes the VNN-COMP results CSV, counterexample files and a summary. Exit status 1 if
    any instance ended in error."""
    from vfbench.runtime import set_threads
    from vfbench.verify.benchmark import verify_benchmark

    set_threads(1)
    summary = verify_benchmark(args.folder, args.instances, args.verifier, args.options,
                               args.out)
    print(f"{summary['benchmark']} ({summary['verifier']}): {summary['instances']} instances, "
          f"{summary['holds']} holds, {summary['violated']} violated, {summary['timeout']} "
          f"timeout, {summary['unknown']} unknown, {summary['error']} error; "
          f"{summary['total_time_s']:.1f} s deciding + {summary['total_prepare_s']:.1f} s "
          f"preparing; results in {summary['results']}")
    if summary["error"]:
        raise VfbenchError(f"{summary['error']} instance(s) failed: "
                           + "; ".join(summary["errors"][:5]))


def add_verify_benchmark_parser(subparsers) -> None:
    parser = _add_verifier_parser(subparsers, "verify-benchmark", verify_benchmark_command,
                                  "verify every instance of a VNN-COMP benchmark folder")
    parser.add_argument("folder", help="the benchmark folder (paths in instances.csv are "
                        "relative to it)")
    parser.add_argument("--instances", help="instances CSV (default: FOLDER/instances.csv)")
    parser.add_argument("--out", help="results CSV (default: FOLDER/results_VERIFIER.csv)")


def benchmark_report_command(args: argparse.Namespace) -> None:
    from pathlib import Path

    from matplotlib.figure import Figure

    from vfbench.cactus import draw_cactus, score_table
    from vfbench.io import atomic_path
    from vfbench.report.render import render_markdown
    from vfbench.verify.benchmark import read_results

    def by_instance(path):
        return {(r["onnx"], r["vnnlib"]): r for r in read_results(path)}

    runs = {Path(p).stem.removeprefix("results_"): by_instance(p) for p in args.results}
    reference = ({k: r["result"] for k, r in by_instance(args.reference).items()}
                 if args.reference else None)
    table = score_table({v: {k: r["result"] for k, r in rows.items()}
                         for v, rows in runs.items()}, reference)
    out = Path(args.out_dir)
    fig = Figure(figsize=(6, 4))
    draw_cactus(fig.add_subplot(), {v: ([r["result"] for r in rows.values()],
                                        [r["run_time"] for r in rows.values()])
                                    for v, rows in runs.items()})
    fig.tight_layout()
    for name, write in (("cactus.png", lambda tmp: fig.savefig(tmp, format="png", dpi=150)),
                        ("scores.csv", lambda tmp: table.to_csv(tmp, index=False)),
                        ("scores.md", lambda tmp: tmp.write_text(render_markdown(
                            table.set_index("verifier"), title="VNN-COMP scores",
                            footer="score: +10 per solved instance, -150 per wrong one",
                            decimals=0)))):
        with atomic_path(out / name) as tmp:
            write(tmp)
    print(table.to_string(index=False))


def add_benchmark_report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark-report", help="cactus plot and score table of verify-benchmark results",
        description="From VNN-COMP results CSVs (one per verifier, named results_VERIFIER.csv): "
        "a cactus plot (instances solved vs time, log axis) and a table of verified / "
        "falsified / unknown / timeout / error / wrong / score (+10 right, -150 wrong, wrong "
        "against --reference).")
    parser.add_argument("results", nargs="+", help="results CSVs of verify-benchmark")
    parser.add_argument("--reference", help="a results CSV whose verdicts are the reference")
    parser.add_argument("--out-dir", required=True, help="writes cactus.png, scores.csv/.md")
    parser.set_defaults(handler=benchmark_report_command)


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
COMMANDS = {"plan": add_plan_parser, "options": add_options_parser, "verify": add_verify_parser,
            "verify-benchmark": add_verify_benchmark_parser,
            "benchmark-report": add_benchmark_report_parser}


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
