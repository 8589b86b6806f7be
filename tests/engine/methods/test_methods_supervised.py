"""The method registry, the Dice-loss variants of the papers, and the supervised method."""

from __future__ import annotations

import math

import pytest
import torch

from napari_semiseg.engine.methods import (Batch, MethodError, StepInfo, Supervised, binary_dice_loss,
                                           create_method, dice_and_cross_entropy, foreground_dice_loss,
                                           get_method, list_methods, multiclass_dice_loss, sigmoid_rampup,
                                           squared_dice_loss)
from training_support import PATCH, tiny_card

P = torch.tensor([[0.5, 1.0], [0.0, 0.25]])
G = torch.tensor([[1.0, 1.0], [0.0, 0.0]])


# -- Dice variants, against hand computations (docs/METHODS.md §1.3) --------------------------------------

def test_squared_dice_uses_squares_and_1e5_smoothing():
    # Σp·g = 1.5, Σp² = 0.25 + 1 + 0.0625 = 1.3125, Σg² = 2
    expected = 1 - (2 * 1.5 + 1e-5) / (1.3125 + 2 + 1e-5)
    assert float(squared_dice_loss(P, G)) == pytest.approx(expected, abs=1e-7)


def test_binary_dice_uses_plain_sums_and_1e8_smoothing():
    expected = 1 - (2 * 1.5 + 1e-8) / (1.75 + 2 + 1e-8)
    assert float(binary_dice_loss(P, G)) == pytest.approx(expected, abs=1e-7)


def test_a_confidence_mask_removes_voxels_from_every_sum():
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    expected = 1 - (2 * 1.5 + 1e-5) / (1.25 + 2 + 1e-5)
    assert float(squared_dice_loss(P, G, mask)) == pytest.approx(expected, abs=1e-7)


def test_dice_losses_are_batch_global_not_a_mean_over_samples():
    prob = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    global_loss = float(squared_dice_loss(prob, target))
    per_sample = (float(squared_dice_loss(prob[0], target[0])) + float(squared_dice_loss(prob[1], target[1]))) / 2
    assert global_loss == pytest.approx(1 - (8 + 1e-5) / (5 + 4 + 1e-5), abs=1e-7)
    assert abs(global_loss - per_sample) > 0.1


def test_multiclass_dice_averages_every_class_background_included():
    probs = torch.tensor([[[0.8, 0.2], [0.2, 0.8]]]).permute(0, 2, 1)[..., None, None]  # B=1, K=2, 2 voxels
    labels = torch.tensor([[0, 1]])[..., None, None]
    per_class = [1 - (2 * 0.8 + 1e-5) / (0.68 + 1 + 1e-5)] * 2
    assert float(multiclass_dice_loss(probs, labels)) == pytest.approx(sum(per_class) / 2, abs=1e-6)
    # the foreground variant of a 2-class problem is the papers' loss on channel 1 alone
    assert float(foreground_dice_loss(probs, labels, "squared")) == pytest.approx(per_class[0], abs=1e-6)


def test_the_supervised_loss_is_half_cross_entropy_plus_half_squared_dice():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]]).permute(1, 0, 2)[..., None, None]  # B=1, K=2, 2 voxels
    labels = torch.tensor([[0, 1]])[..., None, None]
    p0 = math.exp(2) / (math.exp(2) + 1)  # voxel 0: softmax of (2, 0), true class 0
    p1 = math.e / (math.e + 1)            # voxel 1: softmax of (0, 1), true class 1
    ce = -(math.log(p0) + math.log(p1)) / 2
    fg = [1 - p0, p1]
    dice = 1 - (2 * p1 + 1e-5) / (fg[0] ** 2 + fg[1] ** 2 + 1 + 1e-5)
    losses = dice_and_cross_entropy(logits, labels)
    assert float(losses["ce"]) == pytest.approx(ce, abs=1e-6)
    assert float(losses["dice"]) == pytest.approx(dice, abs=1e-6)
    assert float(losses["total"]) == pytest.approx(0.5 * ce + 0.5 * dice, abs=1e-6)


def test_the_sigmoid_rampup_reaches_one_at_its_length():
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(40, 40) == sigmoid_rampup(99, 40) == sigmoid_rampup(3, 0) == 1.0


# -- registry and hyperparameters ----------------------------------------------------------------------

def test_supervised_is_registered_with_documented_defaults():
    assert "supervised" in list_methods() and get_method("supervised") is Supervised
    assert Supervised.default_params() == {"ce_weight": 0.5, "dice_weight": 0.5, "dice": "squared"}
    with pytest.raises(MethodError, match="unknown training method 'mean-teachr'; known methods: .*supervised"):
        get_method("mean-teachr")


def test_hyperparameters_are_checked_and_recorded():
    method = create_method("supervised", tiny_card(), {"dice": "binary", "ce_weight": 0.0, "dice_weight": 1.0})
    assert method.describe() == {"method": "supervised",
                                 "params": {"ce_weight": 0.0, "dice_weight": 1.0, "dice": "binary"}}
    with pytest.raises(MethodError, match="dice must be one of"):
        create_method("supervised", tiny_card(), {"dice": "cubed"})
    with pytest.raises(MethodError, match="not both 0"):
        create_method("supervised", tiny_card(), {"ce_weight": 0.0, "dice_weight": 0.0})


# -- the supervised step -----------------------------------------------------------------------------------

def _batch(n_unlabeled: int) -> Batch:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2 + n_unlabeled, 1, *PATCH, generator=generator)
    label = (image[:2, 0] > 0.5).long()
    return Batch(image=image, label=label, n_labeled=2)


def test_the_supervised_step_ignores_the_unlabelled_half():
    torch.manual_seed(0)
    method = create_method("supervised", tiny_card())
    step = StepInfo(0, 10, 0.01)
    with_unlabelled = method.training_step(_batch(2), step)
    without = method.training_step(Batch(_batch(2).labeled_image, _batch(2).label, 2), step)
    assert set(with_unlabelled) == {"ce", "dice", "total"}
    for name in with_unlabelled:
        assert torch.equal(with_unlabelled[name], without[name])
    with_unlabelled["total"].backward()
    assert all(p.grad is not None for p in method.parameters())


def test_method_state_round_trips_and_fine_tuning_weights_must_fit():
    torch.manual_seed(0)
    first = create_method("supervised", tiny_card())
    torch.manual_seed(1)
    second = create_method("supervised", tiny_card())
    second.load_state_dict(first.state_dict())
    x = torch.randn(1, 1, *PATCH)
    first.set_training(False), second.set_training(False)
    assert torch.equal(first.deployed_network()(x), second.deployed_network()(x))
    assert second.initialize_from(first.deployed_state_dict()) == ["model"]
    other = create_method("supervised", tiny_card().replace(network=tiny_card().network.__class__(
        name="unet-small", base_filters=6, levels=2, dropout=False)))
    with pytest.raises(MethodError, match="fit none of its networks"):
        other.initialize_from(first.deployed_state_dict())
