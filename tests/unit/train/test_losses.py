"""The loss terms' building blocks: options, NBC (paper 001 Alg. 1-2), interval bounds and the
L1 scaling of ReLU-stable training, certified bounds, GradAlign."""

import pytest
import torch
from torch import nn

from vfbench.errors import VfbenchError
from vfbench.loss_options import resolve_loss_options
from vfbench.losses import (
    Batch,
    _hidden_layer_weights,
    _l1_scaled_layers,
    ball_box,
    certified_margin_lower_bound,
    forward_with_preactivations,
    gradalign_regulariser,
    interval_bounds,
    linf_search,
    nbc_search,
    neuron_behaviour_consistency,
    relu_stability_term,
    relu_stable_loss,
    uniform_in_ball,
)
from vfbench.models import GraftedReLU, build_model, set_site, site_shapes


def _zoo(arch, shape=(1, 28, 28), **options):
    return build_model(arch, input_shape=shape, num_classes=10, mean=[0.2] * shape[0],
                       std=[0.3] * shape[0], **options)


def test_options_take_defaults_and_reject_unknowns():
    assert resolve_loss_options("trades", {"eps": 0.3}) == {"eps": 0.3, "steps": 10,
                                                             "step_ratio": 0.1, "beta": 6.0}
    assert resolve_loss_options("fat_gradalign", None)["gradalign_lambda"] == 0.2
    with pytest.raises(VfbenchError, match="unknown loss 'madry'"):
        resolve_loss_options("madry", {})
    with pytest.raises(VfbenchError, match=r"unknown options \['beta'\].*allowed"):
        resolve_loss_options("nbc", {"beta": 1.0})
    with pytest.raises(VfbenchError, match="must not be negative"):
        resolve_loss_options("pgd", {"eps": -0.1})


def test_nbc_layer_weights_rank_layers_by_size():
    # paper 001: gamma[i] = 2^r[i], r[i] = rank of the layer's size, smallest first
    assert _hidden_layer_weights([64, 32, 16], "pow2_rank") == [8.0, 4.0, 2.0]
    assert _hidden_layer_weights([512, 512, 100], "pow2_rank") == [4.0, 4.0, 2.0]
    assert _hidden_layer_weights([64, 32], "one") == [1.0, 1.0]
    assert _hidden_layer_weights([64, 32], "rank_size") == [128.0, 32.0]


def test_nbc_of_an_input_with_itself_is_the_sum_of_layer_weights():
    model = _zoo("cnn_4layer").eval()
    x = torch.rand(3, 1, 28, 28)
    logits, pre = forward_with_preactivations(model, x)
    # sites of sizes 3136, 1568, 100 -> gamma 8, 4, 2; KL(f(x) || f(x)) = 0
    score = neuron_behaviour_consistency(logits, pre, logits, pre)
    torch.testing.assert_close(score, torch.full((3,), 1 / 8 + 1 / 4 + 1 / 2))


def test_nbc_search_stays_in_the_ball_and_lowers_consistency():
    model = _zoo("cnn_4layer").eval()
    x = torch.rand(4, 1, 28, 28)
    lo, hi = ball_box(x, 0.1)
    x_adv = nbc_search(model, x, 0.1, steps=10, step_size=0.01, step="sign")
    assert ((x_adv >= lo) & (x_adv <= hi)).all()
    logits, pre = forward_with_preactivations(model, x)
    searched = neuron_behaviour_consistency(logits, pre, *forward_with_preactivations(model, x_adv))
    start = uniform_in_ball(x, 0.1)
    random = neuron_behaviour_consistency(logits, pre, *forward_with_preactivations(model, start))
    assert searched.mean() < random.mean()


def test_linf_search_ascends_its_objective_within_the_box():
    model = _zoo("net1").eval()
    x = torch.rand(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))

    def ce(xa):
        return nn.functional.cross_entropy(model(xa), y, reduction="none")

    x_adv = linf_search(model, x, x, 0.05, steps=5, step_size=0.0125, objective=ce)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-7 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert ce(x_adv).sum() > ce(x).sum()


@pytest.mark.parametrize("arch,shape", [("cnn_b", (3, 32, 32)), ("resnet4b", (3, 32, 32)),
                                        ("conv_big_bn", (1, 28, 28)), ("relu_stable", (1, 28, 28))])
def test_interval_bounds_contain_every_point_of_the_ball(arch, shape):
    model = _zoo(arch, shape).eval()
    x = torch.rand(2, *shape)
    bounds = interval_bounds(model, x, 0.03)
    for _ in range(5):
        _, pre = forward_with_preactivations(model, uniform_in_ball(x, 0.03))
        assert len(pre) == len(bounds)
        for (lo, hi), value in zip(bounds, pre.values(), strict=True):
            assert (lo <= value + 1e-5).all() and (value <= hi + 1e-5).all()


