"""CrossMatch: each loss term against arithmetic written out here, the confidence mask, the
threshold schedules, the strong views, the stacked feature dropout, the hyperparameter
variants, and a short run through the real trainer on the easy synthetic task."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import Batch, MethodError, StepInfo, create_method, get_method, list_methods
from napari_semiseg.engine.methods._crossmatch_losses import (HardTargets, confidence_threshold, confident_dice,
                                                              decoder_distillation_loss, distillation_loss,
                                                              image_perturbation_loss, teacher_distillation_loss,
                                                              total_loss)
from napari_semiseg.engine.methods._feature_dropout import FeatureDropoutStack, split_stacked
from napari_semiseg.engine.methods._strong_aug import StrongAugmentation, bias_field, strong_view
from napari_semiseg.engine.methods.crossmatch import CrossMatch
from napari_semiseg.engine.training import CaseSource, TrainConfig, TrainingData, read_events, train
from napari_semiseg.engine.training._subprocess import free_port
from training_support import box_case, file_data_spec, tiny_config

SMOOTH = 1e-5
LN2 = 0.6931471805599453


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machines two OpenMP threads spin-wait for each
    other and a step runs several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- independent arithmetic -------------------------------------------------------------------------

def np_squared_dice(p: np.ndarray, g: np.ndarray, keep: np.ndarray) -> float:
    """1 − (2Σpg + 1e-5)/(Σp² + Σg² + 1e-5) over the kept voxels only, written out."""
    p, g = p[keep].astype(np.float64), g[keep].astype(np.float64)
    return 1.0 - (2.0 * np.sum(p * g) + SMOOTH) / (np.sum(p * p) + np.sum(g * g) + SMOOTH)


def random_case(rng, shape=(2, 3, 4, 5)):
    """(foreground probability, hard label, confidence) as numpy arrays of ``shape``."""
    p = rng.random(shape)
    label = (rng.random(shape) < 0.5).astype(np.int64)
    confidence = 0.5 + 0.5 * rng.random(shape)
    return p, label, confidence


def as_probs(p_fg: np.ndarray) -> torch.Tensor:
    """Two-class probabilities (B, 2, ...) from a foreground probability (B, ...)."""
    p = torch.from_numpy(p_fg).float()
    return torch.stack([1.0 - p, p], dim=1)


def as_targets(label: np.ndarray, confidence: np.ndarray) -> HardTargets:
    return HardTargets(torch.from_numpy(label), torch.from_numpy(confidence).float())


# -- the confidence-masked squared Dice ---------------------------------------------------------------

def test_confident_dice_on_a_hand_built_case():
    p_fg = np.array([[[[0.9, 0.2], [0.6, 0.3]]]])          # (1, 1, 2, 2)
    label = np.array([[[[1, 0], [1, 1]]]])
    confidence = np.array([[[[0.95, 0.8], [0.55, 0.9]]]])   # the 0.55 voxel falls below τ = 0.7
    # kept voxels (p, g): (0.9, 1), (0.2, 0), (0.3, 1): Σpg = 1.2, Σp² = 0.94, Σg² = 2
    expected = 1.0 - (2 * 1.2 + SMOOTH) / (0.94 + 2.0 + SMOOTH)
    loss = confident_dice(as_probs(p_fg), as_targets(label, confidence), 0.7)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_the_confidence_mask_removes_voxels_from_all_three_sums():
    rng = np.random.default_rng(0)
    p, label, confidence = random_case(rng)
    threshold = 0.75
    keep = confidence >= threshold
    loss = float(confident_dice(as_probs(p), as_targets(label, confidence), threshold))
    assert loss == pytest.approx(np_squared_dice(p, label, keep), rel=1e-5)
    # Whatever the prediction and the label say at the ignored voxels, the loss is the same:
    # neither Σpg, nor Σp², nor Σg² sees them.
    p2, label2 = p.copy(), label.copy()
    p2[~keep], label2[~keep] = 1.0, 1
    changed = confident_dice(as_probs(p2), as_targets(label2, confidence), threshold)
    assert float(changed) == pytest.approx(loss, rel=1e-6)
    # ...while they do count without the mask.
    assert np_squared_dice(p2, label2, np.ones_like(keep)) != pytest.approx(loss, rel=1e-3)


def test_a_target_with_no_confident_voxel_gives_zero_loss():
    p, label, confidence = random_case(np.random.default_rng(1))
    assert float(confident_dice(as_probs(p), as_targets(label, confidence), 1.01)) == pytest.approx(0.0)


def test_hard_targets_are_argmax_and_max_softmax_and_cutmix_takes_the_box_from_the_source():
    logits = torch.tensor([[[[[2.0, 0.0]]], [[[0.0, 1.0]]]]])  # (B=1, K=2, 1, 1, 2)
    targets = HardTargets.from_logits(logits)
    assert targets.label.tolist() == [[[[0, 1]]]]
    expected = [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-1.0))]
    assert targets.confidence.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    source = HardTargets(torch.tensor([[[[1, 0]]]]), torch.tensor([[[[0.99, 0.98]]]]))
    mixed = targets.cutmixed(source, torch.tensor([[[[True, False]]]]))
    assert mixed.label.tolist() == [[[[1, 1]]]]
    assert mixed.confidence.flatten().tolist() == pytest.approx([0.99, expected[1]], rel=1e-6)


# -- each loss term -----------------------------------------------------------------------------------

def test_image_perturbation_loss_is_the_mean_of_the_two_strong_views_dice():
    rng = np.random.default_rng(2)
    (p1, y1, c1), (p2, y2, c2) = random_case(rng), random_case(rng)
    tau = 0.7
    expected = 0.5 * (np_squared_dice(p1, y1, c1 >= tau) + np_squared_dice(p2, y2, c2 >= tau))
    loss = image_perturbation_loss(as_probs(p1), as_probs(p2), as_targets(y1, c1), as_targets(y2, c2), tau)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_teacher_distillation_loss_averages_the_four_feature_perturbed_students():
    rng = np.random.default_rng(3)
    p_w_fw, p_w_fs, p_s2_fw, p_s2_fs = (rng.random((2, 3, 4, 5)) for _ in range(4))
    _, t_w, c_w = random_case(rng)
    _, y2, c2 = random_case(rng)
    tau = 0.8
    expected = (np_squared_dice(p_w_fw, t_w, c_w >= tau) + np_squared_dice(p_w_fs, t_w, c_w >= tau)
                + np_squared_dice(p_s2_fw, y2, c2 >= tau) + np_squared_dice(p_s2_fs, y2, c2 >= tau)) / 4
    loss = teacher_distillation_loss(as_probs(p_w_fw), as_probs(p_w_fs), as_probs(p_s2_fw), as_probs(p_s2_fs),
                                     as_targets(t_w, c_w), as_targets(y2, c2), tau)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_decoder_distillation_loss_pairs_each_decoder_with_its_own_weak_image_target():
    rng = np.random.default_rng(4)
    (p_fw, y_fw, c_fw), (p_fs, y_fs, c_fs) = random_case(rng), random_case(rng)
    tau = 0.6
    expected = 0.5 * (np_squared_dice(p_fw, y_fw, c_fw >= tau) + np_squared_dice(p_fs, y_fs, c_fs >= tau))
    loss = decoder_distillation_loss(as_probs(p_fw), as_probs(p_fs), as_targets(y_fw, c_fw),
                                     as_targets(y_fs, c_fs), tau)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    swapped = decoder_distillation_loss(as_probs(p_fw), as_probs(p_fs), as_targets(y_fs, c_fs),
                                        as_targets(y_fw, c_fw), tau)
    assert float(swapped) != pytest.approx(expected, rel=1e-3)


def test_distillation_and_total_weightings():
    tkd, dkd = torch.tensor(0.5), torch.tensor(0.2)
    assert float(distillation_loss(tkd, dkd, 0.3)) == pytest.approx(0.7 * 0.5 + 0.3 * 0.2)
    sup, ip, kd = torch.tensor(0.4), torch.tensor(0.6), torch.tensor(0.2)
    # HEAD: ½(L_sup + ¼D1 + ¼D2 + L_kd) with L_ip = ½(D1 + D2)
    assert float(total_loss(sup, ip, kd, "head2025")) == pytest.approx(0.5 * (0.4 + 0.25 * 0.6 * 2 + 0.2))
    # paper release: ⅓(L_sup + ½D1 + ½D2 + L_kd)
    assert float(total_loss(sup, ip, kd, "paper2024")) == pytest.approx((0.4 + 0.6 + 0.2) / 3)
    # the paper's Eq. 12
    assert float(total_loss(sup, ip, kd, "paper")) == pytest.approx(0.4 + 0.6 + 0.2)


# -- the confidence threshold -------------------------------------------------------------------------------

def test_code_threshold_is_the_ln2_scaled_ramp_one_step_late():
    ramp = lambda t, length: math.exp(-5.0 * (1.0 - min(t, length) / length) ** 2)  # noqa: E731
    assert confidence_threshold(0, "code", 0.75, 17000) == 0.75
    assert confidence_threshold(1, "code", 0.75, 17000) == pytest.approx((0.75 + 0.25 * math.exp(-5.0)) * LN2)
    assert confidence_threshold(8501, "code", 0.85, 17000) == pytest.approx(
        (0.85 + 0.15 * ramp(8500, 17000)) * LN2)
    assert confidence_threshold(30000, "code", 0.75, 17000) == pytest.approx(LN2)


def test_paper_threshold_is_fixed():
    assert {confidence_threshold(t, "paper", 0.85, 17000) for t in (0, 1, 500, 20000)} == {0.85}


# -- strong views -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["noise", "constant", "wide"])
def test_strong_views_keep_shape_and_finite_values(kind):
    rng = np.random.default_rng(5)
    image = {"noise": rng.normal(size=(1, 16, 24, 24)),
             "constant": np.full((1, 16, 24, 24), 2.5),
             "wide": rng.normal(scale=1e3, size=(2, 8, 12, 16))}[kind].astype(np.float32)
    original = image.copy()
    settings = StrongAugmentation(bias_gamma_probability=1.0, blur_probability=1.0)
    for seed in range(12):
        view = strong_view(image, np.random.default_rng(seed), settings)
        assert view.shape == image.shape and view.dtype == np.float32
        assert np.isfinite(view).all()
    assert np.array_equal(image, original)


def test_strong_views_differ_from_the_weak_view_and_between_draws():
    image = np.random.default_rng(6).normal(size=(1, 16, 24, 24)).astype(np.float32)
    settings = StrongAugmentation(bias_gamma_probability=1.0, blur_probability=1.0)
    rng = np.random.default_rng(0)
    first, second = strong_view(image, rng, settings), strong_view(image, rng, settings)
    assert not np.allclose(first, image) and not np.allclose(first, second)
    off = StrongAugmentation(bias_gamma_probability=0.0, blur_probability=0.0)
    assert np.array_equal(strong_view(image, np.random.default_rng(0), off), image)


def test_bias_field_is_the_exponential_of_the_polynomial():
    shape = (3, 4, 5)
    # order 1: monomials 1, x, y, z in the order (i, j, k) = (0,0,0), (0,0,1), (0,1,0), (1,0,0)
    c0, cx, cy, cz = 0.1, 0.3, -0.2, 0.4
    field = bias_field(shape, [c0, cx, cy, cz], order=1).numpy()
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    assert np.allclose(field, np.exp(c0 + cx * x + cy * y + cz * z), rtol=1e-5)
    assert bias_field(shape, np.zeros(20), order=3).numpy() == pytest.approx(np.ones(shape))


# The gamma and the blur are checked against their formulas in test_fidelity.py.


# -- feature dropout --------------------------------------------------------------------------------------

def test_feature_dropout_rates_are_a_quarter_and_three_quarters():
    torch.manual_seed(0)
    n_first, n_second, channels = 3, 5, 400
    features = [torch.ones(n_first + n_second, channels, 2, 2, 2), torch.ones(n_first + n_second, channels, 1, 1, 1)]
    for out in FeatureDropoutStack(n_first, 0.25, 0.75)(features):
        assert out.shape[0] == n_first + 3 * n_second
        clean, weak, strong = out[:n_first + n_second], out[-2 * n_second:-n_second], out[-n_second:]
        assert torch.equal(clean, torch.ones_like(clean))
        # Dropout3d drops whole channels of a sample and scales the survivors by 1/(1 − p).
        for copy, p in ((weak, 0.25), (strong, 0.75)):
            per_channel = copy.flatten(2)
            assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))
            zero = (per_channel[..., 0] == 0).float().mean().item()
            assert zero == pytest.approx(p, abs=0.03)
            assert torch.allclose(per_channel[per_channel != 0], torch.tensor(1.0 / (1.0 - p)))


def test_one_stacked_pass_gives_the_clean_and_both_perturbed_outputs():
    card = load_card("cpu-small")
    net = create_method("crossmatch", card).network("model").eval()
    x, u = torch.randn(2, 1, 16, 32, 32), torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        plain = net(torch.cat([x, u]))
        stacked = net(torch.cat([x, u]), perturb=FeatureDropoutStack(2, 0.0, 0.0), decoder_dropout=False)
        a, b, b_weak, b_strong = split_stacked(stacked, 2, 1)
        assert torch.allclose(a, plain[:2], atol=1e-5) and torch.allclose(b, plain[2:], atol=1e-5)
        assert torch.allclose(b_weak, b, atol=1e-5) and torch.allclose(b_strong, b, atol=1e-5)
        torch.manual_seed(1)
        _, b, b_weak, b_strong = split_stacked(
            net(torch.cat([x, u]), perturb=FeatureDropoutStack(2), decoder_dropout=False), 2, 1)
        assert torch.allclose(b, plain[2:], atol=1e-5)
        weak_change = (b_weak - b).abs().mean()
        assert 0 < weak_change < (b_strong - b).abs().mean()


# -- hyperparameters and variants ---------------------------------------------------------------------------

def test_crossmatch_is_registered_with_two_unlabelled_streams():
    assert "crossmatch" in list_methods() and get_method("crossmatch") is CrossMatch
    assert CrossMatch.unlabeled_streams == ("unlabeled", "mix")


def test_head_defaults_and_the_paper_release_variant_resolve_as_the_official_history():
    card = load_card("cpu-small")
    head = create_method("crossmatch", card).params_dict()
    assert (head["tau"], head["teacher_mode"], head["dkd_targets"], head["loss_weighting"]) == (
        0.75, "train", "mixed", "head2025")
    assert (head["eta"], head["weak_dropout"], head["strong_dropout"], head["cutmix_box"]) == (
        0.3, 0.25, 0.75, "official")
    paper = create_method("crossmatch", card, {"variant": "paper2024"}).params_dict()
    assert (paper["tau"], paper["teacher_mode"], paper["dkd_targets"], paper["loss_weighting"]) == (
        0.85, "eval", "unmixed", "paper2024")
    mixed = create_method("crossmatch", card, {"variant": "paper2024", "dkd_targets": "mixed"}).params_dict()
    assert mixed["dkd_targets"] == "mixed" and mixed["teacher_mode"] == "eval"
    described = create_method("crossmatch", card, {"threshold_mode": "paper"}).params_dict()
    assert described["tau"] == 0.85 and None not in head.values()


@pytest.mark.parametrize("values, named", [
    ({"variant": "2023"}, "variant"), ({"cutmix_box": "swapped"}, "cutmix_box"),
    ({"threshold_mode": "entropy"}, "threshold_mode"), ({"strong_dropout": 1.0}, "strong_dropout"),
    ({"eta": 1.5}, "eta"), ({"cutmix_min_volume": 0.5}, "cutmix"), ({"temperature": 2}, "temperature"),
])
def test_bad_hyperparameters_are_named(values, named):
    with pytest.raises(MethodError, match=named):
        create_method("crossmatch", load_card("cpu-small"), values)


def test_the_recommended_recipe_is_a_valid_trainer_configuration(tmp_path):
    recipe = CrossMatch.recommended_training()
    config = TrainConfig.from_card(load_card("cpu-small"), tmp_path, method="crossmatch", **recipe)
    assert (config.optimizer, config.lr, config.weight_decay, config.schedule, config.poly_horizon) == (
        "adamw", 1e-3, 1e-4, "poly", 17000)
    assert config.iterations == 14000 and CrossMatch.recommended_training("paper2024")["iterations"] == 9000


# -- the step -----------------------------------------------------------------------------------------------

def small_card():
    """The cpu-small card's network on a smaller patch, so that the 2-core test machines cope."""
    return dataclasses.replace(load_card("cpu-small"), patch_size=(16, 24, 24))


