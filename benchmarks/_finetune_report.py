"""The fine-tune-gain results folder (``benchmarks.finetune_gain``): where each run lives, its rows
read back, and the report: the Dice tables with each method's gain over the control paired by seed,
the mean validation curves, and each run's loss terms and their shares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import curve_panels, describe_machine, format_table, save_curve_panels, write_csv
from .quality_la import finite_mean, run_seconds, validation_curve

M0, CONTROL = "m0", "control"


def run_folder(out: Path, n_labeled: int, seed: int, name: str) -> Path:
    """``<out>/N<n>/seed<seed>/<name>``, name = ``m0``, ``control`` or a method."""
    return out / f"N{n_labeled}" / f"seed{seed}" / name


def mean_curve(curves: Sequence[list[tuple[int, float]]], offset: int = 0) -> list[tuple[int, float]]:
    """The seeds' validation curves averaged at the steps they share, shifted by ``offset``."""
    common = sorted(set.intersection(*[{step for step, _ in c} for c in curves])) if curves else []
    return [(offset + step, float(np.mean([dict(c)[step] for c in curves]))) for step in common]


def mean_curves(per_run: list[dict], out: Path) -> dict[tuple[int, str], list[tuple[int, float]]]:
    """Per (N, run): the validation curve averaged over the seeds of ``per_run``, each fine-tuning
    run's placed after its M0's steps."""
    rows = [r for r in per_run if r["split"] == "validation"]
    curves = {}
    for n, name in dict.fromkeys((r["N"], r["run"]) for r in rows):
        seeds = [r["seed"] for r in rows if (r["N"], r["run"]) == (n, name)]
        offset = 0 if name == M0 else next((r["iterations"] for r in rows if (r["N"], r["run"]) == (n, M0)), 0)
        curves[n, name] = mean_curve([validation_curve(run_folder(out, n, seed, name)) for seed in seeds], offset)
    return curves


def loss_rows(per_run: list[dict], out: Path) -> list[dict]:
    """Every logged step of every run in ``per_run``: its learning rate and each loss term the
    method reports (the consistency weight among them), to see why a method does or does not gain."""
    from napari_semiseg.engine.training import read_events
    rows = []
    for n, seed, name in dict.fromkeys((r["N"], r["seed"], r["run"]) for r in per_run):
        events = run_folder(out, n, seed, name) / "events.jsonl"
        for event in read_events(events) if events.is_file() else []:
            if event["event"] == "iteration":
                rows.append({"N": n, "seed": seed, "run": name, "iteration": event["iteration"], "lr": event["lr"],
                             **event.get("losses", {})})
    return rows


def loss_shares(rows: list[dict]) -> list[dict]:
    """Why a method gains or not, in numbers: per (N, run), over every logged step of every seed,
    the mean supervised loss, the mean unsupervised part of the total (total − supervised: each
    method's extra terms with their weights) and its share of the total, and the mean
    consistency weight where the method logs one."""
    table = []
    for n, name in dict.fromkeys((r["N"], r["run"]) for r in rows):
        mine = [r for r in rows if (r["N"], r["run"]) == (n, name) and "supervised" in r and "total" in r]
        if not mine:
            continue
        supervised = float(np.mean([r["supervised"] for r in mine]))
        unsupervised = float(np.mean([r["total"] - r["supervised"] for r in mine]))
        weights = [r["consistency_weight"] for r in mine if "consistency_weight" in r]
        table.append({"N": n, "run": name, "steps_logged": len(mine), "supervised_loss": supervised,
                      "unsupervised_part": unsupervised,
                      "unsupervised_share_pct": 100 * unsupervised / max(supervised + unsupervised, 1e-12),
                      "consistency_weight_mean": float(np.mean(weights)) if weights else float("nan")})
    return table


def plot_curves(curves: dict[tuple[int, str], list[tuple[int, float]]], m0_iterations: int, path: Path) -> Path | None:
    """One panel per N: M0's mean curve, then each fine-tuning run's after it (dashed line at the start)."""
    panels = sorted({n for n, _ in curves})
    drawn = curve_panels(len(panels), 5.5)
    if drawn is None:
        return None
    figure, axes = drawn
    for axis, n in zip(axes, panels):
        for (run_n, name), points in curves.items():
            if run_n == n and points:
                style = {"color": "black", "linewidth": 2} if name == M0 else \
                    {"color": "grey", "linestyle": "--"} if name == CONTROL else {}
                axis.plot(*zip(*points), marker="o", markersize=3, label=name, **style)
        axis.axvline(m0_iterations, color="grey", linewidth=0.8)
        axis.set_title(f"N = {n} labelled: fine-tuning from M0 (mean over seeds)")
        axis.set_xlabel("iteration (M0, then fine-tuning)")
    return save_curve_panels(figure, axes, path)


def run_row(n_labeled: int, seed: int, name: str, split: str, rows: list[dict], run_dir: Path) -> dict:
    def mean(key):
        return finite_mean(rows, key)
    return {"N": n_labeled, "seed": seed, "run": name, "split": split, "cases": len(rows),
            "iterations": json.loads((run_dir / "config.json").read_text())["iterations"],
            "train_s": round(run_seconds(run_dir), 1), "dice": mean("dice"), "jaccard": mean("jaccard"),
            "hd95_vox": mean("hd95_vox"), "asd_vox": mean("asd_vox")}


