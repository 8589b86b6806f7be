"""What a fine-tune's unlabelled targets are worth (issue 14): at each run's last step, the
validation Dice of the deployed network and of every network its method validates beside it
(``Method.branch_networks``: Mean Teacher's and UA-MT's EMA teacher, dual-branch KD's teacher
decoder).

A consistency method learns from its teacher's predictions on the unlabelled volumes. A teacher
that segments the validation cases no better than its student gives targets that hold little the
labelled half does not already teach; this table says how much better (or worse) it is. Each run's
method is rebuilt from its last checkpoint (``checkpoint.pt``: every network at the last step)
and validated with the trainer's own code (``engine.training.validate_method``), so the deployed
network's Dice here is the run's last validation Dice.

Run after ``finetune_gain`` on its results folder:

    python -m benchmarks.finetune_targets --shared-data ../shared/data [--setting cpu] [--results DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import describe_machine, format_table, la_list, results_dir, set_threads, write_csv
from ._finetune_report import M0, earlier_rows, run_folder, sample_std
from .finetune_gain import SETTINGS
from .quality_la import training_data

#: The network a model version keeps, as ``validate_method`` names it.
DEPLOYED = "deployed"


def final_networks_dice(run_dir: Path, validation) -> dict[str, float]:
    """{network: validation Dice} of the run's last checkpoint: the deployed network and each branch."""
    from napari_semiseg.engine.methods import create_method
    from napari_semiseg.engine.training import TrainConfig, load_checkpoint, validate_method
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    config = TrainConfig.from_dict(checkpoint["config"], where=str(run_dir / "checkpoint.pt"))
    method = create_method(config.method, config.card, config.method_params)
    method.load_state_dict(checkpoint["method_state"])
    return {name: result.dice for name, result in validate_method(method, validation, device="cpu").items()}


def fine_tuning_runs(out: Path) -> list[tuple[int, int, str]]:
    """(N, seed, run) of every fine-tuning run in ``out``'s ``per_run.csv`` (M0 left out)."""
    rows = earlier_rows(out / "per_run.csv", labeled=())
    return list(dict.fromkeys((r["N"], r["seed"], r["run"]) for r in rows if r["run"] != M0))


def target_rows(shared_data: str | Path, out: Path, downsample: int) -> list[dict]:
    """One row per (N, seed, run, network): its validation Dice at the run's last step."""
    cases = la_list(shared_data)
    validation = {}
    rows = []
    for n, seed, name in fine_tuning_runs(out):
        if n not in validation:
            validation[n] = training_data(cases, n, downsample).validation
        for network, dice in final_networks_dice(run_folder(out, n, seed, name), validation[n]).items():
            rows.append({"N": n, "seed": seed, "run": name, "network": network, "dice": dice})
    return rows


def targets_table(rows: list[dict]) -> list[dict]:
    """Per (N, run): the deployed network's and each branch's Dice %, mean ± std over seeds, and
    each branch's lead over the deployed network in points, paired by seed."""
    table = []
    for n, name in dict.fromkeys((r["N"], r["run"]) for r in rows):
        mine = [r for r in rows if (r["N"], r["run"]) == (n, name)]
        by_network = {}
        for r in mine:
            by_network.setdefault(r["network"], {})[r["seed"]] = 100 * r["dice"]
        row = {"N": n, "run": name, "seeds": len(by_network[DEPLOYED])}
        deployed = by_network[DEPLOYED]
        row["deployed, last step"] = _mean_std(list(deployed.values()))
        for network, dice in by_network.items():
            if network != DEPLOYED:
                leads = [dice[s] - deployed[s] for s in dice if s in deployed]
                row[f"{network}, last step"] = _mean_std(list(dice.values()))
                row[f"{network} − deployed (pts)"] = f"{np.mean(leads):+.1f} ± {sample_std(leads):.1f}"
        table.append(row)
    return table


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ± {sample_std(values):.1f}"


def run(shared_data: str | Path, *, setting: str = "cpu", out: Path | None = None) -> list[dict]:
    """Validate every fine-tuning run's last networks; writes ``targets.csv`` and ``targets.md``
    into the results folder and returns the table."""
    out = out or results_dir("finetune_gain") / setting
    rows = target_rows(shared_data, out, SETTINGS[setting]["downsample"])
    write_csv(out / "targets.csv", rows)
    table = targets_table(rows)
    text = "\n".join([f"## What the unlabelled targets are worth, setting {setting}", "",
                      "Validation Dice % at each run's last step (mean ± std over seeds): the deployed network "
                      "and each network validated beside it (the teacher whose predictions are the targets); "
                      "the lead in points is paired by seed. The control has no teacher.", "",
                      f"Machine: {describe_machine()}", "", format_table(table), ""])
    (out / "targets.md").write_text(text)
    print(text, flush=True)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", required=True, help="folder holding LA/ (train.list, the h5 volumes)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--results", type=Path, default=None,
                        help="the finetune_gain results folder (default: its own for the setting)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    run(args.shared_data, setting=args.setting, out=args.results)


if __name__ == "__main__":
    main()
