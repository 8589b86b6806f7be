"""Dual-branch confidence-maximisation KD: the entropy and KL terms against arithmetic written
out here, the voxels each term covers, the ablation switches, where each term's gradient goes,
the deployed student branch, and a short run through the real trainer."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import Batch, MethodError, StepInfo, create_method, get_method
from napari_semiseg.engine.methods._kd_losses import kl_divergence, shannon_entropy
from napari_semiseg.engine.methods.dual_branch_kd import DualBranchKD
from napari_semiseg.engine.networks import build_network
from napari_semiseg.engine.training import (CaseSource, TrainConfig, TrainingData, load_model, read_events, train,
                                            validate_method)
from training_support import box_case


# -- independent arithmetic -------------------------------------------------------------------------

def np_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, written out in float64."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_entropy(logits: np.ndarray) -> float:
    """Mean over voxels of −Σ_c p_c ln p_c."""
    p = np_softmax(logits.astype(np.float64))
    return float(np.mean(-(p * np.log(p)).sum(axis=1)))


def np_kl(q: np.ndarray, student_logits: np.ndarray) -> float:
    """Mean over voxels of Σ_c q_c (ln q_c − ln p_c), with 0·ln 0 = 0."""
    q = q.astype(np.float64)
    p = np_softmax(student_logits.astype(np.float64))
    q_log_q = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return float(np.mean((q_log_q - q * np.log(p)).sum(axis=1)))


# -- the two terms ------------------------------------------------------------------------------------

def test_entropy_of_hand_built_logits():
    # Voxel 1: logits (0, 0) → p = (½, ½), H = ln 2. Voxel 2: logits (ln 3, 0) → p = (¾, ¼),
    # H = −¾ ln ¾ − ¼ ln ¼. Mean of the two.
    logits = torch.tensor([[[[[0.0, math.log(3.0)]]], [[[0.0, 0.0]]]]])  # (1, 2, 1, 1, 2)
    expected = 0.5 * (math.log(2.0) + (-0.75 * math.log(0.75) - 0.25 * math.log(0.25)))
    assert float(shannon_entropy(logits)) == pytest.approx(expected, rel=1e-6)


def test_entropy_of_random_logits_and_of_a_mask():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(2, 3, 4, 5, 6))
    assert float(shannon_entropy(torch.from_numpy(logits))) == pytest.approx(np_entropy(logits), rel=1e-9)
    mask = rng.random((2, 4, 5, 6)) < 0.3
    p = np_softmax(logits)
    per_voxel = -(p * np.log(p)).sum(axis=1)
    masked = float(shannon_entropy(torch.from_numpy(logits), torch.from_numpy(mask)))
    assert masked == pytest.approx(per_voxel[mask].mean(), rel=1e-9)
    # A confident voxel (saturated softmax) has zero entropy, not NaN.
    assert float(shannon_entropy(torch.tensor([[[[[200.0]]], [[[-200.0]]]]]))) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_hand_built_tensors():
    # q = (0.8, 0.2), student logits (0, ln 4) → p = (0.2, 0.8):
    # KL = 0.8 ln(0.8/0.2) + 0.2 ln(0.2/0.8) = 0.6 ln 4.  Second voxel: q = p → 0.
    q = torch.tensor([[[[[0.8, 0.5]]], [[[0.2, 0.5]]]]])
    student = torch.tensor([[[[[0.0, 1.0]]], [[[math.log(4.0), 1.0]]]]])
    expected = 0.5 * (0.6 * math.log(4.0) + 0.0)
    assert float(kl_divergence(q, student)) == pytest.approx(expected, rel=1e-6)


def test_kl_of_random_tensors_with_exact_zeros_in_the_target():
    rng = np.random.default_rng(1)
    q = np_softmax(rng.normal(0, 2, size=(2, 2, 3, 4, 5)))
    q[:, 0, 0] = 0.0   # 8-bit soft labels hold exact 0 and 1
    q[:, 1, 0] = 1.0
    student = rng.normal(0, 2, size=q.shape)
    value = float(kl_divergence(torch.from_numpy(q), torch.from_numpy(student)))
    assert np.isfinite(value) and value == pytest.approx(np_kl(q, student), rel=1e-9)
    assert float(kl_divergence(torch.from_numpy(q), torch.from_numpy(np.log(q + 1e-300)))) == pytest.approx(0, abs=1e-9)


def test_kl_gives_the_teacher_no_gradient():
    rng = np.random.default_rng(2)
    teacher_logits = torch.tensor(rng.normal(size=(1, 2, 2, 3, 3)), requires_grad=True)
    student_logits = torch.tensor(rng.normal(size=(1, 2, 2, 3, 3)), requires_grad=True)
    kl_divergence(torch.softmax(teacher_logits, dim=1), student_logits).backward()
    assert teacher_logits.grad is None
    assert student_logits.grad is not None and float(student_logits.grad.abs().sum()) > 0


# -- the method ---------------------------------------------------------------------------------------------

def small_card(dropout: bool = True):
    """The cpu-small card's network on a smaller patch (the 2-core test machines)."""
    card = load_card("cpu-small")
    return dataclasses.replace(card, patch_size=(16, 32, 32),
                               network=dataclasses.replace(card.network, dropout=dropout))


