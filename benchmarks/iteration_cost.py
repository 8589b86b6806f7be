"""Time per training iteration of each method, relative to the supervised step (issues 4 §6, 6 §2).

One process, one card, one batch: every method is built from the same seed and runs the
trainer's step (zero_grad, ``training_step``, backward of ``total``, optimiser step,
``after_step``) on the same patches. The batch comes from the trainer's own batch builder
(``engine.training.BatchDataset``) over the same synthetic cases, with each method's
unlabelled streams and ``sample_views`` hook, so a method sees exactly what the trainer would
give it (CrossMatch's second stream under ``extra["mix"]``, its views under
``"<stream>/<view>"``); the supervised step sees the labelled half only, as in training.
Building the batch is not timed (the trainer prefetches it). Iterations are interleaved
round-robin across methods so that a change of machine load hits them alike; the median per
method is kept. Torch's thread count is fixed (``--threads``).

Target (issue 4): every method at most 5× the supervised step. For reference, CrossMatch's
paper reports 210 ms against 22 ms for a plain V-Net step (9.5×) and UA-MT 273 ms (12×).

Usage::

    python -m benchmarks.iteration_cost --card cpu-small --repeats 10 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._common import register_all_methods, report, set_threads

TARGET_RATIO = 5.0
#: The supervised step on a whole batch of labelled patches (B_l + B_u), as the papers time it.
FULL_BATCH = "supervised (full batch)"


def synthetic_cases(card, count: int = 2, seed: int = 0):
    """``count`` (z, y, x) phantoms 1.5× the card's patch: noise with a brighter ellipsoid, labelled."""
    from napari_semiseg.engine.training import CaseSource
    rng = np.random.default_rng(seed)
    shape = tuple(int(s * 1.5) for s in card.patch_size)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    sources = []
    for index in range(count):
        radius = 0.45 + 0.1 * rng.random(3)
        label = ((grid / radius[:, None, None, None]) ** 2).sum(0) < 1.0
        image = rng.normal(0.0, 1.0, shape).astype(np.float32) + 2.0 * label
        sources.append(CaseSource.from_arrays(f"phantom_{index}", image, label.astype(np.uint8)))
    return sources


def soft_label_project(card, folder) -> str:
    """A project of the synthetic cases with a teacher soft label each (0.9 inside, 0.1 outside),
    the material PLC-KD distils from; returns its folder."""
    from napari_semiseg.io import Volume, write_volume
    from napari_semiseg.project import Project
    folder = Path(folder)
    with Project.create(folder / "project") as project:
        for source in synthetic_cases(card):
            loaded = source.load()
            image_file = write_volume(folder / f"{source.case_id}.nii", Volume.from_array(loaded.image))
            project.add_case(source.case_id, image_file, split="unlabelled")
            label = np.asarray(loaded.label)
            project.save_label_with_soft_label(source.case_id, label, "pseudo",
                                               np.where(label > 0, 0.9, 0.1).astype(np.float32))
    return str(folder / "project")


def trainer_batch(method, card, *, batch_labeled: int, batch_unlabeled: int, seed: int = 0):
    """Step 0's batch as the trainer builds it for ``method`` (see the module docstring)."""
    from napari_semiseg.engine.methods import Batch, Method
    from napari_semiseg.engine.training import TrainingData, TwoStreamSchedule
    from napari_semiseg.engine.training import BatchDataset  # the trainer's own batch builder
    cases = synthetic_cases(card, seed=seed)
    data = TrainingData(labeled=cases, unlabeled=cases)
    uses_unlabeled = method.uses_unlabeled and batch_unlabeled > 0
    schedule = TwoStreamSchedule(len(data.labeled), len(data.unlabeled), batch_labeled,
                                 batch_unlabeled if uses_unlabeled else 0, seed, 0)
    views = method.sample_views if type(method).sample_views is not Method.sample_views else None
    dataset = BatchDataset(data, card, schedule, cache_volumes=len(cases), views=views,
                           unlabeled_streams=method.unlabeled_streams if uses_unlabeled else ())
    raw = dataset[0]
    return Batch(image=raw["image"], label=raw["label"], n_labeled=int(raw["label"].shape[0]), extra=raw["extra"])


def _to(batch, device: torch.device, mode=None):
    from napari_semiseg.engine._compute import ComputeMode
    from napari_semiseg.engine.methods import Batch
    mode = mode or ComputeMode()
    return Batch(mode.prepare_input(batch.image.to(device)), batch.label.to(device), batch.n_labeled,
                 {k: mode.prepare_input(v.to(device)) for k, v in batch.extra.items()})


def _prepared(method, target: torch.device, mode, compile_networks: bool):
    """``method`` on ``target`` in ``mode``'s memory format, its trainable networks compiled if asked."""
    method.to(target)
    if mode is not None:
        for network in method.networks.values():
            mode.prepare_network(network)
    if compile_networks:
        method.wrap_trainable(lambda module, find_unused: torch.compile(module))
    return method


