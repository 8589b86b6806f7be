"""Pseudo-labelling throughput on the CPU: volumes per minute (issue 6 §2).

A throw-away project (``bench-results/pseudo_throughput/project``) imports K + 1 LA volumes of
``train.list`` (the first labelled, the next K unlabelled; full resolution, 0.625 mm) and
registers a cpu-small model (``--checkpoint``, else the CPU quality run's supervised N=8
model, else a fresh untrained network: throughput does not depend on the weights). Then
``engine.pseudo.pseudo_label`` stores a hard and a soft label for each unlabelled case, as
the CLI and the Pseudo-label panel do; the table gives seconds per volume and volumes per
minute (reading, inference, soft-label encoding and the project writes all included).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from ._common import la_list, la_root, register_all_methods, report, results_dir, set_threads
from ._plc_teacher import pseudo_label_with
from .inference_speed import QUALITY_MODEL


def _model_file(out: Path, checkpoint: str | None) -> Path:
    if checkpoint:
        return Path(checkpoint)
    quality = results_dir("quality_la").parent / QUALITY_MODEL
    if quality.is_file():
        return quality
    import torch
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.methods import create_method
    from napari_semiseg.engine.training import TrainConfig
    from napari_semiseg.engine.training._checkpoint import make_model_payload, save_atomically
    card = load_card("cpu-small")
    torch.manual_seed(0)
    method = create_method("supervised", card)
    config = TrainConfig.from_card(card, out / "untrained", iterations=1)
    return save_atomically(make_model_payload(method=method, iteration=0, metrics={}, config_dict=config.to_dict()),
                           out / "untrained-model.pt")


def run(shared_data, *, volumes: int = 4, checkpoint: str | None = None, device: str = "cpu") -> list[dict]:
    """Import, register, pseudo-label ``volumes`` cases; print, write CSV; returns the rows."""
    from napari_semiseg.project import Project, import_la
    register_all_methods()
    out = results_dir("pseudo_throughput")
    folder = out / "project"
    shutil.rmtree(folder, ignore_errors=True)
    cases = la_list(shared_data)[:volumes + 1]
    list_file = out / "cases.list"
    list_file.write_text("".join(f"{case_id}\n" for case_id, _ in cases))
    model_file = _model_file(out, checkpoint)
    project = Project.create(folder)
    try:
        import_la(project, la_root(shared_data), list_file, labeled=1)
        unlabelled = [case_id for case_id, _ in cases[1:]]
        summary = pseudo_label_with(project, model_file, unlabelled, device=device)
        card_name = project.model(summary.model_id).card["name"]
    finally:
        project.close()
    rows = [{"case": c.case_id, "seconds": c.seconds} for c in summary.cases]
    rows.append({"case": "ALL", "seconds": summary.seconds, "volumes": len(summary.cases),
                 "volumes_per_minute": summary.volumes_per_minute})
    report("pseudo_throughput", rows, title=f"Pseudo-labelling throughput, {device}, card {card_name} "
           f"({len(summary.cases)} LA volumes at full resolution)",
           notes=["per case: read, sliding-window inference (card grid), hard + soft label written to the project"])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    run(args.shared_data, volumes=args.volumes, checkpoint=args.checkpoint, device=args.device)


if __name__ == "__main__":
    main()
