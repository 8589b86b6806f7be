"""Whole-volume inference: our overlap grid against the papers' dense stride grid (issues 3 §8, 6 §2).

On K LA volumes (default: the validation split, the last 8 of ``train.list``; ``--cases`` keeps
the first K of them) one model predicts each volume twice: with the card's overlap grid
(cpu-small: overlap 0.5, Gaussian blending) and with the papers' dense grid. The papers use
stride 18 (in-plane) / 4 (z) for a 112×112×80 patch; for another patch the stride is scaled
in proportion: round(patch_xy·18/112) in-plane, round(patch_z·4/80) in z (cpu-small 32×48×48:
stride (2, 8, 8)). Reported per case and overall: seconds of each, their ratio, Dice of each
against the gold label, and the Dice difference in points.

The model: ``--checkpoint`` (a ``model.pt``), else the supervised N=8 model of the CPU quality
run (``bench-results/quality_la/cpu/N8/supervised/best_model.pt``) when it exists, else one
trained here briefly on the first 8 labelled volumes. Volumes are downsampled in-plane by
``--downsample`` (default 2, as the CPU quality protocol, so the model sees its own grid).

Target (issue 6): ours at least 5× faster at a Dice difference of at most 0.5 points.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import VALIDATION_CASES, la_list, read_la_case, register_all_methods, report, results_dir, set_threads

QUALITY_MODEL = Path("quality_la/cpu/N8/supervised/best_model.pt")


def paper_stride(patch: Sequence[int]) -> tuple[int, int, int]:
    """The papers' 4/18/18 stride at patch 80/112/112, scaled to ``patch`` (z, y, x)."""
    z, y, x = patch
    return (max(1, round(z * 4 / 80)), max(1, round(y * 18 / 112)), max(1, round(x * 18 / 112)))


def quick_model(shared_data, out: Path, iterations: int, downsample: int) -> Path:
    """Supervised cpu-small on the first 8 labelled volumes, ``iterations`` steps; the model file."""
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.training import TrainConfig, TrainingData, train
    from .quality_la import source
    cases = la_list(shared_data)[:8]
    data = TrainingData(labeled=[source(c, downsample, True) for c in cases])
    config = TrainConfig.from_card(load_card("cpu-small"), out / "quick-model", iterations=iterations,
                                   validate_every=0, checkpoint_every=0, device="cpu", log_every=10)
    return train(config, data).model


def _dice(prediction: np.ndarray, label: np.ndarray) -> float:
    from napari_semiseg.engine.metrics import evaluate_case
    return evaluate_case(prediction, label, classes=[1]).dice


def run(shared_data, *, cases: int = 3, checkpoint: str | None = None, downsample: int = 2,
        train_iterations: int = 60, case_list: str | None = None,
        overlaps: Sequence[float] | None = None) -> list[dict]:
    """Time our grid (at each of ``overlaps``, default the card's) and the dense grid on the cases.

    Prints and writes CSV; returns the rows: one per (case, overlap), then one "ALL" row per overlap.
    """
    from napari_semiseg.engine.inference import predict_volume
    from napari_semiseg.engine.training import load_model
    from napari_semiseg.io import Volume
    register_all_methods()
    out = results_dir("inference_speed")
    default = Path(results_dir("quality_la").parent) / QUALITY_MODEL
    model_file = Path(checkpoint) if checkpoint else default if default.is_file() else \
        quick_model(shared_data, out, train_iterations, downsample)
    model = load_model(model_file)
    card = model.card
    stride = paper_stride(card.patch_size)
    overlaps = list(overlaps or [card.inference.overlap])
    chosen = la_list(shared_data, case_list)[:cases] if case_list else la_list(shared_data)[-VALIDATION_CASES:][:cases]
    rows = []
    for case_id, path in chosen:
        image, label, spacing = read_la_case(path, downsample)
        volume = Volume.from_array(image, spacing=spacing, zscored=True)
        dense = predict_volume(model.network, volume, card, device="cpu", stride=stride)
        dense_dice = _dice(dense.labels, label)
        for overlap in overlaps:
            ours = predict_volume(model.network, volume, card, device="cpu", overlap=overlap)
            rows.append(_row(case_id, "x".join(map(str, image.shape)), overlap, ours.windows, dense.windows,
                             ours.seconds, dense.seconds, _dice(ours.labels, label), dense_dice))
            print(f"[inference_speed] {case_id} overlap {overlap}: {rows[-1]['speedup']:.1f}x, "
                  f"Δ Dice {rows[-1]['dice_diff_pts']:+.2f}", flush=True)
    for overlap in overlaps:
        mine = [r for r in rows if r["overlap"] == overlap and r["case"] != "ALL"]
        rows.append(_row("ALL", "", overlap, *(sum(r[k] for r in mine) for k in
                                                ("ours_windows", "dense_windows", "ours_s", "dense_s")),
                         float(np.mean([r["ours_dice"] for r in mine])),
                         float(np.mean([r["dense_dice"] for r in mine]))))
    report("inference_speed", rows, title=f"Inference: card grid ({_grid(card)}; overlaps {overlaps}) vs the "
           f"papers' dense stride {list(stride)} (card {card.name}, model {model_file})",
           notes=[f"volumes downsampled in-plane by {downsample}" if downsample > 1 else "full-resolution volumes",
                  "target: speedup ≥ 5× at |Δ Dice| ≤ 0.5 points"])
    return rows


def _row(case: str, shape: str, overlap: float, ours_windows: int, dense_windows: int, ours_s: float,
         dense_s: float, ours_dice: float, dense_dice: float) -> dict:
    return {"case": case, "shape": shape, "overlap": overlap, "ours_windows": ours_windows,
            "dense_windows": dense_windows, "ours_s": ours_s, "dense_s": dense_s, "speedup": dense_s / ours_s,
            "ours_dice": ours_dice, "dense_dice": dense_dice, "dice_diff_pts": 100 * (ours_dice - dense_dice)}


def _grid(card) -> str:
    inference = card.inference
    if getattr(inference, "stride", None):
        return f"stride {list(inference.stride)}"
    return f"overlap {inference.overlap}, {inference.blending} blending"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--cases", type=int, default=8, help="how many volumes of the list")
    parser.add_argument("--case-list", default=None, help="list file (default: validation split of train.list)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--downsample", type=int, default=2)
    parser.add_argument("--train-iterations", type=int, default=60)
    parser.add_argument("--overlaps", type=float, nargs="+", default=None,
                        help="window overlaps of our grid to compare (default: the card's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    run(args.shared_data, cases=args.cases, checkpoint=args.checkpoint, downsample=args.downsample,
        train_iterations=args.train_iterations, case_list=args.case_list, overlaps=args.overlaps)


if __name__ == "__main__":
    main()
