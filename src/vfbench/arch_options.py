"""The model zoo's architectures and their options (``arch_options`` of a campaign's models),
declared once with their defaults.

Light on purpose (no torch): the Snakefile checks every model entry at start-up. The builders are
``vfbench.models.MODELS``; a test checks each builder's keyword defaults equal these.
"""

from __future__ import annotations

from typing import Any

from vfbench.errors import VfbenchError

# arch -> option -> default. channels: conv widths; hidden: dense widths; batchnorm: BN layers.
ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "net1": {"hidden": (64, 32, 16), "batchnorm": True},
    "net2": {"hidden": (128, 64, 32), "batchnorm": True},
    "cnn_4layer": {"channels": (16, 32), "hidden": (100,)},
    "relu_stable": {"channels": (16, 32), "hidden": (100,)},
    "conv_big": {"channels": (32, 32, 64, 64), "hidden": (512, 512), "batchnorm": False},
    "conv_big_bn": {"channels": (32, 32, 64, 64), "hidden": (512, 512), "batchnorm": True},
    "marabou_medium": {"channels": (16, 32), "hidden": (128, 64)},
    "marabou_large": {"channels": (32, 64), "hidden": (128, 64)},
    "cnn_b": {"channels": (32, 128), "hidden": (250,)},
    "resnet4b": {"channels": (16, 32, 32), "hidden": (100,)},
    "conv_huge": {"channels": (64, 64, 128, 128, 128), "hidden": (512,)},
}


def check_arch_options(arch: str, options: dict | None) -> None:
    """VfbenchError naming the option and its allowed values unless ``arch`` is a zoo
    architecture and ``options`` are its options with values of the right kind."""
    if arch not in ARCH_OPTIONS:
        raise VfbenchError(f"unknown arch {arch!r}; known: {sorted(ARCH_OPTIONS)}")
    declared = ARCH_OPTIONS[arch]
    options = options or {}
    if not isinstance(options, dict):
        raise VfbenchError(f"arch_options of {arch}: expected a mapping, got {options!r}")
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise VfbenchError(f"arch_options of {arch}: unknown option(s) {unknown}; allowed (with "
                           f"defaults): {declared}")
    for name, value in options.items():
        if isinstance(declared[name], bool):
            ok, allowed = isinstance(value, bool), "true or false"
        else:
            ok = isinstance(value, list | tuple) and len(value) > 0 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            allowed = "a non-empty list of widths (integers >= 1)"
        if not ok:
            raise VfbenchError(f"arch_options of {arch}: option {name!r} = {value!r}; allowed: "
                               f"{allowed}")
