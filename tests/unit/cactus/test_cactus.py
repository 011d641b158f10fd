"""The VNN-COMP score table and cactus plot, and the benchmark-report command."""

import numpy as np
from matplotlib.figure import Figure

from vfbench.cactus import draw_cactus, score_table, solved_times
from vfbench.cli import main


def test_score_table_counts_and_scores_against_a_reference():
    runs = {"a": {1: "unsat", 2: "sat", 3: "timeout", 4: "unknown", 5: "error", 6: "sat"},
            "b": {1: "verified", 2: "falsified", 3: "verified", 4: "misclassified"}}
    reference = {1: "unsat", 2: "sat", 3: "unsat", 6: "unsat"}
    table = score_table(runs, reference).set_index("verifier")
    a, b = table.loc["a"], table.loc["b"]
    assert (a["verified"], a["falsified"], a["timeout"], a["unknown"], a["error"]) == (1, 2, 1,
                                                                                       1, 1)
    assert a["wrong"] == 1 and a["score"] == 10 * 2 - 150  # instance 6: sat against unsat
    assert b["instances"] == 3 and b["wrong"] == 0 and b["score"] == 30  # misclassified skipped
    assert score_table(runs)["wrong"].tolist() == [0, 0]


def test_cactus_counts_solved_instances_only():
    assert solved_times(["sat", "timeout", "verified", "unknown"], [3, 1, 2, 0.5]).tolist() \
        == [2, 3]
    fig = Figure()
    ax = fig.add_subplot()
    draw_cactus(ax, {"v": (["sat", "unsat", "timeout"], [0.5, 2.0, 60.0])}, timeout_s=60)
    (line,) = ax.get_lines()[:1]
    assert ax.get_xscale() == "log" and line.get_ydata().max() == 2


def test_benchmark_report_command(tmp_path):
    rows = {"bab": ["b,n.onnx,p1.vnnlib,0.0,unsat,1.5", "b,n.onnx,p2.vnnlib,0.0,sat,0.2"],
            "milp": ["b,n.onnx,p1.vnnlib,0.0,sat,3.0", "b,n.onnx,p2.vnnlib,0.0,timeout,60"]}
    for name, lines in rows.items():
        (tmp_path / f"results_{name}.csv").write_text("\n".join(lines) + "\n")
    code = main(["benchmark-report", str(tmp_path / "results_bab.csv"),
                 str(tmp_path / "results_milp.csv"), "--reference",
                 str(tmp_path / "results_bab.csv"), "--out-dir", str(tmp_path / "out")])
    assert code == 0
    assert (tmp_path / "out/cactus.png").stat().st_size > 0
    md = (tmp_path / "out/scores.md").read_text()
    assert "| milp |" in md
    scores = (tmp_path / "out/scores.csv").read_text().splitlines()
    assert scores[2].split(",")[-2:] == ["1", "-150"]  # milp: one wrong verdict
    assert np.isfinite(float(scores[1].split(",")[-1]))
