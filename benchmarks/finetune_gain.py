"""Fine-tune gain on LA: from a supervised M0, does semi-supervised fine-tuning beat more supervised steps? (issue 14)

The product's loop is: a model trained on a few labels, then corrections, then semi-supervised
fine-tuning with the unlabelled volumes. This measures that last step against its control.

Protocol (per N and seed):

- cases: the 80 ``mri_norm2.h5`` volumes of ``<shared-data>/LA/train.list``; validation = the
  last 8 (model selection); labelled = the first N (``--labeled``, default 4 and 8);
  unlabelled = the other 72 − N;
- **M0** = supervised on the N labels for ``m0_iterations`` steps (the card's recipe), its
  best-validation weights kept;
- from M0's weights (``TrainConfig.init_from``), K = ``iterations`` more steps of
  (a) **control**: supervised on the same N labels, and (b) **each method** with the N labels
  and the 72 − N unlabelled volumes. Every fine-tuning run has the same optimiser, learning
  rate and schedule (restarted over the K steps), batch halves, validation steps and seed, so
  the only difference from the control is the method; each method keeps its own default
  hyperparameters with its ramps fitted to the K steps (``Method.schedule_for``), as the
  Fine-tune panel does. (One recipe for all: a method's published optimiser would give the
  control a different schedule from one method to the next.) PLC-KD distils from M0's soft
  labels of the 72 training volumes (a teacher project in its run folder, ``_plc_teacher``);
- each run keeps its best-validation weights; M0, the control and each method are evaluated
  on the validation split (Dice, Jaccard, 95HD, ASD per case, medpy semantics), and with
  ``--eval-root/--eval-list`` on that LA split as well;
- reported: validation Dice of M0, the control and each method, mean ± standard deviation
  over the seeds, and each method's gain over the control in points, paired by seed (mean ±
  standard deviation of the per-seed differences); the validation curves (M0, then each
  fine-tuning run after it), averaged over the seeds.

Settings:

- ``cpu``: the ``cpu-small`` card on volumes downsampled by 2×2×2 blocks (1.25 mm isotropic;
  ``quality_la --setting cpu-iso``), M0 600 steps, K = 150, validation every 50 steps (M0: every
  200), sliding windows at overlap 0.25. Sized from the step costs measured on 2 cores (RESULTS
  §1: supervised 0.19 s, the six methods 0.35–1.8 s, 6.2 s for one step of every fine-tuning
  run), a validation pass over the 8 validation volumes in a few seconds, and PLC-KD's
  pseudo-labelling of 72 volumes: about 26 minutes per seed, 80 minutes for N = 8, every
  method, 3 seeds, on 2 idle cores; N = 4 is a second command of the same size, and its table
  keeps the N = 8 rows. (Until 2026-12-04 this setting used 2× in-plane blocks and M0 300
  steps: RESULTS §7 keeps that first table.)
- ``gpu``: the ``la-vnet`` card at full resolution on CUDA, M0 600 steps, K = 300, validation
  every 100 steps (M0: every 200), one seed by default (``--seeds``), sliding windows at overlap
  0.625 instead of the papers' dense stride for every run (validation, evaluation, PLC-KD's
  teacher). Measured on an H200 with fake LA volumes of the real size (timing only, 2026-12-04):
  with the dense stride a validation pass took 14.5 s and N = 8 with every method needed about
  14 minutes (it was stopped at 8); at overlap 0.625 a pass takes 5.5 s, and M0 + control +
  CrossMatch + PLC-KD (its teacher project and all evaluations included) took 214 s: M0 40 s,
  control 25 s, CrossMatch 56 s, PLC-KD 31 s per run. The other four methods took 58–74 s each
  with the dense stride, about 30–47 s at overlap 0.625: N = 8 with every method, one seed, is
  estimated at about 6 minutes (not run end to end).

Outputs in ``bench-results/finetune_gain/<setting>/``: one run folder per
``N<n>/seed<s>/<m0|control|method>`` with its ``events.jsonl``; ``per_case.csv``,
``per_run.csv`` (one row per run and evaluation split), ``summary.csv`` and ``summary.md`` (the
table), ``validation_dice.png`` (the curves), ``losses.csv`` (each run's loss terms, learning
rate and consistency weight every 10 steps). A finished run is reused (``--force`` retrains).

Usage::

    python -m benchmarks.finetune_gain --shared-data ../shared/data --setting cpu --labeled 8
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from ._common import VALIDATION_CASES, la_list, register_all_methods, results_dir, set_threads, write_csv
from ._finetune_report import CONTROL, M0, earlier_rows, run_folder, run_row, write_report
from .quality_la import best_model_file, evaluate_run, training_data

SETTINGS = {
    # Overlap 0.25 (cpu-small's grid until issue 17 raised it to 0.5 against seams in pictures):
    # 0.5 has 2.5× the windows on these volumes, and validation would no longer fit the 90 minutes.
    # 2×2×2 blocks (1.25 mm isotropic): a 32×48×48 patch then spans 40 mm in z, not 20, and supervised
    # cpu-small gets room to learn from more labels (RESULTS §7: N = 8 ≈ 62 %, all 72 ≈ 69 % at 600
    # steps, where 2× in-plane gave 50 % and 56 %).
    "cpu": {"card": "cpu-small", "downsample": (2, 2, 2), "m0_iterations": 600, "iterations": 150,
            "validate_every": 50, "seeds": 3, "device": "cpu", "inference_overlap": 0.25},
    # la-vnet's dense stride 4×18×18 made each validation pass over 8 volumes 14.5 s on an H200, more than
    # 300 steps of most methods: validation, evaluation and PLC-KD's teacher use overlap 0.625 instead
    # (5.5 s; RESULTS §2: 0.38 Dice points from the dense grid on CPU), the same for every run.
    "gpu": {"card": "la-vnet", "downsample": 1, "m0_iterations": 600, "iterations": 300, "validate_every": 100,
            "seeds": 1, "device": "cuda", "inference_overlap": 0.625},
}
DEFAULT_METHODS = ("mean-teacher", "ua-mt", "ss-net", "crossmatch", "dual-branch-kd", "plc-kd")
#: Runs that show where a method's gain comes from (``--methods`` takes their names too).
#: ``mt-no-consistency``: Mean Teacher with its consistency weight 0 learns from the labelled half
#: only, as the control does, but its student still sees the unlabelled half in the same forward
#: pass (as the papers' code feeds the whole batch), so batch normalisation normalises over 4
#: patches instead of the control's 2.
ABLATIONS = {"mt-no-consistency": ("mean-teacher", {"consistency": 0.0})}
#: Validation passes in M0's run (one pass over the 8 validation volumes costs about as much as
#: 80 supervised cpu-small steps).
M0_VALIDATIONS = 3
FIRST_SEED = 1337
#: The project of M0's soft labels inside a plc-kd run folder.
TEACHER_PROJECT = "teacher-project"


def finished(run_dir: Path) -> bool:
    events = run_dir / "events.jsonl"
    return events.is_file() and '"finished"' in events.read_text()


def setting_card(setting: dict):
    """The setting's card; its sliding window set to ``inference_overlap`` when the setting has one
    (the card travels with each kept model, so evaluation and PLC-KD's teacher use it too)."""
    import dataclasses
    from napari_semiseg.engine.cards import load_card
    card = load_card(setting["card"])
    if setting.get("inference_overlap") is None:
        return card
    window = dataclasses.replace(card.inference, stride=None, overlap=setting["inference_overlap"])
    return dataclasses.replace(card, inference=window)


def train_run(run_dir: Path, method: str, n_labeled: int, cases, setting: dict, *, iterations: int,
              validate_every: int, seed: int, device: str, init_from: Path | None = None,
              method_params: dict | None = None, ramps: str = "warm", lr: float | None = None,
              force: bool = False) -> Path:
    """Train one run into ``run_dir`` unless it already finished; returns the folder.

    The recipe is the product's (``workflows.train.effective_recipe``): M0 the card's, every run
    from M0 a fine-tune on the card's optimiser, learning rate and schedule over its own
    ``iterations``, whatever the method, so the control and the methods differ in the method
    alone; ``method_params`` are added to the method's defaults and ramps: fitted to the run
    (``Method.schedule_for``), the consistency-weight ramps dropped for a run from M0 unless
    ``ramps`` is ``"fitted"``; ``lr`` replaces the card's learning rate.
    """
    from napari_semiseg.engine.training import train
    if finished(run_dir) and not force:
        print(f"[finetune_gain] reusing finished run {run_dir}", flush=True)
        return run_dir
    for stale in ("events.jsonl", "checkpoint.pt", "best_model.pt", "model.pt"):
        (run_dir / stale).unlink(missing_ok=True)
    config = run_config(run_dir, method, setting, iterations=iterations, validate_every=validate_every, seed=seed,
                        device=device, cached=len(cases), init_from=init_from, method_params=method_params,
                        ramps=ramps, lr=lr)
    started = time.perf_counter()
    result = train(config, training_data(cases, n_labeled, setting["downsample"]))
    print(f"[finetune_gain] {run_dir}: {result.status} after {result.iteration} steps in "
          f"{time.perf_counter() - started:.0f} s, best validation Dice "
          f"{result.metrics.get('best_validation_dice', result.metrics.get('validation_dice'))}", flush=True)
    return run_dir


def run_config(run_dir: Path, method: str, setting: dict, *, iterations: int, validate_every: int, seed: int,
               device: str, cached: int, init_from: Path | None = None, method_params: dict | None = None,
               ramps: str = "warm", lr: float | None = None):
    """The ``TrainConfig`` of one run (see ``train_run``)."""
    from napari_semiseg.engine.methods import get_method
    from napari_semiseg.engine.training import TrainConfig
    from napari_semiseg.workflows.train import effective_recipe
    card = setting_card(setting)
    recipe = effective_recipe(card, method, iterations, warm_start=init_from is not None)
    # "fitted": the ramps as from scratch, fitted to the K steps; the caller's parameters win either way.
    ramp_params = get_method(method).schedule_for(iterations) if ramps == "fitted" else {}
    params = {**recipe.method_params, **ramp_params, **(method_params or {})}
    config = TrainConfig.from_card(card, run_dir, **recipe.settings, method=method, method_params=params)
    return config.replace(validate_every=validate_every, checkpoint_every=0, log_every=10, seed=seed, device=device,
                          cache_volumes=cached, init_from=None if init_from is None else str(init_from),
                          **({} if lr is None else {"lr": lr}))


def plc_kd_params(m0_run: Path, run_dir: Path, n_labeled: int, cases, setting: dict, device: str) -> dict:
    """PLC-KD's ``method_params``: a teacher project of M0's soft labels of the 72 training
    volumes (never the validation split), in the plc-kd run folder."""
    from ._plc_teacher import build_teacher_project
    train_cases = cases[:-VALIDATION_CASES]
    project = build_teacher_project(run_dir / TEACHER_PROJECT, best_model_file(m0_run), train_cases, n_labeled,
                                    setting["downsample"], device=device,
                                    config=json.loads((m0_run / "config.json").read_text()))
    return {"project": str(project), "cache_volumes": len(train_cases)}


def runs_of_seed(n_labeled: int, seed: int, methods: Sequence[str], cases, setting: dict, out: Path, *,
                 m0_iterations: int, iterations: int, validate_every: int, device: str, ramps: str,
                 finetune_lr: float | None = None, force: bool) -> dict[str, Path]:
    """M0, then the control and each method from M0's weights: {name: run folder}."""
    def folder(name):
        return run_folder(out, n_labeled, seed, name)
    m0 = train_run(folder(M0), "supervised", n_labeled, cases, setting, iterations=m0_iterations,
                   validate_every=max(1, m0_iterations // M0_VALIDATIONS), seed=seed, device=device, force=force)
    start = best_model_file(m0)
    runs = {M0: m0}
    for name in (CONTROL, *methods):
        method, params = ABLATIONS.get(name, ("supervised" if name == CONTROL else name, None))
        if method == "plc-kd" and (force or not finished(folder(name))):
            params = plc_kd_params(m0, folder(name), n_labeled, cases, setting, device)
        # A retrained M0 makes every run that started from it stale.
        runs[name] = train_run(folder(name), method, n_labeled, cases, setting, iterations=iterations,
                               validate_every=validate_every, seed=seed, device=device, init_from=start,
                               method_params=params, ramps=ramps, lr=finetune_lr,
                               force=force or _older_than(folder(name), start))
    return runs


def _older_than(run_dir: Path, start: Path) -> bool:
    events = run_dir / "events.jsonl"
    return events.is_file() and events.stat().st_mtime < start.stat().st_mtime


def run(shared_data: str | Path, *, setting: str = "cpu", labeled: Sequence[int] = (4, 8),
        methods: Sequence[str] = DEFAULT_METHODS, seeds: int | None = None, m0_iterations: int | None = None,
        iterations: int | None = None, validate_every: int | None = None, eval_root: str | None = None,
        eval_list: str | None = None, device: str | None = None, ramps: str = "warm", force: bool = False,
        out: Path | None = None, max_cases: int | None = None, first_seed: int = FIRST_SEED,
        finetune_lr: float | None = None) -> list[dict]:
    """Train and evaluate every (N, seed) group of runs; returns the summary rows.

    ``max_cases`` keeps only the first cases of the list plus the validation split (smoke tests).
    """
    settings = SETTINGS[setting]
    available = register_all_methods()
    unknown = [m for m in methods if (m not in available and m not in ABLATIONS) or m == "supervised"]
    if unknown:
        raise SystemExit(f"finetune_gain: unknown or non-semi-supervised method(s) {unknown}; choose from "
                         f"{[m for m in available if m != 'supervised'] + list(ABLATIONS)}")
    device = device or settings["device"]
    m0_iterations = m0_iterations or settings["m0_iterations"]
    iterations = iterations or settings["iterations"]
    validate_every = validate_every or settings["validate_every"]
    seed_list = [first_seed + index for index in range(seeds or settings["seeds"])]
    cases = la_list(shared_data)
    if max_cases:
        cases = cases[:max_cases - VALIDATION_CASES] + cases[-VALIDATION_CASES:]
    splits = [("validation", cases[-VALIDATION_CASES:])]
    if eval_list:
        splits.append((Path(eval_list).name, la_list(eval_root or shared_data, eval_list)))
    out = out or results_dir("finetune_gain") / setting
    # Rows of other N from an earlier call stay: N = 4 and N = 8 may be two commands, one table.
    per_case, per_run = earlier_rows(out / "per_case.csv", labeled), earlier_rows(out / "per_run.csv", labeled)
    for n in labeled:
        for seed in seed_list:
            runs = runs_of_seed(n, seed, methods, cases, settings, out, m0_iterations=m0_iterations,
                                iterations=iterations, validate_every=validate_every, device=device, ramps=ramps,
                                finetune_lr=finetune_lr, force=force)
            for name, run_dir in runs.items():
                for split, eval_cases in splits:
                    rows = evaluate_run(run_dir, eval_cases, settings["downsample"], device)
                    per_case += [{"N": n, "seed": seed, "run": name, "split": split, **row} for row in rows]
                    per_run.append(run_row(n, seed, name, split, rows, run_dir))
            write_csv(out / "per_case.csv", per_case)
            write_csv(out / "per_run.csv", per_run)
    return write_report(per_run, out, setting=setting, settings=settings, ramps=ramps)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", required=True, help="folder holding LA/ (train.list, the h5 volumes)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--labeled", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--seeds", type=int, default=None, help="seeds 1337, 1338, ... (cpu default 3, gpu 1)")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED,
                        help="the first of the seeds (to run seeds side by side, one per command and results folder)")
    parser.add_argument("--m0-iterations", type=int, default=None, help="M0's supervised steps (cpu 600, gpu 600)")
    parser.add_argument("--iterations", type=int, default=None, help="fine-tuning steps K (cpu 150, gpu 300)")
    parser.add_argument("--validate-every", type=int, default=None,
                        help="fine-tuning validation interval (cpu 50, gpu 100)")
    parser.add_argument("--eval-root", default=None, help="LA root of the extra evaluation set (default --shared-data)")
    parser.add_argument("--eval-list", default=None, help="list file of an extra evaluation set")
    parser.add_argument("--ramps", choices=("warm", "fitted"), default="warm",
                        help="consistency-weight ramps of the fine-tuning runs: dropped, since they start from a "
                             "trained M0 (warm, default), or fitted to the K steps as from scratch")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="learning rate of every fine-tuning run, control included (default: the card's)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--report-only", action="store_true",
                        help="train and evaluate nothing: report the rows of the results folder's per_run.csv")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.report_only:
        out = results_dir("finetune_gain") / args.setting
        write_report(earlier_rows(out / "per_run.csv", labeled=()), out, setting=args.setting,
                     settings=SETTINGS[args.setting], ramps=args.ramps)
        return
    run(args.shared_data, setting=args.setting, labeled=args.labeled, methods=args.methods, seeds=args.seeds,
        m0_iterations=args.m0_iterations, iterations=args.iterations, validate_every=args.validate_every,
        eval_root=args.eval_root, eval_list=args.eval_list, device=args.device, ramps=args.ramps, force=args.force,
        first_seed=args.first_seed, finetune_lr=args.finetune_lr)


if __name__ == "__main__":
    main()
