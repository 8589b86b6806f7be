"""Shared material of the trainer tests (no tests here): a tiny card, an easy synthetic task.

The task: a bright box in noise; the label is the box. A 2-level U-Net with 4 base filters
learns it within a few tens of steps on a CPU, so a short run shows a falling loss and a
useful validation Dice. Volumes are 24×32×32 (z, y, x), patches 16×24×24.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_semiseg.engine.cards import InferenceSpec, ModelCard, NetworkSpec
from napari_semiseg.engine.training import CaseSource, CaseSpec, DataSpec, TrainConfig, TrainingData
from napari_semiseg.io import Geometry, Volume, write_label, write_volume

SHAPE = (24, 32, 32)
PATCH = (16, 24, 24)


def tiny_card(dropout: bool = False, **network) -> ModelCard:
    """A 2-level U-Net card (about 2 k parameters) with the test patch."""
    spec = NetworkSpec(name="unet-small", base_filters=4, levels=2, dropout=dropout, dropout_rate=0.3,
                       **network)
    return ModelCard(name="tiny", description="test card", modality="MR", network=spec, patch_size=PATCH,
                     inference=InferenceSpec(overlap=0.25, window_batch=2))


def box_case(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8): a box 3 standard deviations brighter than the noise."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 1.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    z, y, x = (int(rng.integers(2, s - 14)) for s in shape)
    label[z:z + 10, y:y + 12, x:x + 12] = 1
    image[label == 1] += 3.0
    return image * 50.0 + 200.0, label  # raw intensities: the card's z-score matters


def array_data(n_labeled: int = 3, n_unlabeled: int = 2, n_validation: int = 1) -> TrainingData:
    """In-memory cases: seeds 0.. labelled, 100.. unlabelled, 200.. validation."""
    labeled = [CaseSource.from_arrays(f"lab{i}", *box_case(i)) for i in range(n_labeled)]
    unlabeled = [CaseSource.from_arrays(f"unl{i}", box_case(100 + i)[0]) for i in range(n_unlabeled)]
    validation = [CaseSource.from_arrays(f"val{i}", *box_case(200 + i)) for i in range(n_validation)]
    return TrainingData(labeled, unlabeled, validation)


def write_cases(folder: Path, seeds, *, with_labels: bool = True, spacing=(2.0, 1.0, 1.0)) -> list[CaseSpec]:
    """NIfTI image (and label) files of ``box_case(seed)``; their ``CaseSpec``s."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for seed in seeds:
        image, label = box_case(seed)
        volume = Volume.from_array(image, spacing=spacing)
        image_path = write_volume(folder / f"case{seed}.nii.gz", volume)
        label_path = None
        if with_labels:
            label_path = write_label(folder / f"case{seed}_label.nii.gz", label, Geometry(image.shape, spacing))
        specs.append(CaseSpec(f"case{seed}", str(image_path), None if label_path is None else str(label_path)))
    return specs


def file_data_spec(folder: Path, n_labeled: int = 2, n_unlabeled: int = 1, n_validation: int = 1) -> DataSpec:
    return DataSpec(labeled=tuple(write_cases(folder, range(n_labeled))),
                    unlabeled=tuple(write_cases(folder, range(100, 100 + n_unlabeled), with_labels=False)),
                    validation=tuple(write_cases(folder, range(200, 200 + n_validation))))


def tiny_config(run_dir: Path, **overrides) -> TrainConfig:
    """A CPU config of the tiny card: AdamW 0.01, constant lr, no periodic saves unless asked."""
    values = dict(iterations=10, optimizer="adamw", lr=0.01, schedule="constant", validate_every=0,
                  checkpoint_every=0, device="cpu", seed=7)
    values.update(overrides)
    card = values.pop("card", None) or tiny_card()
    return TrainConfig.from_card(card, run_dir, **values)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs (max |Δ| {float((a[key].float() - b[key].float()).abs().max())})"


def weights_differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)
