"""Every training method, run briefly on tiny data, lowers its own loss; NBC training makes the
network's neurons more consistent inside the ball than natural training does."""

import pytest
import torch

from vfbench.loss_options import resolve_loss_options
from vfbench.losses import LOSSES, Batch, mean_nbc
from vfbench.train import train_model

ADAM = {"name": "adam", "lr": 1e-2}

# method -> (losses, loss_options); the term under test is the method's name
METHODS = {
    "natural": ({"natural": 1.0}, {}),
    "pgd": ({"pgd": 1.0}, {"pgd": {"eps": 0.05}}),
    "trades": ({"trades": 1.0}, {"trades": {"eps": 0.05}}),
    "fat_gradalign": ({"fat_gradalign": 1.0}, {"fat_gradalign": {"eps": 0.05}}),
    "crown_ibp": ({"crown_ibp": 1.0},
                  {"crown_ibp": {"eps": 0.02, "kappa_start": 0.0, "kappa_end": 0.0}}),
    "nbc": ({"natural": 1.0, "nbc": 1.0}, {"nbc": {"eps": 0.05}}),
    "relu_stable": ({"pgd": 1.0, "relu_stable": 1.0},
                    {"pgd": {"eps": 0.05},
                     "relu_stable": {"eps": 0.05, "rs_weight": 1e-2, "l1_weight": 1e-4}}),
    "sparse_bn": ({"natural": 1.0, "sparse_bn": 0.1}, {}),
}


def test_every_registered_loss_has_a_method_test():
    assert set(METHODS) == set(LOSSES)


def _own_loss(model, dataset, name, options):
    """The term's value on the whole tiny training set, with fixed random starts."""
    torch.manual_seed(123)
    x, y = dataset.tensors("train")
    return LOSSES[name].fn(Batch(model, x, y), resolve_loss_options(name, options)).item()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_short_training_lowers_the_methods_own_loss(method, dataset, make_model):
    losses, options = METHODS[method]
    model = make_model("net1")
    before = _own_loss(model.train(), dataset, method, options.get(method))
    entry = {"losses": losses, "loss_options": options, "epochs": 5, "batch_size": 32,
             "optimizer": ADAM, "schedule": {"name": "none"}}
    result = train_model(model, dataset, entry, "cpu", seed=0)
    after = _own_loss(model.train(), dataset, method, options.get(method))
    assert after < before, f"{method}: {before} -> {after}"
    assert result["history"][-1][f"loss_{method}"] < result["history"][0][f"loss_{method}"]


@pytest.mark.parametrize("step", ["gradient", "sign"])
def test_nbc_training_raises_neuron_behaviour_consistency(step, dataset, make_model):
    """Mean NBC(x, x') (Algorithm 1, x' from Algorithm 2) after NBC training vs natural training,
    same data, seed and schedule, at paper 001's MNIST radius."""
    eps = 0.3
    x, _ = dataset.tensors("train")
    consistency = {}
    for name, losses in (("natural", {"natural": 1.0}), ("nbc", {"natural": 1.0, "nbc": 1.0})):
        model = make_model("net1")
        entry = {"losses": losses, "loss_options": {"nbc": {"eps": eps, "step": step}}, "epochs": 5,
                 "batch_size": 32, "optimizer": ADAM, "schedule": {"name": "none"}}
        train_model(model, dataset, entry, "cpu", seed=0)
        torch.manual_seed(7)
        consistency[name] = mean_nbc(model, x, eps, step=step)
    assert consistency["nbc"] > consistency["natural"], consistency


def test_cnn_methods_run_on_convolutional_models(dataset, make_model):
    """The attack and bound terms on a conv net (one epoch each): finite, logged losses."""
    model = make_model("cnn_4layer")
    losses = {"trades": 1.0, "nbc": 0.5, "relu_stable": 1.0, "crown_ibp": 0.5}
    options = {"trades": {"eps": 0.05}, "nbc": {"eps": 0.05, "step": "sign"},
               "crown_ibp": {"eps": 0.01}}
    entry = {"losses": losses, "loss_options": options, "epochs": 1, "batch_size": 64,
             "optimizer": ADAM, "schedule": {"name": "none"}}
    row = train_model(model, dataset, entry, "cpu", seed=0)["history"][0]
    for name in losses:
        assert torch.isfinite(torch.tensor(row[f"loss_{name}"]))