def test_interval_bounds_through_a_grafted_site():
    model = _zoo("cnn_4layer").eval()
    name, shape = next(iter(site_shapes(model).items()))
    graft = GraftedReLU(shape, mask=(torch.rand(shape) < 0.5), slope=-0.7, intercept=0.2)
    set_site(model, name, graft)
    x = torch.rand(2, 1, 28, 28)
    bounds = interval_bounds(model, x, 0.05)
    _, pre = forward_with_preactivations(model, uniform_in_ball(x, 0.05))
    pre[name] = graft.keep * pre[name]  # the bounds are of what the ReLU sees
    for (lo, hi), value in zip(bounds, pre.values(), strict=True):
        assert (lo <= value + 1e-5).all() and (value <= hi + 1e-5).all()
    # grafted neurons are stable by construction: the ReLU-stability term sees them at 0
    lo, hi = bounds[0]
    assert (lo[:, graft.mask.bool()] == 0).all() and (hi[:, graft.mask.bool()] == 0).all()


def test_relu_stable_l1_scales_convs_by_output_positions():
    layers = _l1_scaled_layers(_zoo("relu_stable"))
    kinds = [(type(layer).__name__, scale) for layer, scale in layers]
    # Xiao et al.: 14*14 * |W_conv1| + 7*7 * |W_conv2| + |W_fc1|; the output layer is left out
    assert kinds == [("Conv2d", 196), ("Conv2d", 49), ("Linear", 1)]


def test_relu_stability_term_matches_a_hand_computation():
    # one sample, a conv layer of 2 channels on 1x2 positions: lo*hi = 0 everywhere except
    # channel 0 at position 1, where lo*hi = -1 (tanh(0) = 0)
    lo = torch.tensor([[[[0.0, -1.0]], [[0.0, 0.0]]]])
    hi = torch.tensor([[[[1.0, 1.0]], [[2.0, 3.0]]]])
    t1 = float(torch.tanh(torch.tensor(1.0)))
    # the reference: sum over channels per position (2 t1 and t1), mean over the 2 positions
    assert float(relu_stability_term(lo, hi)) == pytest.approx(-(2 * t1 + t1) / 2)
    # a dense layer of 3 neurons, two samples: sum over neurons, mean over the batch
    lo, hi = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]), torch.ones(2, 3)
    assert float(relu_stability_term(lo, hi)) == pytest.approx(-(2 * t1 + 3 * t1) / 2)


def test_relu_stable_loss_normalises_conv_layers_as_the_reference():
    """RS of Xiao et al.'s MNIST net (conv 14x14, conv 7x7, dense) against the reference's
    formula on NHWC tensors: -mean over (batch, H, W) of the sum over channels of tanh(1+l*u)."""
    model = _zoo("relu_stable").eval()
    x = torch.rand(3, 1, 28, 28)
    got = relu_stable_loss(Batch(model, x, torch.zeros(3, dtype=torch.long)),
                           {"eps": 0.05, "rs_weight": 1.0, "l1_weight": 0.0})
    want = 0.0
    for lo, hi in interval_bounds(model, x, 0.05):
        values = torch.tanh(1.0 + lo * hi)
        if values.dim() == 4:
            values = values.permute(0, 2, 3, 1)  # NCHW -> NHWC, as the reference's TensorFlow
        want -= float(values.sum(dim=-1).mean())
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_certified_lower_bounds_are_below_the_margins_of_sampled_points():
    model = _zoo("cnn_4layer").eval()
    x = torch.rand(4, 1, 28, 28)
    y = torch.randint(0, 10, (4,))
    lower = certified_margin_lower_bound(model, x, y, 0.02, crown_weight=0.5).detach()
    for _ in range(5):
        logits = model(uniform_in_ball(x, 0.02))
        others = torch.stack([torch.cat([row[:label], row[label + 1:]])
                              for row, label in zip(logits, y, strict=True)])
        margins = logits.gather(1, y[:, None]) - others
        assert (lower <= margins + 1e-4).all()


def test_gradalign_vanishes_as_the_ball_shrinks():
    model = _zoo("net1").train()
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    small = gradalign_regulariser(model, x, y, 1e-6)
    large = gradalign_regulariser(model, x, y, 0.5)
    assert small.item() < 1e-3 < large.item()
    large.backward()
    assert model.body[1].weight.grad.abs().sum() > 0


def test_sparse_bn_needs_batchnorm():
    from vfbench.losses import sparse_bn_loss

    model = _zoo("cnn_4layer")
    with pytest.raises(VfbenchError, match="no BatchNorm"):
        sparse_bn_loss(Batch(model, torch.rand(2, 1, 28, 28), torch.zeros(2).long()), {})
    net = _zoo("net1")
    value = sparse_bn_loss(Batch(net, torch.rand(2, 1, 28, 28), torch.zeros(2).long()), {})
    assert value.item() == pytest.approx(112.0)  # 64 + 32 + 16 gammas initialised to 1
