"""PLC-KD (reconstructed): which stored soft label each case distils from, the teacher team's
correction where truth exists, a distillation target that follows its image through the
trainer's augmentation voxel for voxel, the KD terms against arithmetic written out here, and
a short run through the real trainer on a real project (SQLite catalogue, NIfTI files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import Batch, MethodError, StepInfo, create_method, get_method
from napari_semiseg.engine.data import SoftTargetError
from napari_semiseg.engine.methods.plc_kd import PLCKD, plc_kd_params, resolve_soft_targets
from napari_semiseg.engine.pseudo import correct_case_soft_label, correct_soft_labels
from napari_semiseg.engine.training import (CaseSource, TrainConfig, data_spec_from_project,
                                            prepare_case, train)
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project
from training_support import box_case

PATCH = (16, 32, 32)


def small_card():
    """The cpu-small card's network on a smaller patch (the 2-core test machines)."""
    return dataclasses.replace(load_card("cpu-small"), patch_size=PATCH)


# -- a real project with teacher soft labels --------------------------------------------------------------

def add_case(project: Project, folder: Path, case_id: str, image: np.ndarray, split: str, *,
             gold: np.ndarray | None = None, teacher: np.ndarray | None = None, teacher_kind: str = "pseudo"):
    """A NIfTI case with an optional gold label and an optional teacher soft label (foreground
    probability, stored with its thresholded hard label as ``teacher_kind``)."""
    path = folder / f"{case_id}.nii.gz"
    write_volume(path, Volume.from_array(image.astype(np.float32), spacing=(1.0, 1.0, 1.0)))
    project.add_case(case_id, path, split=split)
    if gold is not None:
        project.save_label(case_id, gold.astype(np.uint8), "gold")
    if teacher is not None:
        project.save_label_with_soft_label(case_id, (teacher > 0.5).astype(np.uint8), teacher_kind,
                                           teacher.astype(np.float32))


def flawed_teacher(gold: np.ndarray, seed: int) -> np.ndarray:
    """A soft label close to ``gold`` but with a slab on the wrong side of 0.5 (so that the
    teacher team has something to correct) and smooth noise elsewhere."""
    rng = np.random.default_rng(seed)
    q = np.where(gold > 0, 0.8, 0.2) + rng.uniform(-0.15, 0.15, gold.shape)
    q[:, :4] = 1.0 - q[:, :4]  # wrong on four y-rows
    return np.clip(q, 0.01, 0.99)


