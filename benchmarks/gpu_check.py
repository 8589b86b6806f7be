"""One command that measures issue 15's targets on a GPU machine without network access.

``pack`` (here, where the LA data lives) writes a small lossless copy of some LA volumes
(``_packed_la``); ``run`` (there) measures, each section under its own time budget and
``try``/``except``, so that one failure still leaves the others' results:

1. ``iteration_cost``: median step of every method (``iteration_cost``'s machinery, la-vnet,
   batch 2+2) in fp32 with deterministic kernels (today's mode) and in the default mode of
   the device (bf16 autocast, ``channels_last_3d``, ``cudnn.benchmark``).
2. ``training``: supervised N = 8 through the real trainer in both modes for the same number
   of steps (sized to the budget), then the validation Dice on the 8 validation volumes; the
   trainer's ``data_wait`` share of each step (workers, pinned memory, prefetch) and peak memory.
3. ``inference``: whole-volume time and Dice per validation volume at the card's dense grid and
   at overlap 0.5, fp32 vs bf16, with the fp32-trained weights; an MC-dropout sweep.
4. ``compile``: the supervised full-batch step under ``torch.compile`` (off by default in the
   trainer; kept only if it wins ≥ 15 %).

Results go to ``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` after every section, and
to stdout. Usage::

    python -m benchmarks.gpu_check pack --la /work/shared/data/LA --out .gpucheck/la
    PYTHONUNBUFFERED=1 python -m benchmarks.gpu_check run --data .gpucheck/la --out $OUT --budget 420
    python -m benchmarks.gpu_check run --data .gpucheck/la --out /tmp/gc --device cpu --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ._common import format_table, register_all_methods
from ._packed_la import pack_la, read_manifest, read_pack

#: Every method of the issue's table; PLC-KD needs a project (SimpleITK) and runs only where it can.
METHODS = ("supervised", "mean-teacher", "ua-mt", "ss-net", "crossmatch", "dual-branch-kd", "plc-kd")
#: Share of the whole budget each section may use at most (what is left over carries on).
SHARES = {"iteration_cost": 0.22, "training": 0.42, "inference": 0.2, "compile": 1.0}
#: Seconds a section needs at least to be worth starting (compiling the V-Net alone takes about a minute).
MINIMUM = {"iteration_cost": 5, "training": 5, "inference": 5, "compile": 75}
#: Modes compared: today's (fp32, deterministic kernels, default memory format) and the device's default.
MODES = {"fp32-deterministic": dict(precision="fp32", deterministic=True, channels_last=False),
         "default": dict(precision="auto", deterministic=None, channels_last=None)}


class Budget:
    """Seconds left of the whole run, and of the section running now."""

    def __init__(self, total: float):
        self.started, self.total = time.perf_counter(), total
        self.section_end = self.started + total

    def left(self) -> float:
        return self.started + self.total - time.perf_counter()

    def open_section(self, share: float) -> float:
        """Start a section allowed ``share`` of the whole budget (less if less is left); its seconds."""
        seconds = max(0.0, min(self.left(), share * self.total))
        self.section_end = time.perf_counter() + seconds
        return seconds

    def section_left(self) -> float:
        return min(self.section_end, self.started + self.total) - time.perf_counter()


class Report:
    """The results so far, rewritten to ``<out>/gpu_check.{json,md}`` after every section."""

    def __init__(self, out: Path):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.data: dict = {"sections": {}}

    def section(self, name: str, result: dict) -> None:
        self.data["sections"][name] = result
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(self.markdown())
        print(f"\n### {name}\n{_section_markdown(result)}", flush=True)

    def markdown(self) -> str:
        parts = ["# gpu_check", ""]
        for name, result in self.data["sections"].items():
            parts += [f"## {name}", "", _section_markdown(result), ""]
        return "\n".join(parts)


def _section_markdown(result: dict) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines += [f"{key}:", "", format_table(value), ""]
        else:
            lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def _guarded(report: Report, name: str, budget: Budget, work: Callable[[float], dict]) -> dict | None:
    """Run one section with its budget; a failure is recorded as the section's result."""
    seconds = budget.open_section(SHARES[name])
    if seconds < MINIMUM[name]:
        report.section(name, {"skipped": f"{seconds:.0f} s of budget left"})
        return None
    started = time.perf_counter()
    try:
        result = work(seconds)
    except BaseException as exc:  # noqa: BLE001 - the other sections still run
        if isinstance(exc, KeyboardInterrupt):
            raise
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
    result["section_seconds"] = round(time.perf_counter() - started, 1)
    report.section(name, result)
    return result


