"""Mean Teacher (docs/METHODS.md §7.2): EMA teacher, noisy teacher input, softmax-MSE consistency,
its ramped weight, and a short run through the real trainer with the cpu-small card.

Expected values are written out with numpy here, never taken from the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import (Batch, MethodError, StepInfo, create_method, get_method, list_methods,
                                           sigmoid_rampup)
from napari_semiseg.engine.methods._consistency import mean_consistency
from napari_semiseg.engine.methods._ema import clamped_gaussian_noise, ema_decay
from napari_semiseg.engine.methods.mean_teacher import MeanTeacher
from napari_semiseg.engine.methods.uncertainty_mt import UncertaintyMeanTeacher  # noqa: F401 (registers ua-mt)
from napari_semiseg.engine.training import (CaseSource, TrainConfig, TrainingData, load_model, read_events, train,
                                            validate_method)
from training_support import box_case


def small_card(**network):
    """The cpu-small card (its U-Net, dropout on) with a smaller patch for quick CPU tests."""
    card = load_card("cpu-small")
    spec = dataclasses.replace(card.network, **network) if network else card.network
    return dataclasses.replace(card, network=spec, patch_size=(8, 24, 24))


def numpy_params(module: torch.nn.Module) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in module.parameters()]


def set_params(module: torch.nn.Module, values: list[np.ndarray]) -> None:
    with torch.no_grad():
        for p, v in zip(module.parameters(), values):
            p.copy_(torch.from_numpy(v))


# -- registration and parameters ---------------------------------------------------------------

def test_mean_teacher_is_registered_with_the_la_defaults():
    assert "mean-teacher" in list_methods()
    defaults = MeanTeacher.default_params()
    assert defaults["ema_decay"] == 0.99 and defaults["consistency"] == 0.1
    assert defaults["consistency_rampup"] == 40 and defaults["rampup_period"] == 150
    assert defaults["noise_std"] == 0.1 and defaults["noise_clip"] == 0.2
    assert MeanTeacher.deployed_network_name == "student" and MeanTeacher.trainable_networks == ("student",)
    assert MeanTeacher.postprocess_largest_component is False


def test_the_recommended_recipe_is_ua_mt_s_la_protocol_and_a_valid_config(tmp_path):
    for name in ("mean-teacher", "ua-mt"):
        recipe = get_method(name).recommended_training()
        config = TrainConfig.from_card(small_card(), tmp_path / name, method=name, **recipe)
        assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
        assert (config.schedule, config.step_size, config.gamma, config.iterations) == ("step", 2500, 0.1, 6000)
        assert (config.batch_labeled, config.batch_unlabeled) == (2, 2)


def test_a_bad_hyperparameter_is_refused_with_its_name():
    with pytest.raises(MethodError, match="ema_decay"):
        create_method("mean-teacher", small_card(), {"ema_decay": 1.5})
    with pytest.raises(MethodError, match="unknown hyperparameter"):
        create_method("mean-teacher", small_card(), {"alpha": 0.9})


# -- the EMA teacher ------------------------------------------------------------------------------

def test_ema_decay_follows_min_of_one_minus_one_over_t_plus_one_and_the_ceiling():
    for t, expected in [(0, 0.0), (1, 0.5), (3, 0.75), (9, 0.9), (98, 1 - 1 / 99), (99, 0.99), (5000, 0.99)]:
        assert ema_decay(t, 0.99) == pytest.approx(expected, abs=1e-12)


def test_two_ema_steps_give_exactly_the_averaged_weights_and_leave_buffers_alone():
    method = create_method("mean-teacher", small_card())
    student, teacher = method.network("student"), method.network("teacher")
    rng = np.random.default_rng(0)
    teacher_buffers = {k: v.clone() for k, v in teacher.state_dict().items() if "running" in k}
    a = [rng.normal(size=v.shape).astype(np.float32) for v in numpy_params(student)]
    b = [rng.normal(size=v.shape).astype(np.float32) for v in numpy_params(student)]

    set_params(student, a)
    method.after_step(StepInfo(0, 100, 0.01))  # α = 0: the teacher becomes the student
    for got, want in zip(numpy_params(teacher), a):
        np.testing.assert_array_equal(got, want)

    set_params(student, b)
    method.after_step(StepInfo(1, 100, 0.01))  # α = 1 − 1/2
    for got, want_a, want_b in zip(numpy_params(teacher), a, b):
        np.testing.assert_allclose(got, np.float32(0.5) * want_a + np.float32(0.5) * want_b, rtol=1e-6, atol=1e-7)

    for key, before in teacher_buffers.items():  # only parameters are averaged (the code's choice)
        assert torch.equal(teacher.state_dict()[key], before)


def test_with_ema_buffers_the_running_statistics_are_averaged_too():
    method = create_method("mean-teacher", small_card(), {"ema_buffers": True})
    student, teacher = method.network("student"), method.network("teacher")
    key = next(k for k in student.state_dict() if k.endswith("running_mean"))
    student.state_dict()[key].fill_(2.0)
    teacher.state_dict()[key].fill_(1.0)
    method.after_step(StepInfo(3, 100, 0.01))  # α = 0.75
    np.testing.assert_allclose(teacher.state_dict()[key].numpy(), 0.75 * 1.0 + 0.25 * 2.0, rtol=1e-6)


def test_the_teacher_is_not_trained_by_the_optimiser_and_gets_no_gradient():
    card = small_card()
    method = create_method("mean-teacher", card)
    trained = {id(p) for p in method.parameters()}
    assert all(id(p) not in trained for p in method.network("teacher").parameters())
    assert all(not p.requires_grad for p in method.network("teacher").parameters())
    image = torch.randn(4, 1, *card.patch_size)
    label = (torch.rand(2, *card.patch_size) > 0.7).long()
    method.set_training(True)
    method.training_step(Batch(image, label, 2), StepInfo(5000, 6000, 0.01))["total"].backward()
    assert all(p.grad is None for p in method.network("teacher").parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.network("student").parameters())


# -- noise, consistency and its weight ------------------------------------------------------------

def test_teacher_noise_is_gaussian_clamped_to_plus_minus_two_tenths():
    torch.manual_seed(0)
    noise = clamped_gaussian_noise(torch.zeros(200_000), 0.1, 0.2).numpy()
    assert np.abs(noise).max() <= 0.2 + 1e-7
    at_bound = np.mean(np.isclose(np.abs(noise), 0.2))
    assert 0.035 < at_bound < 0.056  # P(|N(0,1)| > 2) = 4.55 %; its sampling s.d. is 0.05 %
    inner = noise[np.abs(noise) < 0.1]
    assert 0.6 < inner.size / noise.size < 0.76  # P(|z| < 1) = 68 %


def test_mean_consistency_is_the_mean_squared_softmax_difference():
    # (B=1, K=2, Z=1, Y=3, X=1): three voxels, two classes
    student = np.array([0.9, 0.2, 0.5, 0.1, 0.8, 0.5], np.float32).reshape(1, 2, 1, 3, 1)
    teacher = np.array([0.6, 0.2, 0.0, 0.4, 0.8, 1.0], np.float32).reshape(1, 2, 1, 3, 1)
    expected = (0.3 ** 2 + 0.0 + 0.5 ** 2) * 2 / 6
    got = mean_consistency(torch.from_numpy(student), torch.from_numpy(teacher))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_sigmoid_rampup_matches_laine_and_aila():
    for t, length in [(0, 40), (10, 40), (20, 40), (40, 40), (55, 40), (3, 0)]:
        expected = 1.0 if length == 0 else math.exp(-5.0 * (1.0 - min(t, length) / length) ** 2)
        assert sigmoid_rampup(t, length) == pytest.approx(expected, rel=1e-12)


def test_the_consistency_weight_ramps_as_a_tenth_of_r_of_t_over_150_and_40():
    method = create_method("mean-teacher", small_card())
    for t in [0, 149, 150, 299, 3000, 5999, 6000, 9000]:
        unit = min(t // 150, 40)
        expected = 0.1 * np.exp(-5.0 * (1.0 - unit / 40.0) ** 2)
        assert method.consistency_weight(t) == pytest.approx(expected, rel=1e-12), t
    assert method.consistency_weight(149) == method.consistency_weight(0)
    assert method.consistency_weight(6000) == pytest.approx(0.1)


def test_the_total_adds_the_weighted_consistency_to_the_supervised_loss():
    card = small_card()
    method = create_method("mean-teacher", card)
    image = torch.randn(4, 1, *card.patch_size)
    label = (torch.rand(2, *card.patch_size) > 0.7).long()
    method.set_training(True)
    losses = method.training_step(Batch(image, label, 2), StepInfo(4500, 6000, 0.01))
    weight = 0.1 * np.exp(-5.0 * (1.0 - 30 / 40.0) ** 2)
    assert float(losses["consistency_weight"]) == pytest.approx(weight, rel=1e-6)
    value = {name: float(loss.detach()) for name, loss in losses.items()}
    assert value["total"] == pytest.approx(value["supervised"] + weight * value["consistency"], rel=1e-6)
    assert value["supervised"] == pytest.approx(0.5 * value["ce"] + 0.5 * value["dice"], rel=1e-6)
    assert value["consistency"] > 0


# -- through the real trainer ----------------------------------------------------------------------------

def easy_data() -> TrainingData:
    shape = (20, 32, 32)
    labeled = [CaseSource.from_arrays(f"lab{i}", *box_case(i, shape)) for i in range(2)]
    unlabeled = [CaseSource.from_arrays(f"unl{i}", box_case(100 + i, shape)[0]) for i in range(2)]
    return TrainingData(labeled, unlabeled)


def short_run(tmp_path, method: str, card, iterations: int = 16, **overrides):
    config = TrainConfig.from_card(card, tmp_path / method, method=method, iterations=iterations, optimizer="adamw",
                                   lr=0.01, schedule="constant", validate_every=0, checkpoint_every=0,
                                   device="cpu", seed=3, **overrides)
    return train(config, easy_data())


def test_a_short_mean_teacher_run_lowers_its_loss_and_deploys_the_student(tmp_path):
    result = short_run(tmp_path, "mean-teacher", small_card())
    supervised = [r["losses"]["supervised"] for r in result.history]
    assert result.status == "finished" and len(supervised) == 16
    assert np.mean(supervised[-5:]) < 0.8 * np.mean(supervised[:5])
    assert all(r["losses"]["consistency"] >= 0 for r in result.history)
    deployed = load_model(result.model).network.state_dict()
    student = result.method.network("student").state_dict()
    teacher = result.method.network("teacher").state_dict()
    assert all(torch.equal(deployed[k], student[k]) for k in student)
    assert any(not torch.equal(deployed[k], teacher[k]) for k in teacher)


@pytest.mark.parametrize("name", ["mean-teacher", "ua-mt"])
def test_each_validation_measures_the_teacher_whose_predictions_are_the_targets(tmp_path, name):
    """The EMA teacher's validation Dice is logged beside the student's (what the unlabelled
    targets are worth); validating it leaves both networks training as the official code does."""
    shape = (20, 32, 32)
    easy = easy_data()
    data = TrainingData(easy.labeled, easy.unlabeled, [CaseSource.from_arrays("val0", *box_case(200, shape))])
    config = TrainConfig.from_card(small_card(), tmp_path / name, method=name, iterations=6, optimizer="adamw", lr=0.01,
                                   schedule="constant", validate_every=3, checkpoint_every=0, device="cpu", seed=3)
    result = train(config, data)
    validations = [e for e in read_events(tmp_path / name / "events.jsonl") if e["event"] == "validation"]
    assert [set(e["branch_dice"]) for e in validations] == [{"teacher"}, {"teacher"}]
    measured = validate_method(result.method, data.validation)
    assert validations[-1]["branch_dice"]["teacher"] == pytest.approx(measured["teacher"].dice, abs=1e-9)
    assert result.metrics["validation_branch_dice"] == validations[-1]["branch_dice"]
    assert all(module.training for network in result.method.networks.values() for module in network.modules())


@pytest.mark.parametrize("name", ["mean-teacher", "ua-mt", "ss-net"])
def test_a_short_run_keeps_the_consistency_ramp_s_share_of_the_run(name):
    """The CPU benchmark's 400 steps: the weight reaches at step t what the paper's run reaches
    at the same fraction of its length (a 6000-step ramp would leave it near 0 throughout)."""
    card = small_card()
    published_steps = get_method(name).recommended_training()["iterations"]
    published = create_method(name, card)
    short = create_method(name, card, get_method(name).schedule_for(400))
    for fraction in (0.1, 0.25, 0.5, 1.0):
        step = round(400 * fraction)
        expected = published.consistency_weight(round(published_steps * fraction))
        assert short.consistency_weight(step) == pytest.approx(expected, rel=0.15, abs=1e-3)
    assert published.consistency_weight(399) < 0.1 * published.params.consistency, "why the rescaling is needed"
    assert short.consistency_weight(399) > 0.9 * short.params.consistency


@pytest.mark.parametrize("name", ["mean-teacher", "ua-mt", "ss-net", "dual-branch-kd"])
def test_a_fine_tune_from_a_trained_model_has_the_full_consistency_weight_from_its_first_step(name):
    """From a trained model the weight ramp is dropped (``warm_start``); a fitted ramp would
    leave the unsupervised term near 0 for most of a short fine-tune."""
    card = small_card(dropout=name != "dual-branch-kd")
    fitted = get_method(name).schedule_for(150)
    warm = get_method(name).schedule_for(150, warm_start=True)
    ramp = get_method(name).weight_ramps[0]
    assert warm[ramp] == 0 and {k: v for k, v in warm.items() if k != ramp} == \
        {k: v for k, v in fitted.items() if k != ramp}, "only the weight ramp changes"
    if name != "dual-branch-kd":  # its published ramp is already 0
        full = create_method(name, card, warm).params.consistency
        assert create_method(name, card, warm).consistency_weight(0) == pytest.approx(full)
        assert create_method(name, card, fitted).consistency_weight(10) < 0.1 * full


def test_methods_without_step_counted_hyperparameters_are_left_alone():
    assert get_method("supervised").schedule_for(400) == {}
    assert get_method("dual-branch-kd").schedule_for(400) == {}
    assert get_method("crossmatch").schedule_for(14000) == {"threshold_ramp": 17000}
    assert get_method("crossmatch").schedule_for(7000) == {"threshold_ramp": 8500}
