"""SS-Net (docs/METHODS.md §2): VAT with a Dice divergence (norm ε, adversarial, BatchNorm frozen, no
parameter .grad left), the prototype memory and class-separation loss, the loss schedule, the
largest-component flag, and a short run through the real trainer with the cpu-small card.

Expected values are written out with numpy here, never taken from the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_semiseg.engine.cards import NetworkSpec, load_card
from napari_semiseg.engine.methods import Batch, MethodError, StepInfo, create_method, list_methods
from napari_semiseg.engine.methods._prototypes import (class_separation_loss, correct_foreground, select_prototypes,
                                                       voxel_vectors)
from napari_semiseg.engine.methods._vat import (batchnorm_statistics_frozen, dice_divergence, l2_normalise_per_sample,
                                                virtual_adversarial_loss)
from napari_semiseg.engine.methods.ss_net import SSNet
from napari_semiseg.engine.networks import build_network
from napari_semiseg.engine.training import CaseSource, TrainConfig, TrainingData, load_model, train
from training_support import box_case


def small_card(**network):
    """The cpu-small card (its U-Net) with a smaller patch for quick CPU tests."""
    card = load_card("cpu-small")
    spec = dataclasses.replace(card.network, **network) if network else card.network
    return dataclasses.replace(card, network=spec, patch_size=(8, 24, 24))


def linear_scorer(weights, bias: float) -> nn.Linear:
    """A (n, D) → (n, 1) scorer with the given weights (a real layer, set by hand)."""
    layer = nn.Linear(len(weights), 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weights], dtype=torch.float64))
        layer.bias.fill_(bias)
    return layer


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_unit_rows(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# -- registration, flag, schedule -----------------------------------------------------------------------

def test_ss_net_is_registered_with_the_la_code_defaults():
    assert "ss-net" in list_methods()
    d = SSNet.default_params()
    assert (d["vat_xi"], d["vat_epsilon"], d["vat_iterations"]) == (10.0, 10.0, 1)
    assert (d["consistency"], d["consistency_rampup"], d["contrastive_weight"]) == (1.0, 40.0, 0.1)
    assert (d["memory_size"], d["prototype_selection"], d["memory_weighting"]) == (32, "lowest", "code")
    assert d["contrastive_voxels"] == 0 and d["vat_target"] == "separate"


def test_ss_net_asks_for_the_largest_component_at_test_time():
    assert SSNet.postprocess_largest_component is True
    method = create_method("ss-net", small_card())
    assert method.params_dict()["largest_component"] is True  # recorded with the model version


def test_the_recommended_recipe_is_the_official_la_protocol_and_a_valid_config(tmp_path):
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="ss-net", **SSNet.recommended_training())
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
    assert (config.schedule, config.step_size, config.gamma, config.iterations) == ("step", 2500, 0.1, 15000)
    assert (config.batch_labeled, config.batch_unlabeled) == (2, 2)


def test_bad_options_are_refused_with_their_name():
    with pytest.raises(MethodError, match="prototype_selection"):
        create_method("ss-net", small_card(), {"prototype_selection": "best"})
    with pytest.raises(MethodError, match="vat_target"):
        create_method("ss-net", small_card(), {"vat_target": "teacher"})


def test_the_weight_ramps_with_steps_counted_from_one():
    method = create_method("ss-net", small_card())
    for t in [0, 148, 149, 1499, 2999, 4499, 5999, 9000]:
        unit = min((t + 1) // 150, 40)
        expected = 1.0 * math.exp(-5.0 * (1.0 - unit / 40.0) ** 2)
        assert method.consistency_weight(t) == pytest.approx(expected, rel=1e-12), t
    assert method.consistency_weight(149) > method.consistency_weight(148)
    assert method.consistency_weight(2999) == pytest.approx(math.exp(-5 * 0.5 ** 2))  # 0.29 at step 3000


# -- VAT ---------------------------------------------------------------------------------------------------

def test_the_dice_divergence_sums_over_both_channels_and_the_batch():
    p = np.array([0.7, 0.3, 0.2, 0.8, 0.5, 0.5, 0.9, 0.1]).reshape(2, 2, 1, 1, 2)
    q = np.array([0.6, 0.4, 0.1, 0.9, 0.3, 0.7, 1.0, 0.0]).reshape(2, 2, 1, 1, 2)
    expected = 1.0 - (2.0 * (p * q).sum() + 1e-8) / (p.sum() + q.sum() + 1e-8)
    assert float(dice_divergence(torch.tensor(p), torch.tensor(q))) == pytest.approx(expected, rel=1e-12)


def test_l2_normalisation_is_per_sample():
    d = np.array([[3.0, 4.0], [0.0, 0.5]]).reshape(2, 1, 1, 1, 2)
    got = l2_normalise_per_sample(torch.tensor(d)).numpy()
    np.testing.assert_allclose(got.reshape(2, 2), [[3 / (5 + 1e-8), 4 / (5 + 1e-8)], [0.0, 0.5 / (0.5 + 1e-8)]],
                               rtol=1e-12)


def fixed_net(seed: int = 0, gain: float = 1.0) -> nn.Module:
    """A small U-Net without dropout, in float64; ``gain`` scales its logits (a more confident net)."""
    torch.manual_seed(seed)
    net = build_network(NetworkSpec(name="unet-small", base_filters=4, levels=2, dropout=False)).double()
    with torch.no_grad():
        net.decoder.out_conv.weight.mul_(gain)
        net.decoder.out_conv.bias.mul_(gain)
    return net


def test_the_adversarial_perturbation_has_norm_epsilon_and_beats_random_directions():
    net = fixed_net(gain=10.0).eval()  # running statistics: the divergence is a function of x alone
    epsilon, adversarial, random = 3.0, [], []
    for seed in range(20):
        torch.manual_seed(seed)
        x = torch.randn(2, 1, 8, 12, 12, dtype=torch.float64)
        result = virtual_adversarial_loss(net, x, xi=10.0, epsilon=epsilon)
        # ε·g/(‖g‖ + 1e-8) per sample: ε up to the code's 1e-8 guard (‖g‖ ~ 1e-4 here)
        norms = result.perturbation.flatten(1).norm(dim=1).numpy()
        np.testing.assert_allclose(norms, epsilon, rtol=1e-3)
        direction = l2_normalise_per_sample(torch.rand_like(x) - 0.5) * epsilon
        with torch.no_grad():
            unperturbed = float(dice_divergence(result.target, result.target))  # Dice "divergence" of q to q is not 0
            baseline = float(dice_divergence(torch.softmax(net(x + direction), 1), result.target))
        adversarial.append(float(result.loss.detach()) - unperturbed)
        random.append(baseline - unperturbed)
    adversarial, random = np.array(adversarial), np.array(random)
    assert (adversarial > random).sum() >= 18, (adversarial, random)  # sign test: P(≥ 18 of 20 | chance) < 2e-4
    assert (adversarial > 0).all()
    assert np.median(adversarial) > 5 * np.median(np.abs(random))


def test_the_inner_step_leaves_no_parameter_gradient_and_the_loss_trains_the_network():
    net = fixed_net().train()
    x = torch.randn(2, 1, 8, 12, 12, dtype=torch.float64)
    result = virtual_adversarial_loss(net, x, xi=10.0, epsilon=2.0)
    assert all(p.grad is None for p in net.parameters())
    assert result.loss.requires_grad and not result.perturbation.requires_grad and not result.target.requires_grad
    result.loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters())


def bn_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}


def test_batchnorm_running_statistics_are_frozen_in_the_perturbed_passes_only():
    net = fixed_net().train()
    x = torch.randn(2, 1, 8, 12, 12, dtype=torch.float64)
    before = bn_state(net)
    target = torch.softmax(torch.randn(2, 2, 8, 12, 12, dtype=torch.float64), 1)
    virtual_adversarial_loss(net, x, xi=10.0, epsilon=2.0, target=target)  # power iteration + perturbed pass
    after = bn_state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.track_running_stats for m in net.modules() if isinstance(m, nn.BatchNorm3d))  # restored

    virtual_adversarial_loss(net, x, xi=10.0, epsilon=2.0)  # its own target pass, in train mode
    counts = {k: int(v) for k, v in bn_state(net).items() if k.endswith("num_batches_tracked")}
    assert counts and all(n == 1 for n in counts.values())  # exactly the target pass updated them


def test_frozen_statistics_are_restored_after_an_error():
    net = fixed_net()
    with pytest.raises(RuntimeError):
        with batchnorm_statistics_frozen(net):
            raise RuntimeError("boom")
    assert all(m.track_running_stats for m in net.modules() if isinstance(m, nn.BatchNorm3d))


# -- prototypes and class separation --------------------------------------------------------------------------

def test_the_memory_candidates_are_correct_foreground_predictions():
    prediction = torch.tensor([0, 1, 1, 0, 1, 2])
    labels = torch.tensor([0, 1, 0, 1, 1, 2])
    np.testing.assert_array_equal(correct_foreground(prediction, labels).numpy(), [0, 1, 0, 0, 1, 1])


def test_voxel_vectors_keep_the_b_z_y_x_order():
    maps = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(2, 3, 1, 2, 2)  # (B, F, Z, Y, X)
    expected = np.moveaxis(maps.numpy(), 1, -1).reshape(-1, 3)
    np.testing.assert_array_equal(voxel_vectors(maps).numpy(), expected)


def test_the_memory_keeps_the_lowest_scored_vectors_by_default_and_the_highest_as_an_option():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(7, 3))
    labels = np.array([1, 1, 0, 1, 1, 1, 1])
    weights = [0.5, -1.0, 2.0]
    scorers = [linear_scorer(weights, 0.0), linear_scorer(weights, 0.1)]
    class1 = vectors[labels == 1]
    scores = np_sigmoid(class1 @ np.array(weights) + 0.1)
    lowest = select_prototypes(torch.tensor(vectors), torch.tensor(labels), 2, scorers, size=3)
    highest = select_prototypes(torch.tensor(vectors), torch.tensor(labels), 2, scorers, size=3, keep="highest")
    np.testing.assert_allclose(lowest[1].numpy(), class1[np.argsort(scores)[:3]])
    np.testing.assert_allclose(highest[1].numpy(), class1[np.argsort(-scores)[:3]])
    np.testing.assert_allclose(lowest[0].numpy(), vectors[labels == 0])  # one candidate: kept as it is
    none = select_prototypes(torch.tensor(vectors), torch.zeros(7, dtype=torch.long), 2, scorers, size=3)
    assert none[1] is None


def separation_example():
    features = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    labels = np.array([1, 1, 1, 0, 2])
    memory = [np.array([[1.0, 1.0], [2.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 1.0]]), None]
    feature_scorer = ([0.3, -0.7], 0.2)
    memory_scorer = ([1.0, 0.5], -0.4)
    return features, labels, memory, feature_scorer, memory_scorer


def expected_separation(weighting: str) -> float:
    features, labels, memory, (fw, fb), (mw, mb) = separation_example()
    f = features[labels == 1]  # class 0 has one feature (skipped), class 2 no memory
    m = np_unit_rows(memory[1])
    distances = 1.0 - np_unit_rows(f) @ m.T
    w_f = np_sigmoid(f @ np.array(fw) + fb)
    w_f = w_f * len(w_f) / w_f.sum()
    w_m = np.ones(len(m))
    if weighting == "normalised":
        w_m = np_sigmoid(m @ np.array(mw) + mb)
        w_m = w_m * len(w_m) / w_m.sum()
    return float(np.mean(distances * w_f[:, None] * w_m[None, :]) / 3)  # Σ_c loss_c / K with K = 3


@pytest.mark.parametrize("weighting", ["code", "normalised"])
def test_the_class_separation_loss_on_hand_built_vectors(weighting):
    features, labels, memory, (fw, fb), (mw, mb) = separation_example()
    feature_scorers = [linear_scorer(fw, fb)] * 3
    memory_scorers = [linear_scorer(mw, mb)] * 3
    got = class_separation_loss(torch.tensor(features, requires_grad=True), torch.tensor(labels),
                                [None if m is None else torch.tensor(m) for m in memory], feature_scorers,
                                memory_scorers, memory_weighting=weighting)
    assert float(got.detach()) == pytest.approx(expected_separation(weighting), rel=1e-10)
    assert expected_separation("code") != pytest.approx(expected_separation("normalised"), rel=1e-3)


def test_the_feature_weights_get_gradient_through_the_selector_not_through_the_features():
    features, labels, memory, (fw, fb), (mw, mb) = separation_example()
    scorer = linear_scorer(fw, fb)
    x = torch.tensor(features, requires_grad=True)
    loss = class_separation_loss(x, torch.tensor(labels), [None if m is None else torch.tensor(m) for m in memory],
                                 [scorer] * 3, [linear_scorer(mw, mb)] * 3)
    loss.backward()
    assert float(scorer.weight.grad.abs().sum()) > 0
    # the gradient wrt the features is the cosine term's alone (selector input detached)
    f, m = features[labels == 1], np_unit_rows(memory[1])
    w_f = np_sigmoid(f @ np.array(fw) + fb)
    w_f = w_f * len(w_f) / w_f.sum()
    step = 1e-6
    numeric = np.zeros_like(f)
    for i in range(f.shape[0]):
        for j in range(f.shape[1]):
            shifted = f.copy()
            shifted[i, j] += step
            value = lambda g: np.mean((1.0 - np_unit_rows(g) @ m.T) * w_f[:, None]) / 3
            numeric[i, j] = (value(shifted) - value(f)) / step
    np.testing.assert_allclose(x.grad.numpy()[labels == 1], numeric, rtol=1e-4, atol=1e-7)


# -- the step ---------------------------------------------------------------------------------------------------

def batch_for(card, seed=0):
    torch.manual_seed(seed)
    image = torch.randn(4, 1, *card.patch_size)
    label = torch.zeros(2, *card.patch_size, dtype=torch.long)
    label[:, 2:6, 6:18, 6:18] = 1
    return Batch(image, label, 2)


def test_with_no_unsupervised_weight_the_total_is_the_foreground_binary_dice_alone():
    card = small_card(dropout=False)
    method = create_method("ss-net", card, {"consistency": 0.0})
    method.set_training(True)
    batch = batch_for(card)
    with torch.no_grad():  # the same train-mode pass the step starts with (BatchNorm on batch statistics)
        prob = torch.softmax(method.network("model")(batch.image), 1)[:2, 1].double().numpy()
    truth = (batch.label == 1).numpy()
    expected = 1.0 - (2.0 * (prob * truth).sum() + 1e-8) / (prob.sum() + truth.sum() + 1e-8)
    losses = method.training_step(batch, StepInfo(0, 100, 0.01))
    assert float(losses["total"].detach()) == pytest.approx(expected, rel=1e-5)
    assert float(losses["ce"]) > 0 and float(losses["total"].detach()) != pytest.approx(
        expected + float(losses["ce"]), rel=1e-3)  # the cross-entropy is logged, not added


def test_a_step_trains_the_network_and_the_heads_and_deploys_the_network_alone():
    card = small_card()
    method = create_method("ss-net", card)
    method.set_training(True)
    losses = method.training_step(batch_for(card), StepInfo(5999, 6000, 0.01))
    value = {k: float(v.detach()) for k, v in losses.items()}
    assert value["total"] == pytest.approx(value["dice"] + 1.0 * (
        value["lds"] + 0.1 * (value["contrastive_labeled"] + value["contrastive_unlabeled"])), rel=1e-5)
    losses["total"].backward()
    heads = method.network("heads")
    for part in (heads.projection, heads.prediction, heads.feature_selectors[1]):
        assert any(float(p.grad.abs().sum()) > 0 for p in part.parameters())
    assert all(p.grad is not None for p in heads.parameters())  # zero gradients where unused (DDP, weight decay)
    assert all(float(p.grad.abs().sum()) == 0 for p in heads.memory_selectors.parameters())  # code weighting
    assert set(method.deployed_state_dict()) == set(method.network("model").state_dict())
    assert {"model", "heads"} <= set(method.state_dict()["networks"])


# -- through the real trainer --------------------------------------------------------------------------------

def test_a_short_ss_net_run_lowers_its_loss(tmp_path):
    shape = (20, 32, 32)
    data = TrainingData([CaseSource.from_arrays(f"lab{i}", *box_case(i, shape)) for i in range(2)],
                        [CaseSource.from_arrays(f"unl{i}", box_case(100 + i, shape)[0]) for i in range(2)])
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="ss-net", iterations=20, optimizer="adamw",
                                   lr=0.03, schedule="constant", validate_every=0, checkpoint_every=0, device="cpu",
                                   seed=3)
    result = train(config, data)
    totals = [r["losses"]["total"] for r in result.history]
    assert result.status == "finished" and len(totals) == 20
    assert np.mean(totals[-5:]) < 0.85 * np.mean(totals[:5])  # Dice-only supervision: a noisier curve
    assert all(0.0 <= r["losses"]["lds"] <= 1.0 for r in result.history)
    model = load_model(result.model)
    assert set(model.network.state_dict()) == set(result.method.network("model").state_dict())