# -- device helpers ----------------------------------------------------------------------------------

def _mode(device, name: str):
    from napari_semiseg.engine._compute import ComputeMode
    return ComputeMode.resolve(device, **MODES[name])


def _reset_peak(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device) -> float | None:
    import torch
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)


def environment(device) -> dict:
    import torch
    info = {"torch": torch.__version__, "device": str(device), "python": sys.version.split()[0]}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    cudnn=torch.backends.cudnn.version())
    try:
        import monai
        info["monai"] = monai.__version__
    except ImportError:
        info["monai"] = "missing"
    return info


# -- sections ----------------------------------------------------------------------------------------------

def iteration_cost_section(card, device, *, repeats: int, warmup: int, methods: Sequence[str], seconds: float) -> dict:
    """Median step of every method in both modes (see the module docstring)."""
    from .iteration_cost import FULL_BATCH, measure_iteration_cost
    rows, peaks = {}, {}
    for mode_name in MODES:
        mode = _mode(device, mode_name)
        _reset_peak(device)
        with mode.kernels():
            medians = measure_iteration_cost(card, methods, repeats=repeats, warmup=warmup, device=str(device),
                                             mode=mode)
        peaks[mode_name] = _peak_gib(device)
        for method, value in medians.items():
            rows.setdefault(method, {"method": method})[f"{mode_name}_ms"] = round(1000 * value, 2)
    table = list(rows.values())
    for mode_name in MODES:
        base = rows.get(FULL_BATCH, {}).get(f"{mode_name}_ms")
        for row in table:
            value = row.get(f"{mode_name}_ms")
            row[f"{mode_name}_ratio_to_full_batch"] = round(value / base, 2) if base and value else None
    for row in table:
        before, after = row.get("fp32-deterministic_ms"), row.get("default_ms")
        row["speed-up"] = round(before / after, 2) if before and after else None
    return {"card": card.name, "repeats": repeats, "warmup": warmup, "table": table, "peak_gib": peaks,
            "target": "supervised (full batch) ≤ 22 ms in default mode; ratios no worse than fp32's"}


