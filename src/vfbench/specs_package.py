"""The campaign's VNN-COMP benchmark package, ``results/{campaign}/specs/``.

Next to the make_specs VNNLIB files and images.csv and the make_instances instances.csv, the
package step writes ``package.json`` (what those steps were given: data file, eps, the recorded
image indices and selection, ONNX, timeout) and ``generate_properties.py``; ``python
generate_properties.py SEED`` rebuilds those files byte for byte with the same library functions.
The image selection is the campaign's (``verify.image_selection``, deterministic), recorded in
package.json: SEED is accepted as VNN-COMP requires and changes nothing. Paths in package.json
and instances.csv are relative to the campaign folder (the parent of ``specs/``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path

PACKAGE_JSON = "package.json"
SCRIPT_NAME = "generate_properties.py"

SCRIPT_TEXT = '''#!/usr/bin/env python
"""VNN-COMP generate_properties.py of a vfbench campaign (needs vfbench installed).

python generate_properties.py SEED rebuilds the VNNLIB files, images.csv and instances.csv listed
in package.json from the campaign's data file. The images are the campaign's recorded selection:
SEED does not change them.
"""

import sys
from pathlib import Path

from vfbench.scripting import run
from vfbench.specs_package import generate_properties


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].lstrip("-").isdigit():
        sys.exit("usage: python generate_properties.py SEED")
    generate_properties(Path(__file__).resolve().parent, int(sys.argv[1]))


if __name__ == "__main__":
    run(main)
'''


def read_recorded_selection(images_csv: str | os.PathLike) -> tuple[list[int], str]:
    """(image indices in order, selection name) recorded in a make_specs images.csv."""
    try:
        with open(images_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
        selections = {r["selection"] for r in rows}
        if len(selections) != 1:
            raise ValueError(f"selection column holds {sorted(selections)}, one value expected")
        return [int(r["image"]) for r in rows], selections.pop()
    except (OSError, KeyError, ValueError) as exc:
        raise VfbenchError(f"{images_csv}: not a vfbench images.csv ({exc})") from exc


def write_package(root: str | os.PathLike, specs: list[dict], instances: list[dict]) -> None:
    """Write ``root/specs/package.json`` and ``root/specs/generate_properties.py``.

    ``specs``: one {"data", "eps", "images_csv"} per make_specs output (eps as the folder's
    string); ``instances``: one {"onnx", "images_csvs", "images", "timeout_s", "out"} per
    make_instances output (``images``: how many of each eps); paths relative to ``root``, the
    campaign folder (vfbench.layout.specs_package_layout)."""
    root = Path(root)
    recorded = []
    for entry in specs:
        images, selection = read_recorded_selection(root / entry["images_csv"])
        recorded.append({**entry, "images": images, "selection": selection})
    package = {"specs": recorded, "instances": instances,
               "seed": "generate_properties.py SEED rebuilds these files; the images are the "
                       "recorded selection, SEED does not change them"}
    folder = root / "specs"
    with atomic_path(folder / PACKAGE_JSON) as tmp:
        tmp.write_text(json.dumps(package, indent=1) + "\n")
    with atomic_path(folder / SCRIPT_NAME) as tmp:
        tmp.write_text(SCRIPT_TEXT)
        tmp.chmod(0o755)


def generate_properties(specs_folder: str | os.PathLike, seed: int) -> None:
    """Rebuild the package's VNNLIB files, images.csv and instances.csv (see the module doc);
    ``seed`` is VNN-COMP's SEED argument and changes nothing."""
    from vfbench.data import load_dataset
    from vfbench.specs import write_instances, write_specs

    specs_folder = Path(specs_folder)
    root = specs_folder.parent
    try:
        package = json.loads((specs_folder / PACKAGE_JSON).read_text())
        specs, instances = package["specs"], package["instances"]
    except (OSError, ValueError, KeyError) as exc:
        raise VfbenchError(f"{specs_folder / PACKAGE_JSON}: not a vfbench package ({exc})"
                           ) from exc
    datasets = {}
    for entry in specs:
        if entry["data"] not in datasets:
            datasets[entry["data"]] = load_dataset(root / entry["data"])
        dataset = datasets[entry["data"]]
        images_csv = root / entry["images_csv"]
        write_specs(dataset.x_test, dataset.y_test, entry["images"], float(entry["eps"]),
                    dataset.num_classes, images_csv.parent / "vnnlib", images_csv,
                    selection=entry["selection"])
    for entry in instances:
        write_instances(root / entry["onnx"], [root / p for p in entry["images_csvs"]],
                        float(entry["timeout_s"]), root, root / entry["out"],
                        images=entry.get("images"))
    print(f"SEED {seed}: rebuilt {len(specs)} property sets and {len(instances)} instances.csv "
          f"from the recorded image selection (SEED changes nothing)")
