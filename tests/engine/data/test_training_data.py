"""Cases to batches: the LA augmentation, the bounded cache, two-stream sampling, preparation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_semiseg.engine.cards import Preprocessing
from napari_semiseg.engine.training import (CaseSource, LoadedCase, TrainingData, TrainingError, TwoStreamSchedule,
                                            VolumeCache, crop_padding, la_augment, prepare_case)
from napari_semiseg.engine.training._batches import BatchDataset, make_loader
from training_support import PATCH, array_data, box_case, tiny_card, write_cases


def smooth_volume(shape, seed=0) -> np.ndarray:
    """Distinct, spatially varying intensities (so that any misalignment shows)."""
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32) + np.linspace(0, 1, shape[-1], dtype=np.float32)


# -- augmentation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(24, 32, 32), (10, 20, 28)])  # the second needs zero-padding
def test_augmentation_keeps_a_label_derived_from_the_image_derivable(shape):
    image = smooth_volume(shape)
    label = (image > 1.0).astype(np.uint8)
    seen = set()
    for seed in range(24):
        patch, label_patch = la_augment(image[None], label, PATCH, np.random.default_rng(seed))
        assert patch.shape == (1, *PATCH) and label_patch.shape == PATCH and label_patch.dtype == np.int64
        np.testing.assert_array_equal(label_patch, (patch[0] > 1.0).astype(np.int64))
        seen.add(patch.tobytes())
    assert len(seen) == 24


def _papers_augmentation(image_zyx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The LA papers' RandomRotFlip + RandomCrop on an (x, y, z) array, with our draw order."""
    xyz = image_zyx.transpose(2, 1, 0)
    k, axis = int(rng.integers(0, 4)), int(rng.integers(0, 2))
    xyz = np.flip(np.rot90(xyz, k, axes=(0, 1)), axis=axis)
    patch_xyz = PATCH[::-1]
    if any(s <= p for s, p in zip(xyz.shape, patch_xyz)):
        pads = [max((p - s) // 2 + 3, 0) for s, p in zip(xyz.shape, patch_xyz)]
        xyz = np.pad(xyz, [(p, p) for p in pads])
    starts_zyx = [int(rng.integers(0, s - p)) for s, p in zip(xyz.shape[::-1], PATCH)]
    zyx = xyz.transpose(2, 1, 0)
    return zyx[tuple(slice(s, s + p) for s, p in zip(starts_zyx, PATCH))]


@pytest.mark.parametrize("shape", [(24, 32, 40), (12, 20, 30)])
def test_augmentation_matches_the_papers_definition_in_their_axes(shape):
    image = smooth_volume(shape, seed=3)
    for seed in range(16):
        ours, _ = la_augment(image[None], None, PATCH, np.random.default_rng(seed))
        np.testing.assert_array_equal(ours[0], _papers_augmentation(image, np.random.default_rng(seed)))


def test_crop_padding_follows_the_papers_rule():
    assert crop_padding((30, 40, 40), (16, 24, 24)) == [0, 0, 0]
    # any side ≤ patch: every axis gets (patch − size)//2 + 3 when positive
    assert crop_padding((10, 25, 40), (16, 24, 24)) == [6, 2, 0]
    assert crop_padding((16, 30, 30), (16, 24, 24)) == [3, 0, 0]


# -- the bounded cache -------------------------------------------------------------------------------------

def test_the_cache_never_holds_more_than_its_bound_while_batches_stream():
    held_at_load = []
    cache_ref = {}

    def source(i):
        image, label = box_case(i)

        def load():
            held_at_load.append(len(cache_ref["cache"]))
            return LoadedCase(image, (1.0, 1.0, 1.0), label)
        return CaseSource(f"lab{i}", load, True)

    data = TrainingData([source(i) for i in range(6)])
    schedule = TwoStreamSchedule(6, 0, 2, 0, seed=1)
    dataset = BatchDataset(data, tiny_card(), schedule, unlabeled_streams=(), cache_volumes=2)
    cache_ref["cache"] = dataset.cache
    for step in range(15):
        dataset[step]
        assert len(dataset.cache) <= 2
    assert max(held_at_load) <= 1  # the oldest volume is dropped before the next is read
    assert dataset.cache.peak == 2
    assert dataset.cache.loads > 6  # volumes were re-read from their source: streamed, not kept


def test_the_cache_keeps_the_most_recently_used_volumes():
    loads = []
    sources = [CaseSource(f"c{i}", (lambda i=i: loads.append(i) or LoadedCase(np.zeros((4, 4, 4)), (1, 1, 1))),
                          False) for i in range(3)]
    cache = VolumeCache(2, lambda s: s.load())
    for i in (0, 1, 0, 2, 0, 1):
        cache.get(sources[i])
    assert loads == [0, 1, 2, 1] and cache.case_ids() == ["c0", "c1"]


# -- sampling ------------------------------------------------------------------------------------------------

def test_labelled_cases_are_shuffled_once_per_pass_and_unlabelled_cycle_through_permutations():
    schedule = TwoStreamSchedule(n_labeled=5, n_unlabeled=3, batch_labeled=2, batch_unlabeled=2, seed=11)
    assert schedule.batches_per_pass == 2  # 5 // 2: the incomplete last batch is dropped
    passes = [schedule.labeled(2 * p) + schedule.labeled(2 * p + 1) for p in range(6)]
    assert all(len(set(p)) == 4 and set(p) <= set(range(5)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1
    stream = [i for step in range(6) for i in schedule.unlabeled(step)]  # 12 draws = 4 permutations of 3
    assert all(sorted(stream[k:k + 3]) == [0, 1, 2] for k in range(0, 12, 3))
    assert len({tuple(stream[k:k + 3]) for k in range(0, 12, 3)}) > 1
    again = TwoStreamSchedule(5, 3, 2, 2, seed=11)
    assert [again.labeled(s) for s in range(8)] == [schedule.labeled(s) for s in range(8)]
    other_rank = TwoStreamSchedule(5, 3, 2, 2, seed=11, rank=1)
    assert [other_rank.labeled(s) for s in range(8)] != [schedule.labeled(s) for s in range(8)]


def test_fewer_labelled_cases_than_a_batch_still_fill_the_batch():
    schedule = TwoStreamSchedule(n_labeled=1, n_unlabeled=0, batch_labeled=2, batch_unlabeled=0, seed=0)
    assert schedule.labeled(0) == [0, 0] and schedule.unlabeled(0) == []


# -- batches ---------------------------------------------------------------------------------------------------

def test_a_batch_is_labelled_first_then_unlabelled_and_depends_only_on_its_step():
    data = array_data(n_labeled=3, n_unlabeled=2)
    card = tiny_card()
    schedule = TwoStreamSchedule(3, 2, 2, 2, seed=5)
    dataset = BatchDataset(data, card, schedule, unlabeled_streams=("unlabeled",), cache_volumes=8)
    batch = dataset[7]
    assert batch["image"].shape == (4, 1, *PATCH) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (2, *PATCH) and batch["label"].dtype == torch.int64
    fresh = BatchDataset(data, card, schedule, unlabeled_streams=("unlabeled",), cache_volumes=1)
    assert torch.equal(fresh[7]["image"], batch["image"]) and torch.equal(fresh[7]["label"], batch["label"])
    # the labelled patches are z-scored crops of the labelled cases, box and all
    assert batch["label"].sum() > 0 and abs(float(batch["image"].mean())) < 1.0


def test_worker_processes_give_the_same_batches_as_the_training_process():
    data = array_data(n_labeled=3, n_unlabeled=2)
    schedule = TwoStreamSchedule(3, 2, 2, 2, seed=5)
    dataset = BatchDataset(data, tiny_card(), schedule, unlabeled_streams=("unlabeled",), cache_volumes=2)
    inline = list(make_loader(dataset, 3, 7, num_workers=0))
    workers = list(make_loader(dataset, 3, 7, num_workers=2))
    assert [b["step"] for b in workers] == [3, 4, 5, 6]
    for a, b in zip(inline, workers):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_a_methods_views_and_extra_streams_reach_the_batch():
    data = array_data(n_labeled=2, n_unlabeled=3)

    def views(stream, image, label, rng):
        return {"flipped": image[:, ::-1].copy(), "draw": np.array(rng.random())}

    dataset = BatchDataset(data, tiny_card(), TwoStreamSchedule(2, 3, 2, 2, seed=1),
                           unlabeled_streams=("unlabeled", "mix"), cache_volumes=8, views=views)
    batch = dataset[0]
    assert batch["image"].shape[0] == 4 and batch["extra"]["mix"].shape == (2, 1, *PATCH)
    assert set(batch["extra"]) == {"mix", "labeled/flipped", "labeled/draw", "unlabeled/flipped",
                                   "unlabeled/draw", "mix/flipped", "mix/draw"}
    assert torch.equal(batch["extra"]["unlabeled/flipped"], batch["image"][2:].flip(2))


# -- preparation -------------------------------------------------------------------------------------------------

def test_cases_from_files_are_resampled_and_normalised_by_the_card(tmp_path):
    spec = write_cases(tmp_path, [4], spacing=(2.0, 1.0, 1.0))[0]
    card = tiny_card().replace(preprocessing=Preprocessing(target_spacing=(1.0, 2.0, 2.0), intensity="zscore"))
    prepared = prepare_case(CaseSource.from_spec(spec), card)
    assert prepared.image.shape == (1, 48, 16, 16) and prepared.label.shape == (48, 16, 16)
    assert abs(float(prepared.image.mean())) < 1e-4 and abs(float(prepared.image.std()) - 1) < 1e-3
    # the box stays under its label after resampling: bright where labelled
    assert prepared.image[0][prepared.label == 1].mean() > prepared.image[0][prepared.label == 0].mean() + 2


def test_a_label_off_the_image_grid_is_refused_with_the_case_named():
    image, label = box_case(0)
    source = CaseSource.from_arrays("misfit", image, label[:, :, :-1])
    with pytest.raises(TrainingError, match="case misfit: label shape"):
        prepare_case(source, tiny_card())


def test_an_h5_file_can_carry_its_own_label(tmp_path):
    from data_factory import write_la_h5
    image, label = box_case(2)
    path = write_la_h5(tmp_path / "mri_norm2.h5", image, label)
    prepared = prepare_case(CaseSource.from_files("la", path, path), tiny_card())
    np.testing.assert_array_equal(prepared.label, label)
    with pytest.raises(TrainingError, match="carries none"):
        prepare_case(CaseSource.from_files("la", write_la_h5(tmp_path / "no_label.h5", image), tmp_path / "no_label.h5"),
                     tiny_card())
