"""Transform entries: defaults, rejected options, and the score outputs an entry needs."""

import pytest

from vfbench.errors import VfbenchError
from vfbench.transforms import DEFAULTS, needs_scores, resolve_transform_entry
from vfbench.transforms.methods import TRANSFORMS


def test_every_method_has_its_options_and_resolving_is_idempotent():
    assert set(TRANSFORMS) == set(DEFAULTS)
    entries = [{"method": "none"}, {"method": "graft", "eps": 0.1, "ratio": 0.3},
               {"method": "activation_prune", "significance": "hydra"},
               {"method": "neuron_prune", "preset": "set1"}, {"method": "weight_prune", "rho": 0.9}]
    for entry in entries:
        resolved = resolve_transform_entry(entry)
        assert resolve_transform_entry(resolved) == resolved
        assert set(resolved) == {"method", *DEFAULTS[entry["method"]]}


@pytest.mark.parametrize("entry, message", [
    ({"method": "prune"}, "unknown transform method 'prune'"),
    ({"ratio": 0.5}, "'method'"),
    ({"method": "graft", "eps": 0.1, "gamma": 2}, r"unknown options \['gamma'\]"),
    ({"method": "graft"}, "needs the eps"),
    ({"method": "graft", "eps": 0.1, "ratio": 1.5}, "ratio"),
    ({"method": "graft", "eps": 0.1, "selection": "best"}, "selection: 'best' unknown"),
    ({"method": "graft", "eps": 0.1, "bound": "dp"}, "bound 'dp' unknown"),
    ({"method": "graft", "eps": 0.1, "activation": "zero", "tune": "graft"}, "freezes"),
    ({"method": "graft", "eps": 0.1, "finetune": {"epochs": 3}}, "epochs"),
    ({"method": "graft", "eps": 0.1, "finetune": {"optimiser": {}}}, "optimiser"),
    ({"method": "graft", "eps": 0.1, "extra_losses": {"l2": 1.0}}, "unknown loss 'l2'"),
    ({"method": "neuron_prune"}, "either preset"),
    ({"method": "neuron_prune", "preset": "set4"}, "preset: 'set4' unknown"),
    ({"method": "weight_prune", "rho": 0.5, "preset": "set1"}, "not both"),
    ({"method": "weight_prune", "rho": 1.0}, "below 1"),
    ({"method": "none", "ratio": 0.5}, "unknown options"),
    ({"method": "activation_prune", "hydra_images": "all"}, "hydra_images: 'all'"),
    ({"method": "activation_prune", "hydra_images": 0}, "hydra_images: 0"),
    ({"method": "activation_prune", "hydra_images": 2.5}, "hydra_images: 2.5"),
    ({"method": "activation_prune", "hydra_loss": "pgd"}, "hydra_loss: 'pgd' unknown"),
])
def test_bad_entries_name_what_is_wrong(entry, message):
    with pytest.raises(VfbenchError, match=message):
        resolve_transform_entry(entry)


def test_needs_scores_lists_the_score_ids_the_entry_reads():
    assert needs_scores({"method": "graft", "eps": 0.1}) == ["instability-crown-eps0.1-n1000",
                                                             "gap-n1000"]
    assert needs_scores({"method": "graft", "eps": 0.1, "selection": "ru", "bound": "ibp",
                         "images": 50}) == ["instability-ibp-eps0.1-n50"]
    assert needs_scores({"method": "graft", "selection": "neg_rs", "significance": "sap"}) == \
        ["sap-n1000"]
    assert needs_scores({"method": "graft", "selection": "random"}) == []
    assert needs_scores({"method": "activation_prune", "significance": "hydra", "ratio": 0.3}) \
        == ["hydra-train-base-keep0.7-e5"]
    assert needs_scores({"method": "activation_prune", "significance": "random"}) == []
    assert needs_scores({"method": "neuron_prune", "preset": "set2"}) == []


def test_every_hydra_option_gives_its_own_score_id():
    """Two Hydra variants never share a cached score file."""
    variants = [{}, {"hydra_images": 500}, {"hydra_images": 1000}, {"hydra_loss": "natural"},
                {"hydra_images": 500, "hydra_loss": "natural"}, {"hydra_epochs": 20},
                {"ratio": 0.3}]
    ids = [needs_scores({"method": "activation_prune", "significance": "hydra", **v})[0]
           for v in variants]
    assert len(set(ids)) == len(ids)
    assert ids[:4] == ["hydra-train-base-keep0.5-e5", "hydra-n500-base-keep0.5-e5",
                       "hydra-n1000-base-keep0.5-e5", "hydra-train-natural-keep0.5-e5"]
    # the images option of r_u / GAP / SAP does not reach Hydra
    assert needs_scores({"method": "activation_prune", "significance": "hydra",
                         "images": 50}) == ids[:1]