def _one_iteration(method, optimizer, batch, step, device: torch.device, mode=None) -> float:
    import contextlib
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with mode.autocast() if mode is not None else contextlib.nullcontext():
        losses = method.training_step(batch, step)
    losses["total"].backward()
    optimizer.step()
    method.after_step(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure_iteration_cost(card, methods: Sequence[str], *, repeats: int = 10, warmup: int = 2, device: str = "cpu",
                           params: dict[str, dict] | None = None, seed: int = 0, mode=None,
                           compile_networks: bool = False) -> dict[str, float]:
    """Median seconds per iteration of each method (see the module docstring).

    Args:
        card: the model card (network, patch, batch halves from its training recipe).
        methods: registered method names; include ``"supervised"`` to get ratios.
        repeats: timed iterations per method.
        warmup: untimed iterations per method first (allocator, kernel selection).
        device: ``"cpu"`` or a CUDA device.
        params: per method, hyperparameter overrides.
        seed: seeds the batch and the networks.
        mode: an ``engine._compute.ComputeMode`` (precision and memory format of the step, as the
            trainer runs it); None is fp32 in the default memory format. The caller sets its
            kernel choice (``mode.kernels()``).
        compile_networks: ``torch.compile`` the trainable networks first (the warm-up pays
            the compilation).
    """
    from napari_semiseg.engine.methods import MethodError, StepInfo, create_method
    from napari_semiseg.engine.training import TrainConfig, build_optimizer
    target = torch.device(device)
    params = dict(params or {})
    scratch = tempfile.TemporaryDirectory(prefix="iteration-cost-")
    if "plc-kd" in methods and "plc-kd" not in params:  # it distils from a project's soft labels
        params["plc-kd"] = {"project": soft_label_project(card, scratch.name)}
    runs = {}
    for name in methods:
        torch.manual_seed(seed)
        try:
            method = _prepared(create_method(name, card, params.get(name)), target, mode, compile_networks)
        except MethodError as exc:  # a method that cannot be built here
            print(f"[iteration_cost] skipping {name}: {exc}", flush=True)
            continue
        method.set_training(True)
        config = TrainConfig.from_card(card, "unused", method=name)
        optimizer = build_optimizer(method.parameters(), config)
        batch = trainer_batch(method, card, batch_labeled=config.batch_labeled,
                              batch_unlabeled=config.batch_unlabeled, seed=seed)
        runs[name] = (method, optimizer, _to(batch, target, mode))
        if name == "supervised":  # the papers' baseline step: a full batch, all labelled
            torch.manual_seed(seed)
            full = _prepared(create_method(name, card), target, mode, compile_networks)
            full.set_training(True)
            whole = trainer_batch(full, card, batch_labeled=config.batch_labeled + config.batch_unlabeled,
                                  batch_unlabeled=0, seed=seed)
            runs[FULL_BATCH] = (full, build_optimizer(full.parameters(), config), _to(whole, target, mode))
    times: dict[str, list[float]] = {name: [] for name in runs}
    total = warmup + repeats
    for iteration in range(total):
        step = StepInfo(iteration, total, 1e-3)
        for name, (method, optimizer, batch) in runs.items():
            seconds = _one_iteration(method, optimizer, batch, step, target, mode)
            if iteration >= warmup:
                times[name].append(seconds)
    scratch.cleanup()
    return {name: statistics.median(values) for name, values in times.items()}


def run(card_name="cpu-small", methods: Sequence[str] | None = None, *, repeats: int = 10, warmup: int = 2,
        device: str = "cpu") -> list[dict]:
    """Measure, print the table, write ``bench-results/iteration_cost/iteration_cost.csv``; returns rows."""
    from napari_semiseg.engine.cards import load_card
    available = register_all_methods()
    methods = [m for m in (methods or ["supervised", *sorted(set(available) - {"supervised"})]) if m in available]
    card = load_card(card_name) if isinstance(card_name, str) else card_name  # a name, a path or a ModelCard
    seconds = measure_iteration_cost(card, methods, repeats=repeats, warmup=warmup, device=device)
    base = seconds.get("supervised")
    full = seconds.get(FULL_BATCH)
    rows = [{"method": name, "ms_per_iteration": 1000 * value,
             "ratio_to_supervised": value / base if base else float("nan"),
             "ratio_to_full_batch_supervised": value / full if full else float("nan"),
             "target_le_5x": ("yes" if value / base <= TARGET_RATIO else "NO") if base else "n/a"}
            for name, value in seconds.items()]
    report("iteration_cost", rows, title=f"Iteration cost, card {card.name} (patch {list(card.patch_size)}, batch "
           f"{card.training.batch_labeled}+{card.training.batch_unlabeled}), {device}, median of {repeats}",
           notes=["supervised sees the labelled half only, as the trainer feeds it (the target's ratio); "
                  "'supervised (full batch)' is the same step on B_l + B_u labelled patches, the papers' baseline",
                  "target: every method ≤ 5× the supervised step"])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", default="cpu-small")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared-data", default=None, help="unused (run_all passes it to every script)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    run(args.card, args.methods, repeats=args.repeats, warmup=args.warmup, device=args.device)


if __name__ == "__main__":
    main()