def views_batch(method, n_labeled=1, n_unlabeled=1, seed=0):
    rng = np.random.default_rng(seed)
    patch = method.card.patch_size
    image = torch.from_numpy(rng.normal(size=(n_labeled + n_unlabeled, 1, *patch)).astype(np.float32))
    label = torch.from_numpy((rng.random((n_labeled, *patch)) < 0.3).astype(np.int64))
    extra = {"mix": torch.from_numpy(rng.normal(size=(n_unlabeled, 1, *patch)).astype(np.float32))}
    for stream, images in (("unlabeled", image[n_labeled:]), ("mix", extra["mix"])):
        views = [method.sample_views(stream, im.numpy(), None, rng) for im in images]
        for key in views[0]:
            extra[f"{stream}/{key}"] = torch.from_numpy(np.stack([v[key] for v in views]))
    return Batch(image, label, n_labeled, extra)


def test_sample_views_give_strong_views_to_both_streams_and_boxes_to_the_main_one():
    method = create_method("crossmatch", small_card())
    image = np.random.default_rng(0).normal(size=(1, 16, 24, 24)).astype(np.float32)
    main = method.sample_views("unlabeled", image, None, np.random.default_rng(1))
    assert set(main) == {"strong1", "strong2", "box1", "box2"}
    assert main["strong1"].shape == image.shape and main["box1"].shape == (3, 2)
    assert set(method.sample_views("mix", image, None, np.random.default_rng(1))) == {"strong1", "strong2"}
    assert method.sample_views("labeled", image, np.zeros((16, 24, 24), np.int64), np.random.default_rng(1)) == {}
    again = method.sample_views("unlabeled", image, None, np.random.default_rng(1))
    assert all(np.array_equal(main[k], again[k]) for k in main)