def training_section(card, device, cases, out: Path, *, steps: int, seconds: float, step_costs: dict) -> dict:
    """Supervised N = 8 in both modes for the same steps, then validation Dice (see the module docstring)."""
    from napari_semiseg.engine.training import CaseSource, TrainConfig, TrainingData, read_events, train
    labeled = [c for c in cases if c.role == "labeled"]
    validation = [c for c in cases if c.role == "validation"]
    spacing = (0.625, 0.625, 0.625)
    data = TrainingData(labeled=[CaseSource.from_arrays(c.case_id, c.image, c.label, spacing) for c in labeled],
                        validation=[CaseSource.from_arrays(c.case_id, c.image, c.label, spacing) for c in validation])
    # Fit both runs in the budget: each costs steps × its measured step (+ data and bookkeeping),
    # plus one validation pass over the validation volumes.
    per_step = sum(step_costs.get(name) or 0.1 for name in MODES) * 1.5
    reserve = 25.0 + 4.0 * len(validation)
    fitted = int(max(1, (seconds - reserve)) / per_step)
    steps = max(1, min(steps, fitted))
    runs, models = [], {}
    for mode_name, settings in MODES.items():
        if runs and seconds - sum(r["seconds"] for r in runs) < 10:
            runs.append({"mode": mode_name, "skipped": "no budget left"})
            continue
        run_dir = out / f"train-{mode_name}"
        config = TrainConfig.from_card(card, run_dir, method="supervised", iterations=steps, validate_every=steps,
                                       checkpoint_every=steps, device=str(device), cache_volumes=len(labeled),
                                       log_every=1, **settings)
        _reset_peak(device)
        started = time.perf_counter()
        note = None
        try:
            result = train(config, data)
        except Exception as exc:  # noqa: BLE001 - e.g. workers without shared memory: measure without them
            note = f"with data workers: {type(exc).__name__}: {exc}; ran again in-process"
            shutil.rmtree(run_dir, ignore_errors=True)
            result = train(dataclasses.replace(config, num_workers=0), data)
        elapsed = time.perf_counter() - started
        events = read_events(run_dir / "events.jsonl")
        start = next(e for e in events if e["event"] == "start")
        iterations = [e for e in events if e["event"] == "iteration"]
        waits = [e["data_wait"] for e in iterations[min(10, len(iterations) - 1):] if e.get("data_wait") is not None]
        times = np.diff([e["elapsed_s"] for e in iterations]) if len(iterations) > 1 else np.array([elapsed])
        validation_event = [e for e in events if e["event"] == "validation"][-1]
        models[mode_name] = result.model
        runs.append({"mode": mode_name, "steps": steps, "dice": round(100 * result.metrics["validation_dice"], 2),
                     "median_step_ms": round(1000 * float(np.median(times[5:] if len(times) > 10 else times)), 1),
                     "data_wait_median": round(statistics.median(waits), 4) if waits else None,
                     "data_wait_max": round(max(waits), 4) if waits else None,
                     "num_workers": start.get("num_workers"), "precision": start.get("precision"),
                     "channels_last": start.get("channels_last"), "deterministic": start.get("deterministic"),
                     "seconds": round(elapsed, 1), "peak_gib": _peak_gib(device),
                     "per_case": json.dumps({k: round(100 * v, 1) for k, v in validation_event["per_case"].items()}),
                     **({"note": note} if note else {})})
    dice = [r.get("dice") for r in runs if "dice" in r]
    return {"steps": steps, "runs": runs, "models": {k: str(v) for k, v in models.items()},
            "dice_difference_points": round(dice[1] - dice[0], 2) if len(dice) == 2 else None,
            "target": "bf16 within 1 point of fp32; data_wait < 5 %"}