def make_batch(card, n_labeled=2, n_unlabeled=2, seed=0) -> Batch:
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.normal(size=(n_labeled + n_unlabeled, 1, *card.patch_size)).astype(np.float32))
    label = torch.from_numpy((rng.random((n_labeled, *card.patch_size)) < 0.3).astype(np.int64))
    return Batch(image, label, n_labeled)


def method_with(params, seed=0, card=None):
    torch.manual_seed(seed)
    return create_method("dual-branch-kd", card or small_card(dropout=False), params)


def test_registered_with_the_student_deployed_and_both_decoders_built():
    assert get_method("dual-branch-kd") is DualBranchKD
    method = method_with({})
    dual = method.network("model")
    assert dual.has_second_decoder
    assert method.deployed_network_name == "student" and method.trainable_networks == ("model",)
    # The optimiser sees every weight once: encoder and both decoders.
    assert len(list(method.parameters())) == len(list(dual.parameters()))
    assert {id(p) for p in method.deployed_network().parameters()} <= {id(p) for p in dual.parameters()}


def test_each_term_covers_the_voxels_the_spec_says():
    """In eval mode the step is deterministic: recompute each term from the two branches' logits."""
    for kl_voxels in ("unlabeled", "all"):
        method = method_with({"kl_voxels": kl_voxels})
        batch = make_batch(method.card)
        method.set_training(False)
        with torch.no_grad():
            losses = method.training_step(batch, StepInfo(0, 10, 1e-3))
            teacher, student = (t.numpy() for t in method.network("model").forward_dual(batch.image))
        first = 2 if kl_voxels == "unlabeled" else 0
        assert float(losses["kl"]) == pytest.approx(np_kl(np_softmax(teacher[first:]), student[first:]), rel=1e-4)
        assert float(losses["entropy"]) == pytest.approx(np_entropy(student[2:]), rel=1e-4)


