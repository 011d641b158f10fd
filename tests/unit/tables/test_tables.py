"""Every table layout built from hand-written records, compared cell by cell.

Two models of one campaign (mnist/net1/natural, transforms none and graft50), records only for
verifier crown at eps 0.02; every other (verifier, eps, train, transform) must come out as "-".
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from results_files import campaign_config, load_results_from_paths

from vfbench.errors import VfbenchError
from vfbench.io import write_json
from vfbench.report import entries, render
from vfbench.report.layouts import TABLES
from vfbench.report.provenance import campaign_provenance, provenance_line
from vfbench.report.selection import eps_label

ROOT = Path(__file__).resolve().parents[3]
CONFIG = {
    "campaign": "unit",
    "verify": {"eps": [0.02, 0.05], "timeout_s": 10, "images": 5, "unstable_bound": "crown",
               "verifiers": {"crown": {"method": "crown"},
                             "bab": {"method": "bab", "timeout": 20}}},
    "tables": {"summary": {}},
}
A = "mnist/net1/natural/none"
B = "mnist/net1/natural/graft50"


def rec(image, status, time_s, n_unstable, error=None):
    return {"image": image, "label": 1, "pred": 1, "eps": 0.02, "verifier": "crown",
            "status": status, "time_s": time_s, "margin_lb": 0.5, "n_relu": 100,
            "n_unstable": n_unstable,
            "unstable_by_site": None if n_unstable is None else {"body.1": n_unstable},
            "domains": 1, "depth": 0, "counterexample": None, "error": error}


# A: VA 20, UNR 25, Time(all) 3.12, Time_U+T 5.5, Time(paper000) 5.0
RECORDS_A = [rec(0, "verified", 1.0, 10), rec(1, "timeout", 10.0, 30),
             rec(2, "falsified", 0.5, 20), rec(3, "misclassified", 0.1, None),
             rec(4, "unknown", 4.0, 40)]
# B: VA 66.67, UNR 3, Time(all) 1.0 (the error is not timed), 1 error
RECORDS_B = [rec(0, "verified", 0.5, 2), rec(1, "verified", 1.5, 4),
             rec(2, "error", 0.0, None, error="boom")]
EVAL_A = {"sa": 0.9, "ra": {"0.02": 0.7, "0.05": 0.4}, "fgsm": {"0.02": 0.5},
          "ra_by_steps": {"50": {"0.02": 0.65}}, "settings": {"pgd": {"steps": 20, "restarts": 1}},
          "provenance": {"git_commit": "abc123"}}
EVAL_B = {"sa": 0.85, "ra": {"0.02": 0.75}, "fgsm": {"0.02": 0.6},
          "settings": {"pgd": {"steps": 20, "restarts": 1}}}


@pytest.fixture
def campaign(tmp_path):
    """The campaign's files in the results layout; returns the four path lists."""
    res = tmp_path / "results" / "unit"
    paths = {"verify": [], "evaluate": [], "train": [], "transform": []}
    for model, records in ((A, RECORDS_A), (B, RECORDS_B)):
        path = res / "verify" / model / "crown" / "eps0.02.parquet"
        path.parent.mkdir(parents=True)
        pd.DataFrame(records).to_parquet(path)
        paths["verify"].append(path)
    for model, ev in ((A, EVAL_A), (B, EVAL_B)):
        path = res / "eval" / model / "metrics.json"
        write_json(path, ev)
        paths["evaluate"].append(path)
    base = res / "models/mnist/net1/natural/base.json"
    write_json(base, {"arch": "net1", "metrics": {"device": "cpu"}})
    paths["train"].append(base)
    report = res / "models" / B / "report.json"
    write_json(report, {"sites": {}})
    paths["transform"].append(report)
    return paths


@pytest.fixture
def results(campaign):
    return load_results_from_paths(CONFIG, **campaign)


def build(results, layout, **options):
    name, (layout, opts) = next(iter(entries.resolve_entries(
        {"t": {"layout": layout, **options}}, entries.TABLE_LAYOUTS, "tables").items()))
    return TABLES[layout](results, opts)


