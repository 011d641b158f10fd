"""Tables read from the files the real steps write: scripts/train_base.py (base.json) and
scripts/transform.py (report.json), run in-process on a tiny model. Paper 000 Table 6 (training
time) and paper 002 Table 4 (hidden neurons and weights)."""

import json

import pytest
from results_files import load_results_from_paths
from run_script import run_script
from tiny_data import write_tiny_npz

from vfbench.io import read_json, write_json
from vfbench.report.entries import TABLE_LAYOUTS
from vfbench.report.layouts import TABLES


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """base.json of a 1-epoch net1 and report.json of its 1-epoch weight pruning, in the
    campaign's results layout."""
    res = tmp_path_factory.mktemp("table6") / "results" / "unit"
    data = write_tiny_npz(res / "data" / "tiny.npz", 64, 16)
    write_json(data.with_suffix(".json"), {"name": "tiny"})
    folder = res / "models" / "tiny" / "net1" / "natural"
    folder.mkdir(parents=True)
    run_script("train_base.py", "--data", data, "--arch", "net1",
            "--arch-options-json", json.dumps({"hidden": [8, 8]}),
            "--entry-json", json.dumps({"epochs": 1, "batch_size": 32}),
            "--out", folder / "base.pt", "--out-metrics", folder / "base.json",
            "--log-csv", folder / "base.csv", "--device", "cpu", "--threads", "1")
    (folder / "wp").mkdir()
    run_script("transform.py", "--checkpoint", folder / "base.pt", "--data", data,
            "--entry-json", json.dumps({"method": "weight_prune", "rho": 0.5, "epochs": 1}),
            "--out", folder / "wp" / "model.pt", "--out-report", folder / "wp" / "report.json",
            "--device", "cpu", "--threads", "1")
    return folder


CONFIG = {"campaign": "unit", "verify": {"eps": [0.1], "verifiers": {"crown": {"method": "crown"}}}}


def test_training_time_is_base_plus_transform_seconds(written):
    results = load_results_from_paths(CONFIG, train=[written / "base.json"],
                                      transform=[written / "wp" / "report.json"])
    options = {**TABLE_LAYOUTS["paper000_table6"].defaults, "train": "natural",
               "methods": {"Baseline": "none", "WP": "wp"}}
    frame = TABLES["paper000_table6"](results, options)
    column = ("net1, tiny", "Training Time (h)")
    base = read_json(written / "base.json")["metrics"]["seconds_total"]
    fine = read_json(written / "wp" / "report.json")["seconds"]
    assert frame.loc[("Baseline",), column] == pytest.approx(base / 3600)
    assert frame.loc[("WP",), column] == pytest.approx((base + fine) / 3600)
    assert fine > 0 and base > 0


def test_paper002_table4_sizes_per_network(written):
    (written / "none").mkdir(exist_ok=True)
    out = written / "none"
    run_script("transform.py", "--checkpoint", written / "base.pt", "--data",
            written.parents[3] / "data" / "tiny.npz", "--entry-json", '{"method": "none"}',
            "--out", out / "model.pt", "--out-report", out / "report.json",
            "--device", "cpu", "--threads", "1")
    results = load_results_from_paths(CONFIG, transform=[written / "none" / "report.json",
                                                         written / "wp" / "report.json"])
    options = {**TABLE_LAYOUTS["paper002_table4"].defaults, "bases": {"NET1": "net1"},
               "rows": [["SET1", "Baseline", "natural/none"], ["SET1", "WP", "natural/wp"],
                        ["SET1", "NP", "natural/np"]]}
    frame = TABLES["paper002_table4"](results, options)
    assert list(frame.columns) == ["# HL Neurons", "# Weights"]
    # net1 hidden [8, 8] on 16 inputs, 10 outputs: 16*8 + 8*8 + 8*10 = 272 weights
    assert frame.loc[("NET1", "SET1", "Baseline")].tolist() == [16, 272]
    assert frame.loc[("NET1", "SET1", "WP")].tolist() == [16, 272 - int(0.5 * 272)]
    assert frame.loc[("NET1", "SET1", "NP")].isna().all()  # not run: "-"