def ball(shape, radius=7.0) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    centre = [s / 2 for s in shape]
    return ((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2).astype(np.uint8)


def unique_image(shape, seed: int) -> np.ndarray:
    """Distinct values increasing with the voxel index, so that a voxel of a prepared patch
    tells where it came from."""
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * 0.01 + seed


#: Distinct voxel counts, so that the z-scored images of the cases never share values.
SHAPES = {"g0": (20, 36, 36), "c0": (20, 36, 40), "u0": (20, 40, 38), "u1": (22, 36, 36), "v0": (20, 36, 36)}


@pytest.fixture
def project(tmp_path):
    """g0: gold + teacher (corrected on the fly); c0: gold + teacher + a stored corrected soft
    label; u0, u1: unlabelled with teacher soft labels; v0: validation with one (never used);
    n0: unlabelled without any soft label."""
    folder = tmp_path / "images"
    folder.mkdir()
    project = Project.create(tmp_path / "project")
    for index, (case_id, shape) in enumerate(SHAPES.items()):
        gold = ball(shape)
        split = {"g": "labelled", "c": "labelled", "u": "unlabelled", "v": "validation"}[case_id[0]]
        add_case(project, folder, case_id, unique_image(shape, index), split,
                 gold=gold if split != "unlabelled" else None, teacher=flawed_teacher(gold, index),
                 teacher_kind="prediction" if split != "unlabelled" else "pseudo")
    add_case(project, folder, "n0", unique_image((20, 36, 36), 9), "unlabelled")
    correct_case_soft_label(project, "c0")
    yield project
    project.close()


def test_each_case_distils_from_the_right_soft_label(project):
    targets = {t.case_id: t for t in resolve_soft_targets(project)}
    assert set(targets) == {"g0", "c0", "u0", "u1"}  # not the validation case, not n0 (no soft label)
    gold = {c: project.latest_label(c, kinds=("gold",)).id for c in ("g0", "c0")}
    teacher = {c: project.soft_labels(c, kind="teacher")[-1].id for c in targets}
    corrected = project.soft_labels("c0", kind="corrected")[-1]
    # A stored correction against the case's current truth is used as it is.
    assert (targets["c0"].soft_label_id, targets["c0"].gold_label_id) == (corrected.id, None)
    # A teacher soft label of a case with truth is corrected on the fly against it...
    assert (targets["g0"].soft_label_id, targets["g0"].gold_label_id) == (teacher["g0"], gold["g0"])
    # ...and an unlabelled case keeps its teacher soft label (nothing to correct against).
    assert all((targets[c].soft_label_id, targets[c].gold_label_id) == (teacher[c], None) for c in ("u0", "u1"))
    assert resolve_soft_targets(project, ["g0"], correct_with_gold=False)[0].gold_label_id is None
    with pytest.raises(SoftTargetError, match="v0.*validation"):
        resolve_soft_targets(project, ["u0", "v0"])


def test_the_method_is_reconstructed_registered_and_records_its_pinned_targets(project):
    assert get_method("plc-kd") is PLCKD and PLCKD.RECONSTRUCTED is True
    assert "RECONSTRUCTED" in PLCKD.__doc__ and "reconstructed" in PLCKD.description
    method = create_method("plc-kd", small_card(), {"project": str(project.root)})
    recorded = method.params_dict()
    assert recorded["project"] == str(Path(project.root).resolve())
    assert {t["case_id"] for t in recorded["targets"]} == {"g0", "c0", "u0", "u1"}
    # The recorded parameters rebuild the same method (what a resumed run does).
    again = create_method("plc-kd", small_card(), recorded)
    assert again.params_dict() == recorded
    assert plc_kd_params(project)["targets"] == recorded["targets"]


@pytest.mark.parametrize("values, named", [({}, "project"), ({"kd_loss": "mse"}, "kd_loss"),
                                           ({"correction": {"forcing": "teleport"}}, "forcing"),
                                           ({"distill_per_labeled": 0}, "distill_per_labeled"),
                                           ({"targets": [{"case": "u0"}]}, "soft_label_id")])
def test_bad_hyperparameters_are_named(project, values, named):
    values = {"project": str(project.root), **values} if named != "project" else values
    with pytest.raises(MethodError, match=named):
        create_method("plc-kd", small_card(), values)


def test_a_project_without_soft_labels_is_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    project = Project.create(tmp_path / "empty")
    add_case(project, folder, "u0", unique_image((20, 36, 36), 0), "unlabelled")
    project.close()
    with pytest.raises(MethodError, match="pseudo-labelling"):
        create_method("plc-kd", small_card(), {"project": str(tmp_path / "empty")})
    with pytest.raises(MethodError, match="not a napari-semiseg project|no such project"):
        create_method("plc-kd", small_card(), {"project": str(tmp_path / "nowhere")})


# -- the target follows the image ---------------------------------------------------------------------------

def prepared_values(project, case_id: str) -> np.ndarray:
    """The case's image as the trainer prepares it, flattened: increasing with the voxel index."""
    volume = project.load_image(case_id)
    values = prepare_case(CaseSource.from_arrays(case_id, volume.array, spacing=volume.spacing),
                          small_card()).image[0].ravel()
    assert np.all(np.diff(values) > 0)
    return values


def source_indices(patch: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """Flat source index of every voxel of an image patch, or None if it is not from this case."""
    index = np.clip(np.searchsorted(values, patch.ravel()), 0, values.size - 1)
    return index.reshape(patch.shape) if np.array_equal(values[index], patch.ravel()) else None


def test_the_distillation_target_is_the_corrected_soft_label_under_the_images_augmentation(project):
    method = create_method("plc-kd", small_card(), {"project": str(project.root), "distill_per_labeled": 4})
    values = {c: prepared_values(project, c) for c in ("g0", "c0", "u0", "u1")}
    gold = {c: project.load_label(project.latest_label(c, kinds=("gold",)).id) > 0 for c in ("g0", "c0")}
    teacher = {c: project.load_soft_label(project.soft_labels(c, kind="teacher")[-1])[1] for c in values}
    expected = {
        "g0": correct_soft_labels(teacher["g0"], gold_mask=np.ones(gold["g0"].shape, bool), gold_label=gold["g0"],
                                  image=project.load_image("g0").array).corrected,
        "c0": project.load_soft_label(project.soft_labels("c0", kind="corrected")[-1])[1],
        "u0": teacher["u0"], "u1": teacher["u1"]}
    assert np.any((teacher["g0"] > 0.5) != gold["g0"])  # the teacher was wrong somewhere on g0
    seen, orientations, crossed = set(), set(), 0
    dummy_image, dummy_label = np.zeros((1, *PATCH), np.float32), np.zeros(PATCH, np.int64)
    for seed in range(6):
        views = method.sample_views("labeled", dummy_image, dummy_label, np.random.default_rng(seed))
        assert views["distill_image"].shape == (4, 1, *PATCH) and views["distill_target"].shape == (4, 2, *PATCH)
        for image, target in zip(views["distill_image"], views["distill_target"]):
            case_id, index = next((c, i) for c in values if (i := source_indices(image[0], values[c])) is not None)
            seen.add(case_id)
            # Voxel for voxel, the target is the case's (corrected) soft label where the image came from.
            assert np.allclose(target[1], expected[case_id].ravel()[index], atol=1e-6)
            assert np.allclose(target[0] + target[1], 1.0, atol=1e-6)
            if case_id in gold:  # all-correct: on the gold side of 0.5 everywhere
                assert np.array_equal(target[1] > 0.5, gold[case_id].ravel()[index])
                crossed += np.count_nonzero((target[1] > 0.5) != (teacher[case_id].ravel()[index] > 0.5))
            orientations.add(tuple(np.sign(np.diff(index, axis=a).ravel()[0]) for a in (1, 2)))
    assert seen == {"g0", "c0", "u0", "u1"} and len(orientations) > 1
    assert crossed > 0  # some patches held voxels the teacher team moved across 0.5
    assert method.sample_views("unlabeled", dummy_image, None, np.random.default_rng(0)) == {}


def test_same_generator_same_patches_other_generator_other_patches(project):
    method = create_method("plc-kd", small_card(), {"project": str(project.root)})
    image, label = np.zeros((1, *PATCH), np.float32), np.zeros(PATCH, np.int64)
    a, b = (method.sample_views("labeled", image, label, np.random.default_rng(3)) for _ in range(2))
    c = method.sample_views("labeled", image, label, np.random.default_rng(4))
    assert np.array_equal(a["distill_target"], b["distill_target"])
    assert not np.array_equal(a["distill_image"], c["distill_image"])


# -- the step -------------------------------------------------------------------------------------------------

def np_kl_over(q: np.ndarray, logits: np.ndarray, keep: np.ndarray) -> float:
    """Mean over the kept voxels of Σ_c q_c (ln q_c − ln p_c), p = softmax(logits), 0·ln 0 = 0."""
    q, logits = q.astype(np.float64), logits.astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    q_log_q = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return float(((q_log_q - q * np.log(p)).sum(axis=1))[keep].mean())


def distill_batch(seed=0) -> Batch:
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.normal(size=(2, 1, *PATCH)).astype(np.float32))
    label = torch.from_numpy((rng.random((2, *PATCH)) < 0.3).astype(np.int64))
    fg = rng.uniform(0, 1, size=(2, 1, *PATCH)).astype(np.float32)
    target = np.concatenate([1 - fg, fg], axis=1)[:, None]       # (B_l, m=1, K, *PATCH)
    target[0, 0, :, :4] = 0.0                                     # zero padding of a crop: no target
    distill = rng.normal(size=(2, 1, 1, *PATCH)).astype(np.float32)
    return Batch(image, label, 2, {"labeled/distill_image": torch.from_numpy(distill),
                                   "labeled/distill_target": torch.from_numpy(target)})


@pytest.mark.parametrize("kd_loss", ["kl", "soft-dice", "kl+soft-dice"])
def test_the_step_adds_the_weighted_kd_term_over_the_voxels_that_have_a_target(project, kd_loss):
    torch.manual_seed(0)
    card = dataclasses.replace(small_card(), network=dataclasses.replace(small_card().network, dropout=False))
    method = create_method("plc-kd", card, {"project": str(project.root), "kd_loss": kd_loss, "kd_weight": 0.4})
    batch = distill_batch()
    method.set_training(False)  # deterministic: recompute the KL from the same logits
    losses = method.training_step(batch, StepInfo(0, 10, 1e-3))
    with torch.no_grad():
        logits = method.network("model")(torch.cat([batch.image, batch.extra["labeled/distill_image"][:, 0]]))
    target = batch.extra["labeled/distill_target"][:, 0].numpy()
    keep = target.sum(axis=1) > 0.5
    assert float(losses["kd_kl"]) == pytest.approx(np_kl_over(target, logits[2:].numpy(), keep), rel=1e-4)
    kd = {"kl": losses["kd_kl"], "soft-dice": losses["kd_soft_dice"],
          "kl+soft-dice": losses["kd_kl"] + losses["kd_soft_dice"]}[kd_loss]
    assert float(losses["kd"].detach()) == pytest.approx(float(kd), rel=1e-6)
    assert float(losses["total"].detach()) == pytest.approx(float(losses["supervised"].detach() + 0.4 * kd), rel=1e-6)
    method.set_training(True)
    losses = method.training_step(batch, StepInfo(0, 10, 1e-3))
    grads = torch.autograd.grad(losses["kd"], list(method.network("model").parameters()), allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_a_batch_without_distillation_patches_is_refused_with_a_clear_message(project):
    method = create_method("plc-kd", small_card(), {"project": str(project.root)})
    batch = distill_batch()
    batch.extra.clear()
    with pytest.raises(MethodError, match="distillation patches"):
        method.training_step(batch, StepInfo(0, 10, 1e-3))


# -- through the trainer --------------------------------------------------------------------------------------

def test_a_short_run_through_the_trainer_lowers_the_loss(tmp_path):
    shape = (24, 40, 40)
    folder = tmp_path / "images"
    folder.mkdir()
    project = Project.create(tmp_path / "project")
    for i in range(2):
        image, label = box_case(i, shape)
        add_case(project, folder, f"lab{i}", image, "labelled", gold=label)
    for i in range(2):
        image, label = box_case(100 + i, shape)
        add_case(project, folder, f"unl{i}", image, "unlabelled", teacher=np.where(label > 0, 0.85, 0.1))
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="plc-kd",
                                   method_params={"project": str(project.root)}, iterations=20,
                                   batch_labeled=1, batch_unlabeled=1, optimizer="adamw", lr=0.01,
                                   schedule="constant", validate_every=0, checkpoint_every=0, device="cpu", seed=3,
                                   data=data_spec_from_project(project))
    project.close()
    result = train(config)
    totals = [record["losses"]["total"] for record in result.history]
    kd = [record["losses"]["kd"] for record in result.history]
    assert result.status == "finished" and len(totals) == 20
    assert np.mean(totals[-4:]) < 0.8 * np.mean(totals[:4])
    assert np.mean(kd[-4:]) < np.mean(kd[:4])
    assert {t["case_id"] for t in result.method.params_dict()["targets"]} == {"unl0", "unl1"}


def test_a_corrected_case_chosen_for_validation_is_never_distilled_from(tmp_path):
    """The clinician corrected an unlabelled case (split "unlabelled", a corrected soft label);
    a run that validates on it must not distil from it, or its label leaks into training."""
    shape = (24, 40, 40)
    folder = tmp_path / "images"
    folder.mkdir()
    project = Project.create(tmp_path / "project")
    image, label = box_case(0, shape)
    add_case(project, folder, "lab0", image, "labelled", gold=label)
    for i in range(2):
        image, label = box_case(100 + i, shape)
        add_case(project, folder, f"unl{i}", image, "unlabelled", teacher=np.where(label > 0, 0.85, 0.1))
    project.save_label("unl1", label.astype(np.uint8), "corrected")
    correct_case_soft_label(project, "unl1")
    data = data_spec_from_project(project, labeled=["lab0"], unlabeled=["unl0"], validation=["unl1"])
    config = TrainConfig.from_card(small_card(), tmp_path / "run", method="plc-kd",
                                   method_params={"project": str(project.root)}, iterations=2,
                                   batch_labeled=1, batch_unlabeled=1, validate_every=0, checkpoint_every=0,
                                   device="cpu", data=data)
    assert {t.case_id for t in resolve_soft_targets(project)} == {"unl0", "unl1"}, "both have soft labels"
    project.close()
    result = train(config)
    assert result.status == "finished"
    assert {t["case_id"] for t in result.method.params_dict()["targets"]} == {"unl0"}
    assert {t.case_id for t in result.method.sampler.targets} == {"unl0"}