def inference_section(card, device, cases, model_path: str | None, *, seconds: float, quick: bool) -> dict:
    """Whole-volume time and Dice per validation volume: dense grid and overlap 0.5, fp32 and bf16."""
    import torch
    from napari_semiseg.engine.inference import predict_volume, prepare_input
    from napari_semiseg.engine.training import case_dice, load_model
    from napari_semiseg.io import Volume
    if model_path is not None:
        net = load_model(model_path, device=device).network
    else:  # no trained weights (training failed): time an untrained network, Dice meaningless
        from napari_semiseg.engine.networks import build_network
        torch.manual_seed(0)
        net = build_network(card.network).to(device).eval()
    validation = [c for c in cases if c.role == "validation"][: 1 if quick else None]
    grids = {"card-grid": {}, "overlap-0.5": {"overlap": 0.5}}  # la-vnet's own grid is the papers' dense one
    precisions = ("fp32", "bf16") if device.type == "cuda" else ("fp32",)
    deadline = time.perf_counter() + seconds - 5
    rows = []
    warm = Volume.from_array(validation[0].image, spacing=(0.625,) * 3)
    for precision in precisions:  # kernel selection, allocator and MONAI's first call, untimed
        predict_volume(net, warm, card, device=device, precision=precision, **grids["overlap-0.5"])
    # cuDNN's default kernel choice: benchmarking would time each new window-batch shape.
    for case in validation:
        volume = Volume.from_array(case.image, spacing=(0.625,) * 3)
        row = {"case": case.case_id, "shape": "×".join(map(str, case.image.shape))}
        started = time.perf_counter()  # the CPU share of every call: the card's intensity recipe
        prepare_input(volume, card.preprocessing)
        row["preprocess_s"] = round(time.perf_counter() - started, 3)
        for grid_name, grid in grids.items():
            for precision in precisions:
                if time.perf_counter() > deadline:
                    row[f"{grid_name}_{precision}_s"] = "budget"
                    continue
                _reset_peak(device)
                started = time.perf_counter()
                prediction = predict_volume(net, volume, card, device=device, precision=precision, **grid)
                row[f"{grid_name}_{precision}_s"] = round(time.perf_counter() - started, 3)
                row[f"{grid_name}_{precision}_dice"] = round(
                    100 * case_dice(prediction.labels, case.label, card.network.num_classes), 2)
                row[f"{grid_name}_windows"] = prediction.windows
                row[f"{grid_name}_window_batch"] = prediction.window_batch
                row["peak_gib"] = max(row.get("peak_gib") or 0, _peak_gib(device) or 0)
        rows.append(row)
    summary = {}
    for grid_name in grids:
        for precision in precisions:
            times = [r[f"{grid_name}_{precision}_s"] for r in rows if isinstance(r.get(f"{grid_name}_{precision}_s"), float)]
            if times:
                summary[f"{grid_name}_{precision}_median_s"] = round(statistics.median(times), 3)
        if len(precisions) == 2:
            gaps = [abs(r[f"{grid_name}_bf16_dice"] - r[f"{grid_name}_fp32_dice"]) for r in rows
                    if f"{grid_name}_bf16_dice" in r and f"{grid_name}_fp32_dice" in r]
            summary[f"{grid_name}_max_dice_gap_points"] = round(max(gaps), 3) if gaps else None
    mc = None
    if time.perf_counter() < deadline - 10 and not quick:
        started = time.perf_counter()
        prediction = predict_volume(net, volume, card, device=device, mc_samples=8, overlap=0.5)
        mc = {"case": case.case_id, "mc_samples": 8, "seconds": round(time.perf_counter() - started, 3),
              "window_batch": prediction.window_batch, "mean_variance": float(prediction.mc_variance.mean())}
    return {"weights": model_path or "untrained", "table": rows, "summary": summary, "mc_dropout_overlap_0.5": mc,
            "grid": card.inference.stride or card.inference.overlap,
            "target": "≤ 0.2 s dense (la-vnet's card grid), ≤ 0.1 s overlap 0.5; Dice within 0.1 point of fp32 per volume"}


def compile_section(card, device, *, repeats: int, warmup: int, seconds: float) -> dict:
    """The supervised full-batch step with ``torch.compile`` in the default mode, against without."""
    from .iteration_cost import FULL_BATCH, measure_iteration_cost
    if device.type != "cuda":
        return {"skipped": "torch.compile is only offered on CUDA"}
    mode = _mode(device, "default")
    result = {}
    for label, compiled in (("eager", False), ("compiled", True)):
        started = time.perf_counter()
        with mode.kernels():
            medians = measure_iteration_cost(card, ["supervised"], repeats=repeats, warmup=warmup + (3 if compiled else 0),
                                             device=str(device), mode=mode, compile_networks=compiled)
        result[f"{label}_full_batch_ms"] = round(1000 * medians[FULL_BATCH], 2)
        result[f"{label}_labelled_half_ms"] = round(1000 * medians["supervised"], 2)
        result[f"{label}_wall_s"] = round(time.perf_counter() - started, 1)
    result["speed-up"] = round(result["eager_full_batch_ms"] / result["compiled_full_batch_ms"], 3)
    result["keep"] = "yes (≥ 15 %)" if result["speed-up"] >= 1.15 else "no (< 15 %)"
    return result


