"""What `vfbench options [NAME]` prints: every registry entry a campaign can name, with its
options, their defaults and (for verifiers) allowed values and help. Read from the same light
declarations that check a campaign at start-up, so the listing is what the check accepts."""

from __future__ import annotations

from typing import Any

from vfbench.arch_options import ARCH_OPTIONS
from vfbench.errors import VfbenchError
from vfbench.loss_options import LOSS_OPTIONS
from vfbench.report.entries import PLOT_LAYOUTS, TABLE_LAYOUTS
from vfbench.transforms.entries import DEFAULTS as TRANSFORM_DEFAULTS
from vfbench.verify.options import COMMON_OPTIONS, METHOD_HELP, METHOD_OPTIONS, Option


def _value(value: Any) -> str:
    return "null" if value is None else repr(value)


def _verifier_lines(method: str) -> list[str]:
    lines = [f"  {method}: {METHOD_HELP[method]}"]
    options: dict[str, Option] = {**METHOD_OPTIONS[method], **COMMON_OPTIONS}
    for name, option in options.items():
        common = " (every verifier)" if name in COMMON_OPTIONS else ""
        lines.append(f"    {name} = {_value(option.default)}  [{option.allowed()}]{common}")
        lines.append(f"        {option.help}")
    return lines


def _defaults_lines(name: str, defaults: dict, note: str = "") -> list[str]:
    lines = [f"  {name}{note}"]
    lines += [f"    {key} = {_value(value)}" for key, value in defaults.items()]
    return lines or [f"  {name}"]


# section title, config place, names -> lines of one entry
SECTIONS = [
    ("verifiers", "verify.verifiers.<name>: {method: ..., timeout: seconds (default "
     "verify.timeout_s), only_arch: [...] / only_dataset: [...] (default: every arch / dataset), "
     "images: N (default: every image of each model), ...options}", METHOD_OPTIONS,
     _verifier_lines),
    ("losses", "train.<name>.loss_options.<loss>", LOSS_OPTIONS,
     lambda n: _defaults_lines(n, LOSS_OPTIONS[n].defaults,
                               f" ({LOSS_OPTIONS[n].kind}; {LOSS_OPTIONS[n].reference})"
                               + "".join(f"; {k} one of {list(v)}"
                                         for k, v in LOSS_OPTIONS[n].choices.items()))),
    ("transforms", "transform.<name>: {method: ...}", TRANSFORM_DEFAULTS,
     lambda n: _defaults_lines(n, TRANSFORM_DEFAULTS[n])),
    ("architectures", "models[i].arch_options", ARCH_OPTIONS,
     lambda n: _defaults_lines(n, ARCH_OPTIONS[n])),
    ("tables", "tables.<name>: {layout: ...}", TABLE_LAYOUTS,
     lambda n: _defaults_lines(n, TABLE_LAYOUTS[n].defaults)),
    ("plots", "plots.<name>: {layout: ...}", PLOT_LAYOUTS,
     lambda n: _defaults_lines(n, PLOT_LAYOUTS[n].defaults)),
]


def format_options(name: str | None = None) -> str:
    """Every entry's options, or only those of ``name`` (in whichever registries have it)."""
    lines: list[str] = []
    for title, place, registry, describe in SECTIONS:
        names = [n for n in registry if name is None or n == name]
        if names:
            lines.append(f"{title} ({place}):")
            for entry in names:
                lines += describe(entry)
            lines.append("")
    if not lines:
        known = sorted({n for _, _, registry, _ in SECTIONS for n in registry})
        raise VfbenchError(f"no verifier, loss, transform, architecture, table or plot is called "
                           f"{name!r}; known: {known}")
    return "\n".join(lines).rstrip()
