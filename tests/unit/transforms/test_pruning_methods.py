"""Paper 002's pruning methods end to end on small trained MLPs: a smaller network that rebuilds
from its checkpoint, and exactly rho of the weights zero after fine-tuning."""

import copy

import pytest

from vfbench.errors import VfbenchError
from vfbench.io import load_checkpoint, save_checkpoint
from vfbench.models import build_model, count_parameters
from vfbench.transforms.entries import preset_rho
from vfbench.transforms.methods import TRANSFORMS


def _run(method, base, dataset, **options):
    model, ckpt = base
    return TRANSFORMS[method](copy.deepcopy(model), ckpt, dataset, {"method": method, **options},
                              "cpu", None)


def test_neuron_pruning_gives_a_smaller_network_matching_its_report(sparse_mlp, dataset,
                                                                     tmp_path):
    result = _run("neuron_prune", sparse_mlp, dataset, preset="set2", epochs=1)
    report = result.report
    assert report["rho"] == 0.5
    assert report["totals"]["n_pruned"] == 24  # int(0.5 * 48), every layer kept alive
    assert result.arch_kwargs["hidden"] == tuple(s["n_kept"] for s in report["layers"].values())
    assert count_parameters(result.model) == report["after"]["parameters"] \
        < report["before"]["parameters"]
    assert count_parameters(build_model("net1", **result.arch_kwargs)) == \
        report["after"]["parameters"]
    assert report["finetune"]["entry"]["losses"] == {"natural": 1.0}  # sparse_bn dropped
    assert report["lambda_preset"] == 1e-4 and report["lambda_base"] == 1e-2
    assert report["notes"]  # the preset expected another lambda: said, not hidden

    path = tmp_path / "np.pt"
    save_checkpoint(path, model=result.model, arch="net1", arch_kwargs=result.arch_kwargs,
                    config={}, metrics={})
    loaded, _ = load_checkpoint(path)
    assert count_parameters(loaded) == report["after"]["parameters"]


def test_neuron_pruning_set1_depends_on_the_network(sparse_mlp, dataset):
    # paper 002 Table 1: SET1's neuron sparsity rate is 0.75 for NET1 and 0.8 for NET2
    model, ckpt = sparse_mlp
    as_net2 = (model, {**ckpt, "arch": "net2"})  # same widths given, so it builds
    assert _run("neuron_prune", sparse_mlp, dataset, preset="set1", epochs=0).report["rho"] == 0.75
    assert _run("neuron_prune", as_net2, dataset, preset="set1", epochs=0).report["rho"] == 0.8
    assert preset_rho({"preset": "set3", "rho": None}, "net2", "rho_wp") == 0.5


def test_neuron_pruning_needs_sparse_training(mlp, dataset):
    with pytest.raises(VfbenchError, match="sparse_bn"):
        _run("neuron_prune", mlp, dataset, rho=0.5, epochs=0)
    result = _run("neuron_prune", mlp, dataset, rho=0.5, epochs=0, require_sparse_training=False)
    assert result.report["totals"]["n_pruned"] == 24


@pytest.mark.parametrize("preset, rho", [("set1", 0.9), ("set2", 0.7), ("set3", 0.5)])
def test_weight_pruning_zero_count_matches_rho_after_fine_tuning(mlp, dataset, preset, rho):
    result = _run("weight_prune", mlp, dataset, preset=preset, epochs=2)
    weights = [m.weight for m in result.model.modules() if hasattr(m, "weight")
               and m.weight is not None and m.weight.dim() == 2]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == int(rho * total) == result.report["totals"]["zeroed"]
    assert result.report["finetune"]["epochs"] == 2
    assert not any("weight_orig" in k for k in result.model.state_dict())
