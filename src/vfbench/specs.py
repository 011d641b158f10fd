"""The campaign's properties: which test images (the image selections), one VNNLIB robustness
property per (image, eps) with the ``images.csv`` that lists them, the first images a smaller run
verifies, and each model's VNN-COMP ``instances.csv``. Light (no torch at import), so the jobs
that only read or list specs start fast.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path
from vfbench.properties import robustness_property
from vfbench.vnnlib import vnnlib_text as property_vnnlib

# --- VNNLIB ---------------------------------------------------------------------------------

def vnnlib_text(x: np.ndarray, label: int, eps: float, num_classes: int) -> str:
    """Robustness property in VNN-COMP form (``vfbench.properties.robustness_property``): the
    input box is the eps ball around ``x`` clipped to [0, 1]; the asserted (unsafe) region is
    'some other class scores at least the label'. Numbers in positional notation."""
    return property_vnnlib(robustness_property(x, label, eps, num_classes))


# --- which test images become properties ------------------------------------------------------

def _first(y_test, n, num_classes, fgsm_robust):
    return list(range(n))


def _class_balanced(y_test, n, num_classes, fgsm_robust):
    """The first n / num_classes test images of every class (paper 001: 100 per class on MNIST
    and FMNIST, 20 on CIFAR), rank by rank: every class's first image (in test-split order),
    then every class's second, ...; so the first k * num_classes of them are this selection's
    pick of that size (a run on fewer images, ``run_images``)."""
    if n % num_classes:
        raise VfbenchError(f"verify.images = {n}: class_balanced needs a multiple of the "
                           f"{num_classes} classes (k images per class)")
    per_class = n // num_classes
    by_class = []
    for label in range(num_classes):
        found = np.flatnonzero(np.asarray(y_test) == label)[:per_class]
        if len(found) < per_class:
            raise VfbenchError(f"class_balanced: class {label} has only {len(found)} test "
                               f"images, {per_class} wanted")
        by_class.append(found.tolist())
    return [int(images[rank]) for rank in range(per_class) for images in by_class]


def _fgsm_agreement(y_test, n, num_classes, fgsm_robust):
    """Paper 002 Section 5.1: the first n test images on which FGSM's outcome (an adversarial
    found, or not) is the same for every variant of a network (Baseline, Sparse, WP, NP);
    ``fgsm_robust`` maps each network (arch) to its (variants, images) matrix, True where FGSM
    found none. Outcomes may differ between networks: the paper picks images per network. The
    specs are per dataset, so the images chosen are those on which every network's variants
    agree. A misclassified clean image counts as found, as in Foolbox."""
    if not fgsm_robust:
        raise VfbenchError("fgsm_agreement needs the models' FGSM outcomes (make_specs --models)")
    agree = np.logical_and.reduce([robust.all(axis=0) | (~robust).all(axis=0)
                                   for robust in fgsm_robust.values()])
    chosen = np.flatnonzero(agree)[:n].tolist()
    if len(chosen) < n:
        counts = ", ".join(f"{name}: {len(robust)}" for name, robust in fgsm_robust.items())
        raise VfbenchError(f"fgsm_agreement: FGSM agrees across the variants of each network "
                           f"({counts}) on only {len(chosen)} test images, {n} wanted")
    return chosen


# name -> select(y_test, n, num_classes, fgsm_robust or None) -> test-image indices
IMAGE_SELECTIONS = {"first": _first, "class_balanced": _class_balanced,
                    "fgsm_agreement": _fgsm_agreement}


def select_images(selection: str, y_test: np.ndarray, n: int, num_classes: int,
                  fgsm_robust: dict[str, np.ndarray] | None = None) -> list[int]:
    """Indices of the ``n`` test images ``selection`` (an IMAGE_SELECTIONS key) picks;
    ``fgsm_robust``: network -> (variants, images) FGSM outcomes (``fgsm_robust_matrix``)."""
    if selection not in IMAGE_SELECTIONS:
        raise VfbenchError(f"unknown image selection {selection!r}; known: "
                           f"{sorted(IMAGE_SELECTIONS)}")
    if n > len(y_test):
        raise VfbenchError(f"verify.images = {n} but the test split has only {len(y_test)} images")
    return IMAGE_SELECTIONS[selection](y_test, n, num_classes, fgsm_robust)


def fgsm_robust_matrix(models: list, x_test: np.ndarray, y_test: np.ndarray,
                       eps: float, batch_size: int = 500) -> np.ndarray:
    """(models, images) bool: the model classifies the image and its FGSM point at ``eps``
    correctly. ``x_test`` holds uint8 pixels. (torch is imported here: only fgsm_agreement's
    make_specs job needs it.)"""
    import torch

    from vfbench.attacks import fgsm_attack

    rows = []
    for model in models:
        model = model.cpu().eval()
        robust = []
        for start in range(0, len(y_test), batch_size):
            x = torch.from_numpy(x_test[start:start + batch_size].astype(np.float32) / 255.0)
            y = torch.from_numpy(np.asarray(y_test[start:start + batch_size], dtype=np.int64))
            x_adv = fgsm_attack(model, x, y, eps)
            with torch.no_grad():
                ok = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)
            robust.append(ok.numpy())
        rows.append(np.concatenate(robust))
    return np.stack(rows)


def write_specs(x_test: np.ndarray, y_test: np.ndarray, image_indices: list[int], eps: float,
                num_classes: int, out_dir: str | os.PathLike,
                images_csv: str | os.PathLike, selection: str = "first") -> None:
    """One VNNLIB per image in ``out_dir`` and ``images_csv`` (image, label, vnnlib, selection)
    listing them; ``selection`` (how the images were picked) is recorded in both.

    ``x_test`` holds uint8 pixels; the property is on pixel/255, exactly what the model sees.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for image in image_indices:
        x = x_test[image].astype(np.float32) / 255.0
        label = int(y_test[image])
        path = out_dir / f"img{image}.vnnlib"
        with atomic_path(path) as tmp:
            tmp.write_text(f"; test image {image}, image selection {selection}\n"
                           + vnnlib_text(x, label, eps, num_classes))
        rows.append({"image": image, "label": label, "vnnlib": path.name,
                     "selection": selection})
    with atomic_path(images_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label", "vnnlib", "selection"])
        writer.writeheader()
        writer.writerows(rows)


def read_images_csv(path: str | os.PathLike) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            return [{"image": int(r["image"]), "label": int(r["label"]), "vnnlib": r["vnnlib"]}
                    for r in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError) as exc:
        raise VfbenchError(f"{path}: not a vfbench images.csv ({exc})") from exc


def run_images(images_csv: str | os.PathLike, count: int) -> list[dict]:
    """The first ``count`` rows of a make_specs images.csv: the images one verification run
    verifies (its model's ``images``, at most its verifier's). A class_balanced prefix must hold
    as many images of every class (the selection lists them rank by rank)."""
    from vfbench.specs_package import read_recorded_selection

    rows = read_images_csv(images_csv)
    if not 0 < count <= len(rows):
        raise VfbenchError(f"{images_csv}: {len(rows)} images, a run on {count} asked for")
    chosen = rows[:count]
    if read_recorded_selection(images_csv)[1] == "class_balanced":
        per_class = np.bincount([r["label"] for r in rows])
        counts = np.bincount([r["label"] for r in chosen], minlength=len(per_class))
        if len(set(counts[per_class > 0].tolist())) != 1:
            raise VfbenchError(
                f"{images_csv}: its first {count} class_balanced images are not as many of "
                f"every class (per class: {counts.tolist()}); use a multiple of the classes, "
                "with specs listed rank by rank")
    return chosen


# VNN-COMP's rule: the timeouts of one benchmark's instances add up to at most 6 hours
MAX_BENCHMARK_TIMEOUT_S = 6 * 3600


def write_instances(onnx_path, images_csvs: list, timeout_s: float, root, out_csv,
                    images: int | None = None) -> int:
    """VNN-COMP instances.csv (no header: onnx,vnnlib,timeout), paths relative to ``root``; one
    model's instances.csv is one benchmark, of the first ``images`` images of each eps (all when
    None; ``run_images``). Returns how many images of each eps it lists.

    When images x eps x timeout exceeds MAX_BENCHMARK_TIMEOUT_S, only the first
    floor(6 h / (eps x timeout)) images of each eps (in the recorded selection's order) are
    listed (a warning on stderr says so); if not even one image fits, a VfbenchError, no file."""
    root = Path(root)
    per_eps = [(Path(images_csv).parent / "vnnlib",
                read_images_csv(images_csv) if images is None else run_images(images_csv, images))
               for images_csv in images_csvs]
    keep = max(len(rows) for _, rows in per_eps)
    total_s = sum(len(rows) for _, rows in per_eps) * timeout_s
    if total_s > MAX_BENCHMARK_TIMEOUT_S:
        keep = int(MAX_BENCHMARK_TIMEOUT_S // (len(per_eps) * timeout_s))
        if keep == 0:
            raise VfbenchError(
                f"{out_csv}: {len(per_eps)} eps x timeout {timeout_s:g} s exceeds VNN-COMP's "
                f"{MAX_BENCHMARK_TIMEOUT_S / 3600:g} h per benchmark even for one image; lower "
                f"the timeout (verify.timeout_s, a verifier's timeout) or the eps list")
        print(f"warning: {out_csv}: {sum(len(r) for _, r in per_eps)} properties x "
              f"{timeout_s:g} s = {total_s / 3600:.3g} h > VNN-COMP's "
              f"{MAX_BENCHMARK_TIMEOUT_S / 3600:g} h per benchmark: listing the first {keep} "
              f"images of each of the {len(per_eps)} eps", file=sys.stderr)
    rows = []
    for folder, images in per_eps:
        for row in images[:keep]:
            rows.append([os.path.relpath(onnx_path, root),
                         os.path.relpath(folder / row["vnnlib"], root), f"{timeout_s:g}"])
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return keep