# -- the command --------------------------------------------------------------------------------------------

def run(data: str | Path, out: str | Path, *, device: str = "auto", budget: float = 420.0, quick: bool = False,
        card_name: str = "la-vnet", steps: int = 400, repeats: int = 8, warmup: int = 3) -> dict:
    """Every section in turn (see the module docstring); returns the report's data."""
    import torch
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.inference import resolve_device
    total = Budget(budget)
    target = resolve_device(device)
    card = load_card(card_name)
    report = Report(Path(out))
    if quick:
        steps, repeats, warmup = 3, 2, 1
    report.section("environment", {**environment(target), "card": card.name, "budget_s": budget, "quick": quick,
                                   "data": str(data), "cases": len(read_manifest(data)["cases"])})
    cases = read_pack(data)
    available = set(register_all_methods())
    methods = [m for m in METHODS if m in available and (m != "plc-kd" or _has_simpleitk())]
    if quick:
        methods = ["supervised"]
    step_costs: dict = {}

    def iteration_cost(seconds):
        result = iteration_cost_section(card, target, repeats=repeats, warmup=warmup, methods=methods, seconds=seconds)
        for row in result["table"]:
            if row["method"] == "supervised":
                step_costs.update({m: (row.get(f"{m}_ms") or 100) / 1000 for m in MODES})
        return result

    _guarded(report, "iteration_cost", total, iteration_cost)
    # Run folders stay out of ``out``: only the report travels back from a GPU machine.
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        trained = _guarded(report, "training", total,
                           lambda seconds: training_section(card, target, cases, Path(scratch), steps=steps,
                                                            seconds=seconds, step_costs=step_costs))
        model = ((trained or {}).get("models") or {}).get("fp32-deterministic")
        _guarded(report, "inference", total,
                 lambda seconds: inference_section(card, target, cases, model, seconds=seconds, quick=quick))
    _guarded(report, "compile", total,
             lambda seconds: compile_section(card, target, repeats=repeats, warmup=warmup, seconds=seconds))
    report.section("end", {"wall_s": round(time.perf_counter() - total.started, 1),
                           "peak_gib_overall": _peak_gib(target) if target.type != "cuda" else
                           round(torch.cuda.max_memory_reserved(target) / 2 ** 30, 2)})
    return report.data


def _has_simpleitk() -> bool:
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="pack LA volumes small and lossless")
    pack.add_argument("--la", required=True, help="the LA folder (with train.list)")
    pack.add_argument("--out", required=True)
    pack.add_argument("--labeled", type=int, default=8)
    pack.add_argument("--validation", type=int, default=8)
    measure = commands.add_parser("run", help="measure (see the module docstring)")
    measure.add_argument("--data", required=True, help="a folder written by 'pack'")
    measure.add_argument("--out", required=True, help="where gpu_check.json and gpu_check.md go")
    measure.add_argument("--device", default="auto")
    measure.add_argument("--budget", type=float, default=420.0, help="seconds for all sections together")
    measure.add_argument("--steps", type=int, default=400, help="training steps per mode at most")
    measure.add_argument("--card", default="la-vnet")
    measure.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run (CPU, seconds)")
    args = parser.parse_args(argv)
    if args.command == "pack":
        manifest = pack_la(args.la, args.out, labeled=args.labeled, validation=args.validation)
        size = sum(p.stat().st_size for p in Path(args.out).iterdir())
        print(f"{manifest}: {args.labeled} + {args.validation} cases, {size / 2 ** 20:.1f} MiB")
        return 0
    run(args.data, args.out, device=args.device, budget=args.budget, quick=args.quick, card_name=args.card,
        steps=args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