@pytest.mark.parametrize("terms, kept", [("both", {"kl", "entropy"}), ("kl", {"kl"}), ("entropy", {"entropy"})])
def test_the_ablation_switches_remove_exactly_the_named_term(terms, kept):
    params = {"terms": terms, "lambda_kl": 0.7, "lambda_ent": 0.3}
    method = method_with(params)
    batch = make_batch(method.card)
    method.set_training(True)
    losses = method.training_step(batch, StepInfo(0, 10, 1e-3))
    weights = {"kl": 0.7, "entropy": 0.3}
    expected = losses["teacher"] + losses["student_supervised"]
    for term in kept:
        expected = expected + weights[term] * losses[term]
    assert float(losses["total"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    for term in {"kl", "entropy"} - kept:
        assert not losses[term].requires_grad  # logged for comparison, not trained on
    # Changing the weight of a removed term changes nothing; of a kept term, the total.
    for term, key in (("kl", "lambda_kl"), ("entropy", "lambda_ent")):
        other = method_with({**params, key: 50.0})
        other_total = float(other.training_step(batch, StepInfo(0, 10, 1e-3))["total"].detach())
        if term in kept:
            assert other_total != pytest.approx(float(losses["total"].detach()), rel=1e-3)
        else:
            assert other_total == pytest.approx(float(losses["total"].detach()), rel=1e-6)


def test_the_student_supervised_term_is_an_option():
    batch = make_batch(small_card())
    with_it = method_with({"student_supervised": True}).training_step(batch, StepInfo(0, 10, 1e-3))
    without = method_with({"student_supervised": False}).training_step(batch, StepInfo(0, 10, 1e-3))
    difference = float((with_it["total"] - without["total"]).detach())
    assert difference == pytest.approx(float(with_it["student_supervised"].detach()), rel=1e-5)


def gradient_reach(method, loss) -> dict[str, bool]:
    """Which part of the dual network a loss sends gradient to (any non-zero entry)."""
    dual = method.network("model")
    parts = {"encoder": dual.encoder, "teacher_decoder": dual.decoder, "student_decoder": dual.student_decoder}
    reach = {}
    for name, module in parts.items():
        grads = torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True)
        reach[name] = any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    return reach


def test_gradients_kl_and_entropy_reach_the_student_and_encoder_never_the_teacher_decoder():
    method = method_with({})
    method.set_training(True)
    losses = method.training_step(make_batch(method.card), StepInfo(0, 10, 1e-3))
    unlabeled_only = {"encoder": True, "teacher_decoder": False, "student_decoder": True}
    assert gradient_reach(method, losses["kl"]) == unlabeled_only
    assert gradient_reach(method, losses["entropy"]) == unlabeled_only
    assert gradient_reach(method, losses["teacher"]) == {"encoder": True, "teacher_decoder": True,
                                                         "student_decoder": False}
    assert gradient_reach(method, losses["total"]) == {"encoder": True, "teacher_decoder": True,
                                                       "student_decoder": True}


def test_ramp_up_scales_both_unlabelled_weights():
    method = method_with({"rampup": 100, "lambda_kl": 2.0, "lambda_ent": 0.5})
    early, late = method.unlabeled_weights(StepInfo(0, 200, 1e-3)), method.unlabeled_weights(StepInfo(150, 200, 1e-3))
    assert early == pytest.approx({"kl": 2.0 * math.exp(-5.0), "entropy": 0.5 * math.exp(-5.0)})
    assert late == pytest.approx({"kl": 2.0, "entropy": 0.5})


@pytest.mark.parametrize("values, named", [({"terms": "none"}, "terms"), ({"kl_voxels": "labeled"}, "kl_voxels"),
                                           ({"lambda_kl": -1}, "lambda_kl"), ({"dice": "cubic"}, "dice"),
                                           ({"temperature": 2}, "temperature")])
def test_bad_hyperparameters_are_named(values, named):
    with pytest.raises(MethodError, match=named):
        create_method("dual-branch-kd", small_card(), values)


def test_the_deployed_weights_are_the_student_branch_of_a_plain_network():
    method = method_with({}, card=small_card(dropout=True))
    plain = build_network(method.deployed_spec())
    plain.load_state_dict(method.deployed_state_dict())
    assert not plain.has_second_decoder
    dual = method.network("model")
    dual.eval(), plain.eval()
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        teacher, student = dual.forward_dual(x)
        assert torch.equal(plain(x), student)
        assert torch.equal(method.branch_network("teacher")(x), teacher)
        assert not torch.equal(teacher, student)


def test_fine_tuning_starts_both_decoders_from_the_deployed_model():
    torch.manual_seed(5)
    source = create_method("supervised", small_card()).deployed_state_dict()
    method = method_with({}, seed=6, card=small_card())
    assert method.initialize_from(source) == ["model", "student"]
    for branch in ("teacher", "student"):
        state = method.branch_network(branch).state_dict()
        assert all(torch.equal(state[k], source[k]) for k in source)
    with pytest.raises(MethodError, match="another card"):
        method.initialize_from({"encoder.x": torch.zeros(1)})


# -- through the trainer ------------------------------------------------------------------------------------

def test_a_short_run_through_the_trainer_lowers_the_loss_and_reports_both_branches(tmp_path):
    shape = (24, 40, 40)
    data = TrainingData([CaseSource.from_arrays(f"lab{i}", *box_case(i, shape)) for i in range(2)],
                        [CaseSource.from_arrays(f"unl{i}", box_case(100 + i, shape)[0]) for i in range(2)],
                        [CaseSource.from_arrays("val0", *box_case(200, shape))])
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="dual-branch-kd", iterations=20,
                                   batch_labeled=1, batch_unlabeled=1, optimizer="adamw", lr=0.01,
                                   schedule="constant", validate_every=20, checkpoint_every=0, device="cpu", seed=3)
    result = train(config, data)
    totals = [record["losses"]["total"] for record in result.history]
    assert result.status == "finished" and len(totals) == 20
    assert np.mean(totals[-4:]) < 0.8 * np.mean(totals[:4])
    events = read_events(tmp_path / "run" / "events.jsonl")
    last = [e for e in events if e["event"] == "iteration"][-1]["losses"]
    assert {"teacher", "student_supervised", "kl", "entropy", "train_dice_teacher", "train_dice_student",
            "total"} <= set(last)
    assert [e for e in events if e["event"] == "validation"][-1]["per_case"].keys() == {"val0"}
    # The trainer validated both branches (the deployed student's Dice, the teacher's beside it);
    # validate_method gives the same numbers outside a run.
    branches = validate_method(result.method, data.validation)
    assert branches["deployed"].dice == pytest.approx(result.metrics["validation_dice"], abs=1e-9)
    assert 0.0 <= branches["teacher"].dice <= 1.0 and set(branches["teacher"].per_case) == {"val0"}
    reported = [e for e in events if e["event"] == "validation"][-1]["branch_dice"]
    assert reported == {"teacher": pytest.approx(branches["teacher"].dice, abs=1e-9)}
    assert result.metrics["validation_branch_dice"] == reported
    # The model file is the student branch as a plain single-decoder network.
    trained = load_model(result.model)
    assert not trained.network.has_second_decoder
    x = torch.randn(1, 1, 16, 32, 32)
    student = result.method.branch_network("student").eval()
    with torch.no_grad():
        assert torch.equal(trained.network(x), student(x))