def cells(frame, decimals=2, signed=False):
    """The table as the rendered strings, keyed by (row labels, column labels)."""
    out = {}
    for index, row in frame.iterrows():
        for column, value in row.items():
            out[(index, column)] = render.format_value(value, decimals, signed)
    return out


def test_summary_rows_cover_every_model_verifier_and_eps(results):
    got = cells(build(results, "summary"))
    ran = ("mnist", "net1", "natural", "none", "crown", "0.02")
    expected = {"SA": "90.00", "RA": "70.00", "VA": "20.00", "UNR": "25.00", "Time": "3.12",
                "Images": "5", "Errors": "0"}
    assert {c: got[(ran, c)] for c in expected} == expected
    graft = ("mnist", "net1", "natural", "graft50", "crown", "0.02")
    assert [got[(graft, c)] for c in ("VA", "UNR", "Time", "Errors")] == \
        ["66.67", "3.00", "1.00", "1"]
    # eps 0.05 was evaluated (RA) but never verified; bab never ran
    not_verified = ("mnist", "net1", "natural", "none", "crown", "0.05")
    assert [got[(not_verified, c)] for c in ("SA", "RA", "VA", "UNR", "Time", "Images")] == \
        ["90.00", "40.00", "-", "-", "-", "-"]
    assert got[(("mnist", "net1", "natural", "none", "bab", "0.02"), "VA")] == "-"
    assert len(build(results, "summary")) == 2 * 2 * 2


def test_summary_follows_per_model_eps_and_only_arch(campaign):
    config = {**CONFIG,
              "models": [{"dataset": "mnist", "arch": ["net1"], "train": "natural",
                          "transform": ["graft50"], "eps": [0.02]}],
              "verify": {**CONFIG["verify"],
                         "verifiers": {"crown": {"method": "crown"},
                                       "bab": {"method": "bab", "only_arch": ["cnn_4layer"]}}}}
    frame = build(load_results_from_paths(config, **campaign), "summary")
    assert [i[3:] for i in frame.index] == [
        ("none", "crown", "0.02"), ("none", "crown", "0.05"), ("graft50", "crown", "0.02")]


def test_summary_time_option_and_bad_time(results):
    got = cells(build(results, "summary", time="u+t"))
    assert got[(("mnist", "net1", "natural", "none", "crown", "0.02"), "Time")] == "5.50"
    with pytest.raises(VfbenchError, match="time 'median' unknown"):
        build(results, "summary", time="median")


def test_paper000_table1_uses_paper000_time_and_dashes_missing_methods(results):
    frame = build(results, "paper000_table1", train="natural",
                  methods={"Baseline": "none", "SAP (50%)": "sap", "Grafting (50%)": "graft50"})
    got = cells(frame)
    group = "net1, mnist"
    row = {m: got[(("Baseline",), (group, m))] for m in ("UNR", "VA", "SA", "RA", "Time")}
    assert row == {"UNR": "25.00", "VA": "20.00", "SA": "90.00", "RA": "70.00", "Time": "5.00"}
    assert {got[(("SAP (50%)",), (group, m))] for m in ("UNR", "VA", "SA", "RA", "Time")} == {"-"}
    assert got[(("Grafting (50%)",), (group, "Time"))] == "1.00"
    assert got[(("Grafting (50%)",), (group, "VA"))] == "66.67"


def test_paper000_tableA7_takes_the_largest_eps(results):
    got = cells(build(results, "paper000_tableA7", train="natural", methods={"Baseline": "none"}))
    assert got[(("Baseline",), ("net1, mnist", "RA"))] == "40.00"
    assert got[(("Baseline",), ("net1, mnist", "VA"))] == "-"