def summarise(per_run: list[dict]) -> list[dict]:
    """Per (split, N, run): Dice mean ± std over seeds, and the gain over the control paired by seed."""
    summary = []
    keys = list(dict.fromkeys((r["split"], r["N"], r["run"]) for r in per_run))
    for split, n, name in keys:
        mine = {r["seed"]: r["dice"] for r in per_run if (r["split"], r["N"], r["run"]) == (split, n, name)}
        control = {r["seed"]: r["dice"] for r in per_run if (r["split"], r["N"], r["run"]) == (split, n, CONTROL)}
        dice = np.array(list(mine.values()))
        fine_tuned = name not in (M0, CONTROL)  # a method: its gain over the control
        gains = np.array([100 * (mine[s] - control[s]) for s in mine if s in control])
        summary.append({"split": split, "N": n, "run": name, "seeds": len(dice),
                        "dice_mean": float(dice.mean()), "dice_std": sample_std(dice),
                        "gain_vs_control_pts": float(gains.mean()) if gains.size and fine_tuned else float("nan"),
                        "gain_std_pts": sample_std(gains) if fine_tuned else float("nan"),
                        "seeds_above_control": int((gains > 0).sum()) if fine_tuned else "",
                        "train_s_mean": float(np.mean([r["train_s"] for r in per_run
                                                       if (r["split"], r["N"], r["run"]) == (split, n, name)]))})
    return summary


def sample_std(values) -> float:
    """Sample standard deviation (0 for a single seed)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def dice_table(summary: list[dict], split: str) -> list[dict]:
    """The table the README quotes: one row per run, one column per N, "Dice % ± std (gain ± std)"."""
    table: dict[str, dict] = {}
    for row in summary:
        if row["split"] != split:
            continue
        cell = f"{100 * row['dice_mean']:.1f} ± {100 * row['dice_std']:.1f}"
        if np.isfinite(row["gain_vs_control_pts"]):
            cell += f" ({row['gain_vs_control_pts']:+.1f} ± {row['gain_std_pts']:.1f})"
        table.setdefault(row["run"], {"run": row["run"]})[f"N={row['N']}"] = cell
    return list(table.values())


def earlier_rows(path: Path, labeled: Sequence[int]) -> list[dict]:
    """The rows of ``path`` (a CSV this script wrote) for the N values not in ``labeled``."""
    import csv
    if not path.is_file():
        return []
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["N"]) not in set(labeled)]
    numbers = {"N": int, "seed": int, "cases": int, "iterations": int}
    return [{key: numbers[key](value) if key in numbers else _number(value) for key, value in row.items()}
            for row in rows]


def _number(text: str):
    """A CSV cell back as a float where it is one (metrics), else the text (names)."""
    try:
        return float(text)
    except ValueError:
        return text


def write_report(per_run: list[dict], out: Path, *, setting: str, settings: dict, ramps: str) -> list[dict]:
    """The tables, curves and loss shares of every run in ``per_run`` (their folders under ``out``),
    written to ``out``; returns the summary rows. ``settings`` is the setting's (its card, and its
    step counts where ``per_run`` has no row to read them from). ``--report-only`` calls this alone,
    so seeds run side by side (``--first-seed``, one folder each) are reported together once their
    folders and ``per_run.csv`` rows are gathered under one ``out``."""
    summary = summarise(per_run)
    write_csv(out / "summary.csv", summary)
    m0_iterations = next((r["iterations"] for r in per_run if r["run"] == M0), settings["m0_iterations"])
    iterations = next((r["iterations"] for r in per_run if r["run"] not in (M0,)), settings["iterations"])
    plot_curves(mean_curves(per_run, out), m0_iterations, out / "validation_dice.png")
    losses = loss_rows(per_run, out)
    write_csv(out / "losses.csv", losses)
    shares = loss_shares(losses)
    write_csv(out / "loss_shares.csv", shares)
    seeds = sorted({r["seed"] for r in per_run})
    lines = [f"## LA fine-tune gain, setting {setting}", "",
             f"M0: supervised, {m0_iterations} steps; then {iterations} steps from M0 of the control (supervised, "
             f"same N labels) and of each method (+ the other training volumes, unlabelled); "
             f"card {settings['card']}, seeds {seeds}, best-validation weights kept; consistency-weight "
             f"ramps {'dropped (warm start)' if ramps == 'warm' else 'fitted to the fine-tune'}.", "",
             f"Machine: {describe_machine()}", ""]
    for split in dict.fromkeys(r["split"] for r in per_run):
        lines += [f"Dice % on {split} (mean ± std over seeds; points over the control, paired by seed):", "",
                  format_table(dice_table(summary, split)), ""]
    lines += ["Loss terms during fine-tuning (mean over logged steps and seeds):", "", format_table(shares), "",
              "All rows:", "", format_table(summary)]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return summary


__all__ = ["CONTROL", "M0", "dice_table", "earlier_rows", "run_folder", "run_row", "sample_std", "summarise",
           "write_report"]
