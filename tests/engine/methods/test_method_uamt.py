"""UA-MT (docs/METHODS.md §7.1): T MC-dropout teacher passes, predictive entropy, the ramped
threshold (0.75 + 0.25·r(t, t_max))·ln 2, the masked consistency, the batching of the teacher
passes, and a short run through the real trainer with the cpu-small card.

Expected values are written out with numpy here, never taken from the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import Batch, MethodError, StepInfo, create_method, list_methods
from napari_semiseg.engine.methods._consistency import masked_consistency, predictive_entropy, uncertainty_threshold
from napari_semiseg.engine.methods.uncertainty_mt import UncertaintyMeanTeacher
from napari_semiseg.engine.training import CaseSource, TrainConfig, TrainingData, train
from training_support import box_case


def small_card(**network):
    """The cpu-small card (its U-Net, dropout on) with a smaller patch for quick CPU tests."""
    card = load_card("cpu-small")
    spec = dataclasses.replace(card.network, **network) if network else card.network
    return dataclasses.replace(card, network=spec, patch_size=(8, 24, 24))


def np_softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_threshold(t: float, t_max: float) -> float:
    return (0.75 + 0.25 * math.exp(-5.0 * (1.0 - min(t, t_max) / t_max) ** 2)) * math.log(2.0)


# -- registration -------------------------------------------------------------------------------------

def test_ua_mt_is_registered_with_the_code_defaults_and_deploys_the_student():
    assert "ua-mt" in list_methods()
    defaults = UncertaintyMeanTeacher.default_params()
    assert defaults["mc_samples"] == 8 and defaults["threshold_base"] == 0.75
    assert defaults["consistency"] == 0.1 and defaults["ema_decay"] == 0.99
    assert UncertaintyMeanTeacher.deployed_network_name == "student"
    assert UncertaintyMeanTeacher.postprocess_largest_component is False


def test_a_card_without_dropout_is_refused_with_a_clear_message():
    with pytest.raises(MethodError, match="dropout: true"):
        create_method("ua-mt", small_card(dropout=False))


def test_bad_mc_settings_are_refused():
    with pytest.raises(MethodError, match="mc_samples"):
        create_method("ua-mt", small_card(), {"mc_samples": 0})


# -- threshold, entropy, mask ---------------------------------------------------------------------------

def test_the_threshold_ramps_from_three_quarters_to_all_of_ln_2_over_the_run():
    for t in [0, 600, 1500, 3000, 4500, 5999, 6000]:
        assert uncertainty_threshold(t, 6000, 2) == pytest.approx(np_threshold(t, 6000), rel=1e-12)
    assert uncertainty_threshold(0, 6000, 2) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uncertainty_threshold(6000, 6000, 2) == pytest.approx(math.log(2))


def test_the_method_ramps_its_threshold_over_the_run_unless_told_another_length():
    method = create_method("ua-mt", small_card())
    assert method.uncertainty_threshold(300, 1200) == pytest.approx(np_threshold(300, 1200), rel=1e-12)
    fixed = create_method("ua-mt", small_card(), {"threshold_rampup": 6000})
    assert fixed.uncertainty_threshold(300, 1200) == pytest.approx(np_threshold(300, 6000), rel=1e-12)


def test_entropy_mask_and_masked_consistency_on_four_voxels():
    # p̄ of four voxels (B=1, K=2, Z=1, Y=1, X=4): confident, uniform, fairly sure, unsure
    mean_fg = np.array([0.01, 0.5, 0.2, 0.4])
    mean_prob = np.stack([1 - mean_fg, mean_fg]).reshape(1, 2, 1, 1, 4)
    entropy = -(mean_prob * np.log(mean_prob + 1e-6)).sum(axis=1, keepdims=True)
    threshold = np_threshold(0, 6000)  # 0.5222 nats
    mask = (entropy < threshold).astype(np.float64)
    np.testing.assert_array_equal(mask.ravel(), [1, 0, 1, 0])  # H(0.8, 0.2) = 0.5004 is under it

    student_fg = np.array([0.3, 0.9, 0.6, 0.1])
    teacher_fg = np.array([0.1, 0.2, 0.9, 0.7])
    student = np.stack([1 - student_fg, student_fg]).reshape(1, 2, 1, 1, 4)
    teacher = np.stack([1 - teacher_fg, teacher_fg]).reshape(1, 2, 1, 1, 4)
    expected = (mask * (student - teacher) ** 2).sum() / (2 * mask.sum() + 1e-16)  # (2·0.04 + 2·0.09) / 4

    got_entropy = predictive_entropy(torch.tensor(mean_prob))
    np.testing.assert_allclose(got_entropy.numpy(), entropy, rtol=1e-12)
    got_mask = (got_entropy < uncertainty_threshold(0, 6000, 2)).double()
    got = masked_consistency(torch.tensor(student), torch.tensor(teacher), got_mask)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx((2 * 0.04 + 2 * 0.09) / 4)


def test_an_all_uncertain_mask_gives_zero_not_nan():
    prob = torch.full((1, 2, 1, 2, 2), 0.5)
    got = masked_consistency(prob, torch.rand(1, 2, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2))
    assert float(got) == 0.0


# -- the teacher passes -------------------------------------------------------------------------------------

def record_teacher(method):
    """Inputs and outputs of every teacher forward (a real hook on the real network)."""
    calls = []
    hook = method.network("teacher").register_forward_hook(
        lambda module, args, output: calls.append((args[0].detach().clone(), output.detach().clone())))
    return calls, hook


@pytest.mark.parametrize("per_forward, sizes", [(0, [18]), (2, [2, 4, 4, 4, 4]), (3, [2, 6, 6, 4])])
def test_the_teacher_passes_are_batched_as_asked_and_averaged_per_sample(per_forward, sizes):
    card = small_card()
    method = create_method("ua-mt", card, {"mc_passes_per_forward": per_forward})
    method.set_training(True)
    unlabeled = torch.randn(2, 1, *card.patch_size)
    calls, hook = record_teacher(method)
    target, mean_prob = method.teacher_passes(unlabeled)
    hook.remove()

    assert [inputs.shape[0] for inputs, _ in calls] == sizes
    inputs = torch.cat([i for i, _ in calls]).numpy()
    outputs = torch.cat([o for _, o in calls]).numpy().astype(np.float64)
    copies = np.tile(unlabeled.numpy(), (9, 1, 1, 1, 1))  # target pass, then 8 MC passes: [u0, u1, u0, u1, ...]
    noise = inputs - copies
    assert np.abs(noise).max() <= 0.2 + 1e-6 and noise.std() > 0.05  # clamped N(0, 0.1²), fresh per pass
    assert not np.allclose(noise[2], noise[4])  # the same patch gets new noise in each pass

    probs = np_softmax(outputs)
    np.testing.assert_allclose(target.numpy(), probs[:2], rtol=1e-5, atol=1e-6)
    expected_mean = probs[2:].reshape(8, 2, *probs.shape[1:]).mean(axis=0)
    np.testing.assert_allclose(mean_prob.numpy(), expected_mean, rtol=1e-5, atol=1e-6)


def test_the_mc_passes_sample_dropout_so_they_disagree():
    card = small_card()
    method = create_method("ua-mt", card, {"noise_std": 0.0})
    method.set_training(True)
    calls, hook = record_teacher(method)
    method.teacher_passes(torch.randn(2, 1, *card.patch_size))
    hook.remove()
    outputs = calls[0][1]
    assert not torch.allclose(outputs[2], outputs[4])  # same patch, same (zero) noise: dropout differs


def test_the_step_logs_the_threshold_and_the_certain_fraction():
    card = small_card()
    method = create_method("ua-mt", card)
    method.set_training(True)
    image = torch.randn(4, 1, *card.patch_size)
    label = (torch.rand(2, *card.patch_size) > 0.7).long()
    losses = method.training_step(Batch(image, label, 2), StepInfo(3000, 6000, 0.01))
    assert float(losses["uncertainty_threshold"]) == pytest.approx(np_threshold(3000, 6000), rel=1e-6)
    assert 0.0 <= float(losses["certain_fraction"]) <= 1.0
    weight = 0.1 * math.exp(-5.0 * (1.0 - 20 / 40) ** 2)
    assert float(losses["total"].detach()) == pytest.approx(
        float(losses["supervised"].detach()) + weight * float(losses["consistency"].detach()), rel=1e-6)


# -- through the real trainer ----------------------------------------------------------------------------

def test_a_short_ua_mt_run_lowers_its_supervised_loss(tmp_path):
    shape = (20, 32, 32)
    data = TrainingData([CaseSource.from_arrays(f"lab{i}", *box_case(i, shape)) for i in range(2)],
                        [CaseSource.from_arrays(f"unl{i}", box_case(100 + i, shape)[0]) for i in range(2)])
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="ua-mt", iterations=16, optimizer="adamw",
                                   lr=0.01, schedule="constant", validate_every=0, checkpoint_every=0, device="cpu",
                                   seed=3)
    result = train(config, data)
    supervised = [r["losses"]["supervised"] for r in result.history]
    assert result.status == "finished" and len(supervised) == 16
    assert np.mean(supervised[-5:]) < 0.8 * np.mean(supervised[:5])
    fractions = [r["losses"]["certain_fraction"] for r in result.history]
    assert all(0.0 <= f <= 1.0 for f in fractions)
