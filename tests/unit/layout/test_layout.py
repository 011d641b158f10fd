"""vfbench.layout: one function per artifact gives its path from ids and, without ids, the
Snakemake pattern of the same path; parse() reads the ids back."""

import re
from pathlib import Path

import pytest

from vfbench import layout
from vfbench.config import expand_models, load_config

REPO = Path(__file__).resolve().parents[3]

# ids with every character the wildcards allow: an arch with its options hash, '+' and '-'
MODEL = "cifar10/conv_big-0123abcd/trades+nbc_c1/np-set1"
BASE = "cifar10/conv_big-0123abcd/trades+nbc_c1"


@pytest.mark.parametrize("kind, ids, expected", [
    ("verify", (MODEL, "bab_cifar", 2 / 255),
     f"verify/{MODEL}/bab_cifar/eps0.00784313725490196.parquet"),
    ("evaluate", (MODEL,), f"eval/{MODEL}/metrics.json"),
    ("train", (BASE,), f"models/{BASE}/base.json"),
    ("transform", (MODEL,), f"models/{MODEL}/report.json"),
    ("scores", (BASE, "ru_crown_eps0.1"), f"models/{BASE}/scores/ru_crown_eps0.1.npz"),
])
def test_paths_round_trip_through_parse(kind, ids, expected):
    path = layout.PARSABLE[kind](*ids)
    assert path == expected
    fields = layout.parse(kind, path)
    assert layout.PARSABLE[kind]().format(**fields) == path  # the pattern, filled in
    assert layout.BASE.format(**fields) == BASE
    if kind in ("verify", "evaluate", "transform"):
        assert layout.model_id(fields) == MODEL


def test_without_ids_each_function_is_its_snakemake_pattern():
    assert layout.verify_shard() == \
        "verify/{dataset}/{arch}/{train}/{transform}/{verifier}/eps{eps}/shard{shard}.jsonl"
    assert layout.images_csv() == "specs/{dataset}/eps{eps}/images.csv"
    assert layout.score_file() == "models/{dataset}/{arch}/{train}/scores/{score}.npz"
    assert layout.log("verify_shard", layout.MODEL, layout.VERIFIER) == \
        "logs/verify_shard/{dataset}/{arch}/{train}/{transform}/{verifier}.log"
    assert layout.log("tables") == "logs/tables.log"
    # every wildcard of every pattern has its constraint
    for fn in (layout.verify_shard, layout.score_file, layout.vnnlib_folder, layout.data_card):
        assert set(re.findall(r"\{(\w+)\}", fn())) <= set(layout.WILDCARD_CONSTRAINTS)


def test_parse_rejects_what_is_not_that_kind():
    for kind, path in (("verify", f"eval/{MODEL}/metrics.json"),
                       ("verify", f"verify/{BASE}/crown/eps0.1.parquet"),  # a part short
                       ("train", f"models/{MODEL}/base.json"),
                       ("scores", f"models/{BASE}/scores/x.json")):
        with pytest.raises(Exception, match=f"not a {kind} output"):
            layout.parse(kind, path)


def test_eps_path_part_roundtrips():
    for eps in (0.02, 0.1, 2 / 255, 8 / 255):
        assert float(layout.format_eps(eps)) == eps
    assert layout.format_eps("{eps}") == "{eps}"


def test_report_inputs_of_the_default_campaign():
    config = load_config(REPO / "config/config.yaml")
    inputs = layout.report_inputs(config)
    models = expand_models(config)
    assert inputs["evaluate"] == [(m.id, f"eval/{m.id}/metrics.json") for m in models]
    assert inputs["train"] == [(m.base_id, f"models/{m.base_id}/base.json") for m in models]
    for model_id, path in inputs["verify"]:
        assert layout.model_id(layout.parse("verify", path)) == model_id


def test_the_campaign_folder_of_an_artifact():
    path = f"results/c/{layout.instances_csv(MODEL)}"
    assert layout.folder_of(path, layout.instances_csv(MODEL)) == "results/c"
    with pytest.raises(Exception, match="not at specs/package.json"):
        layout.folder_of(path, layout.SPECS_PACKAGE)