def test_paper000_ablation_layouts(results):
    for layout in ("paper000_table2", "paper000_table3", "paper000_table4", "paper000_table5"):
        frame = build(results, layout, train="natural")
        assert list(frame.columns.get_level_values(1)) == ["UNR", "VA", "SA", "RA"]
    got = cells(build(results, "paper000_table5", train="natural"))
    assert got[(("Grafting (A_g(x) = a x + b)",), ("net1, mnist", "UNR"))] == "3.00"
    assert got[(("Grafting (A_g(x) = 0)",), ("net1, mnist", "UNR"))] == "-"


def test_paper000_table6_names_the_training_device(results):
    # training times from the files the real steps write: tests/unit/tables/test_training_time.py
    frame = build(results, "paper000_table6", train="natural")
    assert "trained on cpu" in frame.attrs["notes"]
    assert set(cells(frame).values()) >= {"-"}  # no recorded time here: "-", not a number


def test_paper001_eps_sweep_time_and_time_ut(results):
    frame = build(results, "paper001_table1", methods={"T": "natural", "O": "natural/graft50"})
    got = cells(frame, decimals=1)
    t = ("net1", "T")
    assert got[(("", "Test Acc."), t)] == "90.0"
    sweep = {m: got[(("eps=0.02", m), t)]
             for m in ("UNSAT%", "Stable%", "Time (s)", "Time_U+T (s)", "PGD_20")}
    assert sweep == {"UNSAT%": "20.0", "Stable%": "75.0", "Time (s)": "3.1",
                     "Time_U+T (s)": "5.5", "PGD_20": "70.0"}
    # eps 0.05: attacked by the evaluate step, not verified
    assert got[(("eps=0.05", "UNSAT%"), t)] == "-"
    assert got[(("eps=0.05", "PGD_20"), t)] == "40.0"
    assert got[(("eps=0.02", "Time_U+T (s)"), ("net1", "O"))] == "1.0"


def test_paper001_differences_subtract_the_method_alone(results):
    frame = build(results, "paper001_table2", pairs={"G*": ["natural/graft50", "natural/none"]})
    got = cells(frame, decimals=1, signed=True)
    col = ("net1", "G*")
    assert got[(("", "Test Acc."), col)] == "-5.0"
    assert got[(("eps=0.02", "UNSAT%"), col)] == "+46.7"
    assert got[(("eps=0.02", "Time (s)"), col)] == "-2.1"
    assert got[(("eps=0.02", "Time_U+T (s)"), col)] == "-4.5"
    assert got[(("eps=0.02", "PGD_20"), col)] == "+5.0"
    assert got[(("eps=0.05", "UNSAT%"), col)] == "-"  # neither ran


def test_paper001_tables6_7_print_test_accuracy_as_relative_change(results):
    pairs = {"G*": ["natural/graft50", "natural/none"]}
    col = ("net1", "G*")
    for layout in ("paper001_table6", "paper001_table7"):
        frame = build(results, layout, pairs=pairs)
        got = cells(frame, decimals=1, signed=True)
        assert got[(("", "Test Acc."), col)] == "-5.6"  # (85 - 90) / 90, in percent
        assert got[(("eps=0.02", "UNSAT%"), col)] == "+46.7"  # the others stay differences
        assert any("relative change (%)" in n and "Test Acc." in n for n in frame.attrs["notes"])


def test_table_footer_names_falsifier_image_selection_and_bound_method(results):
    config = {**CONFIG, "verify": {**CONFIG["verify"], "image_selection": "fgsm_agreement",
                                   "verifiers": {"crown": {"method": "crown", "pgd_steps": 0},
                                                 "bab": {"method": "bab"}}}}
    footer = provenance_line(campaign_provenance(
        load_results_from_paths(config)))
    assert "images: 5 (fgsm_agreement)" in footer
    assert "crown = crown bounds, falsifier off" in footer
    assert "bab = bab bounds, falsifier PGD 50x5" in footer  # vfbench.verify.base's default


