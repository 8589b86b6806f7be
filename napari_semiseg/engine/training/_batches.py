"""Batches: ``dataset[step]`` builds the whole batch of one optimiser step.

A step's batch is a pure function of (seed, rank, step): the cases come from
``TwoStreamSchedule``, each patch from ``la_augment`` with its own seeded generator. A torch
``DataLoader`` over ``range(first_step, last_step)`` then runs it in the training process
(``num_workers=0``) or in worker processes, prefetching, with identical results either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..cards import ModelCard
from ..data import CaseSource, TrainingData, VolumeCache, la_augment, prepare_case
from ._sampling import LABELED_STREAM, TwoStreamSchedule, sample_rng

#: ``views(stream, image, label, rng) -> {name: array}``: a method's ``sample_views``.
ViewsHook = Callable[[str, np.ndarray, "np.ndarray | None", np.random.Generator], dict]


class BatchDataset(Dataset):
    """Map-style dataset whose item ``step`` is that step's batch (CPU tensors).

    Args:
        data: the cases.
        card: patch size and preprocessing.
        schedule: which cases each step uses.
        unlabeled_streams: names of the unlabelled streams (empty: labelled half only).
        cache_volumes: prepared volumes kept per process.
        views: the method's per-sample hook, or None.

    Items are dicts: ``image`` (B_l + B_u, C, Z, Y, X) float32, labelled first; ``label``
    (B_l, Z, Y, X) int64; ``extra`` {name: tensor} (further streams, method views); ``step``.
    """

    def __init__(self, data: TrainingData, card: ModelCard, schedule: TwoStreamSchedule, *,
                 unlabeled_streams: Sequence[str], cache_volumes: int, views: ViewsHook | None = None):
        self.data, self.card, self.schedule = data, card, schedule
        self.unlabeled_streams = tuple(unlabeled_streams)
        self.views = views
        self.cache = VolumeCache(cache_volumes, lambda source: prepare_case(source, card))

    def __getitem__(self, step: int) -> dict:
        images, labels, extra = self._stream("labeled", LABELED_STREAM, self.data.labeled,
                                             self.schedule.labeled(step), step)
        for number, name in enumerate(self.unlabeled_streams):
            stream_images, _, stream_extra = self._stream(name, 1 + number, self.data.unlabeled,
                                                          self.schedule.unlabeled(step, number), step)
            if number == 0:
                images = torch.cat([images, stream_images])
            else:
                extra[name] = stream_images
            extra.update(stream_extra)
        return {"step": step, "image": images, "label": labels, "extra": extra}

    def _stream(self, name: str, code: int, sources: Sequence[CaseSource], indices: list[int],
                step: int) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        patches, labels, views = [], [], []
        for slot, index in enumerate(indices):
            rng = sample_rng(self.schedule.seed, self.schedule.rank, code, step, slot)
            case = self.cache.get(sources[index])
            label = case.label if name == "labeled" else None
            image_patch, label_patch = la_augment(case.image, label, self.card.patch_size, rng)
            patches.append(image_patch)
            if label_patch is not None:
                labels.append(label_patch)
            if self.views is not None:
                views.append(self.views(name, image_patch, label_patch, rng))
        images = torch.from_numpy(np.stack(patches)) if patches else _empty_images(self.card)
        label_tensor = torch.from_numpy(np.stack(labels)) if labels else None
        return images, label_tensor, _collate_views(name, views)


def _empty_images(card: ModelCard) -> torch.Tensor:
    return torch.zeros((0, card.network.in_channels, *card.patch_size), dtype=torch.float32)


def _collate_views(stream: str, views: list[dict]) -> dict[str, torch.Tensor]:
    if not views or not views[0]:
        return {}
    return {f"{stream}/{key}": torch.from_numpy(np.stack([np.asarray(v[key]) for v in views]))
            for key in views[0]}


def make_loader(dataset: BatchDataset, first_step: int, last_step: int, *, num_workers: int,
                pin_memory: bool = False) -> DataLoader:
    """Batches of steps ``first_step .. last_step − 1`` in order (prefetched by workers if any)."""
    # A private generator: a DataLoader draws a base seed when iterated, and drawing it from
    # the global torch RNG would shift the dropout masks of a resumed run.
    return DataLoader(dataset, batch_size=None, sampler=range(first_step, last_step), num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False, generator=torch.Generator())


__all__ = ["BatchDataset", "make_loader"]