@pytest.mark.parametrize("params", [
    {}, {"variant": "paper2024"},
    {"loss_weighting": "paper", "threshold_mode": "paper", "cutmix_box": "within-patch"},
])
def test_a_step_gives_finite_losses_that_reach_every_parameter_and_leaves_train_mode(params):
    torch.manual_seed(0)
    method = create_method("crossmatch", small_card(), params)
    method.set_training(True)
    losses = method.training_step(views_batch(method), StepInfo(5, 100, 1e-3))
    assert set(losses) == {"supervised", "ip", "tkd", "dkd", "kd", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    model = method.network("model")
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_a_batch_without_the_second_stream_is_refused_with_a_clear_message():
    method = create_method("crossmatch", small_card())
    batch = views_batch(method)
    del batch.extra["mix"]
    with pytest.raises(MethodError, match="two unlabelled streams"):
        method.training_step(batch, StepInfo(0, 10, 1e-3))


def test_a_short_run_through_the_trainer_lowers_the_loss(tmp_path):
    shape = (24, 32, 32)
    data = TrainingData([CaseSource.from_arrays(f"lab{i}", *box_case(i, shape)) for i in range(2)],
                        [CaseSource.from_arrays(f"unl{i}", box_case(100 + i, shape)[0]) for i in range(2)])
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="crossmatch", iterations=20,
                                   batch_labeled=1, batch_unlabeled=1, optimizer="adamw", lr=0.01,
                                   schedule="constant", validate_every=0, checkpoint_every=0, device="cpu", seed=3)
    result = train(config, data)
    totals = [record["losses"]["total"] for record in result.history]
    assert result.status == "finished" and len(totals) == 20
    # Step 0 uses τ_0 = 0.75 unscaled, which an untrained network never reaches: skip it.
    assert np.mean(totals[-4:]) < 0.85 * np.mean(totals[1:5])
    iterations = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "iteration"]
    assert {"supervised", "ip", "tkd", "dkd", "kd", "total"} <= set(iterations[-1]["losses"])
    start = next(e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "start")
    assert start["method"] == "crossmatch" and start["method_params"]["teacher_mode"] == "train"


RANK_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)
    import napari_semiseg.engine.methods.crossmatch  # registers "crossmatch"
    from napari_semiseg.engine.training import TrainConfig, train

    result = train(TrainConfig.read(sys.argv[1]))
    network = result.method.deployed_network()
    torch.save({k: v.detach().clone() for k, v in network.named_parameters()},
               os.path.join(sys.argv[2], "rank" + os.environ["RANK"] + ".pt"))
""")


def test_two_gloo_ranks_keep_the_same_weights_through_the_stacked_passes(tmp_path):
    """Two forward passes with gradient (and no-gradient teacher passes) per step under
    DistributedDataParallel: the gradients are averaged once and the ranks stay in step."""
    config = tiny_config(tmp_path / "run", method="crossmatch", iterations=2, batch_labeled=1, batch_unlabeled=1,
                         data=file_data_spec(tmp_path / "cases", n_labeled=2, n_unlabeled=2, n_validation=0))
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(script), str(config.write()), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