def test_paper001_table8_counts_and_pgd_columns(results):
    frame = build(results, "paper001_table8", pgd_steps=[50, 20],
                  methods={"Natural": "natural", "Grafted": "natural/graft50"})
    assert list(frame.columns) == ["Test Acc", "UNSAT%", "#UNSAT", "Time", "Time_U+T",
                                   "PGD_50", "PGD_20", "Stable%"]
    got = cells(frame, decimals=1)
    assert [got[(("net1", "Natural"), c)] for c in ("#UNSAT", "PGD_50", "PGD_20", "Stable%")] == \
        ["1", "65.0", "70.0", "75.0"]
    assert [got[(("net1", "Grafted"), c)] for c in ("#UNSAT", "PGD_50", "Stable%")] == \
        ["2", "-", "97.0"]


def test_paper001_table9_and_table11(results):
    got = cells(build(results, "paper001_table9", models={"M1": "mnist/net1"},
                      variants={"1": "natural/none", "2^r[i]": "natural/graft50"}))
    assert got[(("M1", "0.02", "2^r[i]"), "UNSAT%")] == "66.67"
    assert got[(("M1", "0.02", "1"), "Time_U+T")] == "5.50"
    frame = build(results, "paper001_table11", model="mnist/net1",
                  variants={"0.0": "natural/none", "1.0": "natural/graft50"})
    assert [i[0] for i in frame.index] == ["Test Acc", "UNSAT%", "Stable%", "Time (s)",
                                           "Time_U+T (s)", "PGD_20"]
    got = cells(frame, decimals=1)
    assert got[(("Stable%",), "1.0")] == "97.0"
    assert got[(("Time (s)",), "0.0")] == "3.1"


def test_paper002_tables(results):
    rows = [["SET1", "Baseline", "natural/none"], ["SET1", "NP", "natural/graft50"],
            ["SET2", "WP", "natural/wp-set2"]]
    got = cells(build(results, "paper002_table2", bases={"NET1": "net1"}, rows=rows), decimals=3)
    assert [got[(("NET1", "SET1", "Baseline"), c)] for c in ("Accuracy", "Robustness")] == \
        ["0.900", "0.500"]
    assert got[(("NET1", "SET2", "WP"), "Accuracy")] == "-"
    got = cells(build(results, "paper002_table5", bases={"NET1": "net1"}, rows=rows), decimals=0)
    assert got[(("NET1", "SET1", "Baseline"), ("mnist", "crown"))] == "2"
    assert got[(("NET1", "SET1", "NP"), ("mnist", "crown"))] == "2"
    assert got[(("NET1", "SET1", "Baseline"), ("mnist", "bab"))] == "-"
    got = cells(build(results, "paper002_table6", bases={"NET1": "net1"}, rows=rows))
    assert got[(("NET1", "SET1", "Baseline"), "mnist")] == "3.12"
    assert got[(("NET1", "SET1", "NP"), "mnist")] == "1.00"
    assert got[(("NET1", "SET2", "WP"), "mnist")] == "-"


def test_default_layouts_build_on_a_campaign_that_ran_none_of_their_models(results):
    for layout in TABLES:
        frame = build(results, layout)
        assert frame.size > 0, layout


def test_an_empty_tables_block_asks_for_no_table():
    assert entries.table_entries({"tables": {}}) == {}
    assert entries.table_entries({"tables": []}) == {}
    for config in ({}, {"tables": None}):
        assert list(entries.table_entries(config)) == ["summary"]


def test_entries_validate_layouts_and_options():
    with pytest.raises(VfbenchError, match="tables.x: unknown layout 'x'"):
        entries.resolve_entries({"x": {}}, entries.TABLE_LAYOUTS, "tables")
    with pytest.raises(VfbenchError, match=r"unknown options \['colour'\]"):
        entries.resolve_entry("summary", {"colour": "red"}, entries.TABLE_LAYOUTS)
    resolved = entries.table_entries({"tables": {"fmnist_t4": {"layout": "paper001_table1",
                                                               "dataset": "fmnist"}}})
    assert resolved["fmnist_t4"][0] == "paper001_table1"
    assert resolved["fmnist_t4"][1]["dataset"] == "fmnist"
    assert entries.table_entries({})["summary"][0] == "summary"


