"""Quality on the LA benchmark: every method against supervised-only at the same N (issue 6 §1).

Protocol (``--setting cpu``, what a 2-core CPU completes):

- cases: the 80 ``mri_norm2.h5`` volumes of ``<shared-data>/LA/train.list``; validation = the
  last 8 of that list (model selection only; never a test set); labelled = the first N
  (N = 4, 8, 16); unlabelled = the rest (80 − 8 − N);
- volumes downsampled by 2 in-plane (y, x block means, labels by block vote; z kept), so
  0.625 × 1.25 × 1.25 mm and about 88 × 80 × 110 voxels; the ``cpu-small`` card (32×48×48);
- a fixed iteration budget per run (``--iterations``, same for every method), each method
  with its own default hyperparameters and the card's optimiser recipe, its ramps (consistency
  weight, confidence threshold) rescaled to keep their share of the run
  (``Method.schedule_for``);
- the model kept is the run's ``best_model.pt`` (best validation Dice);
- the upper bound: supervised on all 72 non-validation volumes;
- ``atso`` starts from the same-N ``supervised`` run as its M0 and spends the iteration
  budget on its two generations and final model (``_atso_run``);
- ``plc-kd`` distils from the same-N ``supervised`` run (trained first when needed): its
  soft labels of the 72 training volumes, on the trainer's grid, are stored in a teacher
  project inside the run folder (``N<n>/plc-kd/teacher-project``, see ``_plc_teacher``);
  the validation volumes are not in it. ``train_s`` counts the student's training only;
- metrics: Dice, Jaccard, 95HD and ASD (medpy semantics, voxels of the evaluated grid, and mm)
  per case, and their mean, on the evaluation set: ``--eval-root``/``--eval-list`` (any LA
  split), by default the validation split (labelled as such: selection and evaluation then
  share cases, an optimistic estimate).

``--setting full`` is the papers' protocol: the ``la-vnet`` card (112×112×80), full
resolution, each method's ``recommended_training()`` (iterations, optimiser, schedule), on
CUDA. It needs a GPU.

Outputs in ``bench-results/quality_la/<setting>/``: one run folder per (N, method) with its
``events.jsonl``; ``per_case.csv``, ``summary.csv`` (means), and ``validation_dice.png``
(validation Dice against iteration per method and N). A run that already finished is reused
(``--force`` retrains).

Usage::

    python -m benchmarks.quality_la --shared-data ../shared/data --labeled 8 --iterations 300
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._atso_run import atso_finished, run_atso_benchmark
from ._atso_run import read_summary as read_atso_summary
from ._common import (VALIDATION_CASES, curve_panels, describe_machine, format_table, la_list, read_la_case,
                      register_all_methods, results_dir, save_curve_panels, set_threads, write_csv)

SETTINGS = {
    # card, in-plane downsampling, default iterations, whether methods' published recipes apply
    # 400 steps: the slowest method (UA-MT, eight teacher passes) then takes about 30 minutes
    # on one core, the bound per run.
    "cpu": {"card": "cpu-small", "downsample": 2, "iterations": 400, "recipe": False, "device": "cpu"},
    # 2×2×2 blocks: 1.25 mm isotropic, so a 32×48×48 patch spans 40 mm in z instead of 20.
    "cpu-iso": {"card": "cpu-small", "downsample": (2, 2, 2), "iterations": 400, "recipe": False, "device": "cpu"},
    "full": {"card": "la-vnet", "downsample": 1, "iterations": None, "recipe": True, "device": "cuda"},
}
DEFAULT_METHODS = ("supervised", "mean-teacher", "ua-mt", "ss-net", "crossmatch", "dual-branch-kd", "plc-kd", "atso")
#: Not a trainer method: a schedule over a project, from the same-N supervised run (``_atso_run``).
ATSO = "atso"
UPPER_BOUND = "supervised-all"
#: The project of teacher soft labels inside a plc-kd run folder.
TEACHER_PROJECT = "teacher-project"


@dataclass(frozen=True)
class LALoader:
    """Picklable loader of one LA case for the trainer (``CaseSource.load``)."""

    path: str
    downsample: int | tuple[int, int, int]
    with_label: bool

    def __call__(self):
        from napari_semiseg.engine.training import LoadedCase
        image, label, spacing = read_la_case(Path(self.path), self.downsample)
        # Block means of a whole-scan z-score still are one (la-vnet's zscore-once keeps them).
        return LoadedCase(image, spacing, label if self.with_label else None, zscored=True)


def source(case: tuple[str, Path], downsample: int, labeled: bool):
    from napari_semiseg.engine.training import CaseSource
    return CaseSource(case[0], LALoader(str(case[1]), downsample, labeled), labeled)


def training_data(cases: Sequence[tuple[str, Path]], n_labeled: int | None, downsample: int):
    """Labelled = first ``n_labeled`` (None: all non-validation), validation = last 8."""
    from napari_semiseg.engine.training import TrainingData
    train, validation = cases[:-VALIDATION_CASES], cases[-VALIDATION_CASES:]
    n = len(train) if n_labeled is None else n_labeled
    return TrainingData(labeled=[source(c, downsample, True) for c in train[:n]],
                        unlabeled=[source(c, downsample, False) for c in train[n:]],
                        validation=[source(c, downsample, True) for c in validation])


def _finished(run_dir: Path) -> bool:
    if run_dir.name == ATSO:
        return atso_finished(run_dir)
    events = run_dir / "events.jsonl"
    return events.is_file() and '"finished"' in events.read_text()


def run_folder(out: Path, method: str, n_labeled: int | None) -> Path:
    """``<out>/N<n>/<method>`` (``<out>/Nall/supervised-all`` for the upper bound)."""
    return out / f"N{'all' if n_labeled is None else n_labeled}" / (UPPER_BOUND if n_labeled is None else method)


def best_model_file(run_dir: Path) -> Path:
    """The run's ``best_model.pt`` (best validation Dice), else its last ``model.pt``."""
    best = run_dir / "best_model.pt"
    return best if best.is_file() else run_dir / "model.pt"


def train_one(method: str, n_labeled: int | None, cases, setting: dict, out: Path, *, iterations: int | None,
              validate_every: int | None, device: str, force: bool, seed: int,
              method_params: dict | None = None) -> Path:
    """Train one (method, N) run unless it already finished; returns its run folder.

    ``method_params`` are added to the method's defaults (and its rescaled ramps).
    """
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.methods import get_method
    from napari_semiseg.engine.training import TrainConfig, train
    run_dir = run_folder(out, method, n_labeled)
    if _finished(run_dir) and not force:
        print(f"[quality_la] reusing finished run {run_dir}", flush=True)
        return run_dir
    card = load_card(setting["card"])
    overrides = dict(get_method(method).recommended_training()) if setting["recipe"] else {}
    if iterations:
        overrides["iterations"] = iterations
    overrides.setdefault("iterations", setting["iterations"] or card.training.iterations)
    # The ramps keep their share of the run (a 6000-step ramp would never start in 400 steps).
    overrides["method_params"] = {**get_method(method).schedule_for(overrides["iterations"]), **(method_params or {})}
    every = validate_every or max(1, overrides["iterations"] // 5)
    data = training_data(cases, n_labeled, setting["downsample"])
    config = TrainConfig.from_card(card, run_dir, method=method, device=device, seed=seed, validate_every=every,
                                   checkpoint_every=0, log_every=10, cache_volumes=len(cases), **overrides)
    if run_dir.exists():
        for stale in ("events.jsonl", "checkpoint.pt", "best_model.pt", "model.pt"):
            (run_dir / stale).unlink(missing_ok=True)
    started = time.perf_counter()
    result = train(config, data)
    print(f"[quality_la] {run_dir.name} N={n_labeled}: {result.status} after {result.iteration} steps in "
          f"{time.perf_counter() - started:.0f} s, best validation Dice "
          f"{result.metrics.get('best_validation_dice', result.metrics.get('validation_dice'))}", flush=True)
    return run_dir


def plc_kd_params(teacher_run: Path, n_labeled: int, cases, setting: dict, out: Path, device: str) -> dict:
    """PLC-KD's ``method_params``: a teacher project of ``teacher_run``'s soft labels of the
    training cases (never the validation split), built in the plc-kd run folder."""
    from ._plc_teacher import build_teacher_project
    train_cases = cases[:-VALIDATION_CASES]
    project = build_teacher_project(run_folder(out, "plc-kd", n_labeled) / TEACHER_PROJECT,
                                    best_model_file(teacher_run), train_cases, n_labeled, setting["downsample"],
                                    device=device, config=json.loads((teacher_run / "config.json").read_text()))
    # Every distillation volume stays prepared in memory, as the trainer keeps its own cases.
    return {"project": str(project), "cache_volumes": len(train_cases)}


def evaluate_run(run_dir: Path, eval_cases, downsample: int, device: str) -> list[dict]:
    """Per-case metrics of the run's best model (else its last) on ``eval_cases``."""
    from napari_semiseg.engine.inference import predict_volume
    from napari_semiseg.engine.metrics import evaluate_case
    from napari_semiseg.engine.training import load_model
    from napari_semiseg.io import Volume
    model = load_model(best_model_file(run_dir), device="cpu")
    rows = []
    for case_id, path in eval_cases:
        image, label, spacing = read_la_case(path, downsample)
        prediction = predict_volume(model.network, Volume.from_array(image, spacing=spacing, zscored=True), model.card,
                                    device=device)
        metrics = evaluate_case(prediction.labels, label, spacing, classes=[1], case_id=case_id)
        rows.append({"case": case_id, "dice": metrics.dice, "jaccard": metrics.jaccard, "hd95_vox": metrics.hd95,
                     "asd_vox": metrics.asd, "hd95_mm": metrics.hd95_mm, "asd_mm": metrics.asd_mm})
    return rows


def validation_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(iteration, validation Dice) pairs from the run's ``events.jsonl`` (ATSO: its summary)."""
    from napari_semiseg.engine.training import read_events
    if run_dir.name == ATSO:
        return [tuple(point) for point in read_atso_summary(run_dir)["curve"]]
    events = read_events(run_dir / "events.jsonl") if (run_dir / "events.jsonl").is_file() else []
    return [(e["iteration"], e["dice"]) for e in events if e["event"] == "validation" and e["dice"] is not None]


def run_seconds(run_dir: Path) -> float:
    from napari_semiseg.engine.training import read_events
    if run_dir.name == ATSO:
        return float(read_atso_summary(run_dir)["train_s"])
    events = read_events(run_dir / "events.jsonl")
    ends = [e for e in events if e["event"] == "iteration"]
    return float(ends[-1]["elapsed_s"]) if ends else float("nan")


def plot_curves(curves: dict[tuple[str, str], list[tuple[int, float]]], path: Path) -> Path | None:
    """Validation Dice against iteration: one panel per N, one line per method; the upper bound
    (supervised on all labels) dashed in every panel."""
    upper = curves.get((UPPER_BOUND, "all"))
    panels = list(dict.fromkeys(n for _, n in curves if n != "all")) or ["all"]
    drawn = curve_panels(len(panels), 5)
    if drawn is None:
        return None
    figure, axes = drawn
    for axis, n in zip(axes, panels):
        for (method, run_n), points in curves.items():
            if run_n == n and points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=method)
        if upper and n != "all":
            axis.plot(*zip(*upper), linestyle="--", color="grey", label="supervised, all labels")
        axis.set_title(f"N = {n} labelled")
        axis.set_xlabel("iteration")
    return save_curve_panels(figure, axes, path)