def test_writer_renders_csv_markdown_latex_and_provenance(results, tmp_path):
    frame = build(results, "paper000_table1", train="natural",
                  methods={"Baseline": "none", "SAP (50%)": "sap"})
    prov = campaign_provenance(results)
    paths = render.write_table(frame, tmp_path / "out", "t1", title="Table 1 (UNR %)",
                               decimals=2, signed=False, provenance=prov)
    assert sorted(p.suffix for p in paths) == [".csv", ".json", ".md", ".tex"]
    md = (tmp_path / "out/t1.md").read_text()
    assert "| Baseline | 25.00 | 20.00 | 90.00 | 70.00 | 5.00 |" in md
    assert "| SAP (50%) | - | - | - | - | - |" in md
    assert "campaign unit" in md and "UNR/Stable% from crown bounds" in md
    assert "timeout crown 10 s, bab 20 s" in md and "PGD 20 steps x 1 restarts" in md
    tex = (tmp_path / "out/t1.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{5}{c}{net1, mnist}" in tex and r"\cmidrule(lr){2-6}" in tex
    assert r"Table 1 (UNR \%)" in tex and r"SAP (50\%) & - & - & - & - & -" in tex
    csv = pd.read_csv(tmp_path / "out/t1.csv", dtype=str)
    assert list(csv.columns)[:2] == ["Method", "net1, mnist / UNR"]
    assert csv.iloc[1].tolist() == ["SAP (50%)", "-", "-", "-", "-", "-"]
    sidecar = json.loads((tmp_path / "out/t1.json").read_text())
    assert sidecar["unstable_bound"] == "crown" and sidecar["input_commits"] == ["abc123"]
    assert sidecar["cells"][0]["net1, mnist / VA"] == pytest.approx(20.0)
    assert sidecar["cells"][1]["net1, mnist / VA"] is None
    assert len(sidecar["config_sha256"]) == 12


def test_format_and_eps_labels():
    assert render.format_value(None, 2) == "-"
    assert render.format_value(3.14159, 1, signed=True) == "+3.1"
    assert render.format_value(-0.01, 1, signed=True) == "0.0"
    assert render.format_value(7, 2) == "7"
    assert eps_label(2 / 255) == "2/255" and eps_label(0.2) == "0.2"
    assert render.latex_escape("a_b & 5%") == r"a\_b \& 5\%"


def test_out_of_range_fraction_is_an_error(campaign, tmp_path):
    bad = tmp_path / "results/unit/eval/mnist/net1/natural/none/metrics.json"
    write_json(bad, {**EVAL_A, "sa": 90.0})
    results = load_results_from_paths(CONFIG, evaluate=[bad])
    with pytest.raises(VfbenchError, match="sa=90.0 is not a fraction"):
        build(results, "summary")


def test_tables_cli_writes_every_configured_table(campaign, tmp_path):
    """The CLI reads every file the config names (vfbench.layout.report_inputs)."""
    config = campaign_config(
        {**CONFIG, "tables": {"summary": {}, "p1": {"layout": "paper001_table1",  # its methods
                                                    "methods": {"N": "natural"}}},  # must exist
         "verify": {**CONFIG["verify"], "eps": [0.02],
                    "verifiers": {"crown": {"method": "crown"}}}},
        tmp_path / "results", [A, B],
        {"none": {"method": "none"}, "graft50": {"method": "graft", "selection": "random"}})
    write_json(tmp_path / f"results/unit/models/{A}/report.json", {"sites": {}})
    out = tmp_path / "tables"
    cmd = [sys.executable, str(ROOT / "scripts/tables.py"), "--config-json", json.dumps(config),
           "--out-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{e}" for n in ("summary", "p1") for e in ("csv", "md", "tex", "json"))
    missing = tmp_path / f"results/unit/verify/{A}/crown/eps0.02.parquet"
    missing.unlink()
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and f"{missing}: verification parquet not found" in bad.stderr