def finite_mean(rows: list[dict], key: str) -> float:
    """The mean of a per-case metric over the cases where it is defined (NaN when none is)."""
    values = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def mean_row(label: str, n: str, rows: list[dict], seconds: float, iterations: int) -> dict:
    def mean(key):
        return finite_mean(rows, key)
    return {"N": n, "method": label, "iterations": iterations, "train_s": round(seconds, 1), "cases": len(rows),
            "dice": mean("dice"), "jaccard": mean("jaccard"), "hd95_vox": mean("hd95_vox"), "asd_vox": mean("asd_vox"),
            "hd95_mm": mean("hd95_mm"), "asd_mm": mean("asd_mm")}


def run(shared_data: str | Path, *, setting: str = "cpu", labeled: Sequence[int] = (4, 8, 16),
        methods: Sequence[str] = DEFAULT_METHODS, upper_bound: bool = True, iterations: int | None = None,
        validate_every: int | None = None, eval_root: str | None = None, eval_list: str | None = None,
        device: str | None = None, force: bool = False, seed: int = 1337, out: Path | None = None,
        max_cases: int | None = None) -> list[dict]:
    """Train and evaluate every (N, method) run; returns the summary rows (see module docstring).

    ``max_cases`` keeps only the first cases of the list plus the validation split (smoke tests).
    """
    settings = SETTINGS[setting]
    available = register_all_methods()
    methods = [m for m in methods if m in available or m == ATSO]
    device = device or settings["device"]
    cases = la_list(shared_data)
    if max_cases:
        cases = cases[:max_cases - VALIDATION_CASES] + cases[-VALIDATION_CASES:]
    if eval_list:
        eval_cases, eval_name = la_list(eval_root or shared_data, eval_list), f"{eval_list}"
    else:
        eval_cases, eval_name = cases[-VALIDATION_CASES:], "validation split (last 8 of train.list)"
    out = out or results_dir("quality_la") / setting
    jobs = [(m, n) for n in labeled for m in methods] + ([(UPPER_BOUND, None)] if upper_bound else [])
    per_case, summary, curves = [], [], {}
    runs: dict[tuple[str, int | None], Path] = {}

    def trained(method: str, n: int | None, method_params: dict | None = None) -> Path:
        """Each (method, N) is trained at most once per call (plc-kd's teacher is a supervised run)."""
        if (method, n) not in runs:
            runs[method, n] = train_one(method, n, cases, settings, out, iterations=iterations,
                                        validate_every=validate_every, device=device, force=force, seed=seed,
                                        method_params=method_params)
        return runs[method, n]

    def atso(n: int) -> Path:
        run_dir = run_folder(out, ATSO, n)
        if force or not _finished(run_dir):
            m0_run = trained("supervised", n)
            budget = iterations or settings["iterations"]
            # Validation at the same steps as every other run (each of ATSO's trainings is shorter).
            run_atso_benchmark(run_dir, cases[:-VALIDATION_CASES], cases[-VALIDATION_CASES:], n,
                               settings["downsample"], m0_run=m0_run, m0_file=best_model_file(m0_run),
                               card_name=settings["card"], iterations=budget,
                               validate_every=validate_every or max(1, budget // 5), device=device, seed=seed)
        return run_dir

    for method, n in jobs:
        params = None
        if method == "plc-kd" and (force or not _finished(run_folder(out, method, n))):
            params = plc_kd_params(trained("supervised", n), n, cases, settings, out, device)
        run_dir = atso(n) if method == ATSO else trained("supervised" if n is None else method, n, params)
        rows = evaluate_run(run_dir, eval_cases, settings["downsample"], device)
        n_text = "all" if n is None else str(n)
        per_case += [{"N": n_text, "method": method, **row} for row in rows]
        steps = read_atso_summary(run_dir)["iterations"] if method == ATSO else \
            json.loads((run_dir / "config.json").read_text())["iterations"]
        summary.append(mean_row(method, n_text, rows, run_seconds(run_dir), steps))
        curves[method, n_text] = validation_curve(run_dir)
        write_csv(out / "per_case.csv", per_case)
        write_csv(out / "summary.csv", summary)
    plot_curves(curves, out / "validation_dice.png")
    _add_gains(summary)
    write_csv(out / "summary.csv", summary)
    text = "\n".join([f"## LA quality, setting {setting} (evaluated on: {eval_name})", "",
                      f"Machine: {describe_machine()}", "", format_table(summary), "",
                      "Dice % (points over supervised-only at the same N):", "", format_table(dice_by_n(summary))])
    (out / "summary.md").write_text(text + "\n")
    print(text, flush=True)
    return summary


def dice_by_n(summary: list[dict]) -> list[dict]:
    """One row per method, one column per N: "Dice % (±points over supervised)"."""
    table: dict[str, dict] = {}
    for row in summary:
        cell = f"{100 * row['dice']:.1f}"
        if row["method"] != "supervised" and np.isfinite(row.get("dice_gain_pts", float("nan"))):
            cell += f" ({row['dice_gain_pts']:+.1f})"
        table.setdefault(row["method"], {"method": row["method"]})[f"N={row['N']}"] = cell
    return list(table.values())


def _add_gains(summary: list[dict]) -> None:
    """Dice points over supervised-only at the same N."""
    base = {row["N"]: row["dice"] for row in summary if row["method"] == "supervised"}
    for row in summary:
        row["dice_gain_pts"] = 100 * (row["dice"] - base[row["N"]]) if row["N"] in base else float("nan")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", required=True, help="folder holding LA/ (train.list, the h5 volumes)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--labeled", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--no-upper-bound", action="store_true", help="skip supervised on all 72")
    parser.add_argument("--iterations", type=int, default=None,
                        help="steps per run (cpu default 400: about 30 min for the slowest method, UA-MT, "
                             "on one core; full: each method's recommended_training())")
    parser.add_argument("--validate-every", type=int, default=None, help="default: iterations / 5")
    parser.add_argument("--eval-root", default=None, help="LA root of the evaluation set (default --shared-data)")
    parser.add_argument("--eval-list", default=None, help="list file of the evaluation set (default: validation split)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--seed", type=int, default=1337,
                        help="every run's seed (another seed: another results folder, SEMISEG_BENCH_RESULTS)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    run(args.shared_data, setting=args.setting, labeled=args.labeled, methods=args.methods,
        upper_bound=not args.no_upper_bound, iterations=args.iterations, validate_every=args.validate_every,
        eval_root=args.eval_root, eval_list=args.eval_list, device=args.device, force=args.force, seed=args.seed)


if __name__ == "__main__":
    main()
