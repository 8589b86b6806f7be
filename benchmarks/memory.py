"""Peak memory (RSS) of inference on a CT-sized volume and of training, per card (issues 3 §8, 6 §3).

Each measurement runs in its own child process (``python -m benchmarks.memory --child ...``),
which reports its own peak resident set size when its work is done, so measurements do not
contaminate each other. The peak is ``VmHWM`` of ``/proc/self/status`` (Linux), which starts
afresh at ``exec``; ``ru_maxrss`` would not do, as Linux carries the parent's peak over a
fork + exec (elsewhere it is the fallback). A child with nothing to do
(``--child idle``: Python, torch, MONAI and the package imported) gives the baseline.

- inference: a synthetic 300×512×512 volume (z, y, x; float32, 0.8×0.8 mm in-plane, 1 mm
  slices; CT-like values) predicted with a fresh network of the card on the CPU, window batch
  1. The large cards on a CPU take hours for a whole volume at their dense grid, so
  ``--max-windows N`` cancels the sweep after N windows (``should_stop``). MONAI allocates the
  whole-volume output and weight buffers before the first window, so the peak of a cancelled
  sweep misses only the final post-processing (argmax, entropy, resampling back): the table says
  which runs were cut short.
- training: ``--train-steps`` optimiser steps of the supervised method with the card's patch
  and batch on two synthetic cases, in process (``engine.training.train``).

Target (issue 6): inference under 4 GB on the CT-sized volume.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from ._common import REPO_ROOT, register_all_methods, report, results_dir

CT_SHAPE = (300, 512, 512)
CT_SPACING = (1.0, 0.8, 0.8)
TARGET_GB = 4.0


def _child_infer(card_name: str, max_windows: int, threads: int, shape=CT_SHAPE) -> None:
    import torch
    torch.set_num_threads(threads)
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.inference import Cancelled, predict_volume
    from napari_semiseg.engine.networks import build_network
    from napari_semiseg.io import Volume
    card = load_card(card_name)
    torch.manual_seed(0)
    net = build_network(card.network)
    rng = np.random.default_rng(0)
    array = rng.normal(40.0, 200.0, tuple(shape)).astype(np.float32)
    volume = Volume.from_array(array, spacing=CT_SPACING)
    del array
    seen = {"windows": 0, "total": 0}

    def progress(report) -> None:
        seen["windows"], seen["total"] = report.windows_done, report.windows_total

    stop = (lambda: seen["windows"] >= max_windows) if max_windows else None
    started = time.perf_counter()
    try:
        predict_volume(net, volume, card, device="cpu", window_batch=1, progress=progress, should_stop=stop)
        status = "complete"
    except Cancelled:
        status = "cancelled"
    _result(status, seen["windows"], seen["total"], time.perf_counter() - started)


def peak_rss_kb() -> int:
    """This process's peak resident set size in KiB (see the module docstring)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def _result(status: str, done: int, total: int, seconds: float) -> None:
    """The line the parent parses: this process's peak RSS."""
    peak_kb = peak_rss_kb()
    print(f"RESULT status={status} windows={done} total={total} seconds={seconds:.1f} maxrss_kb={peak_kb}",
          flush=True)


def _child_train(card_name: str, steps: int, threads: int) -> None:
    import tempfile
    import torch
    torch.set_num_threads(threads)
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.training import TrainConfig, TrainingData, train
    from .iteration_cost import synthetic_cases
    card = load_card(card_name)
    cases = synthetic_cases(card)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig.from_card(card, folder, method="supervised", iterations=steps, validate_every=0,
                                       checkpoint_every=0, device="cpu")
        train(config, TrainingData(labeled=cases))
    _result("complete", steps, steps, time.perf_counter() - started)


def measure(kind: str, card: str = "cpu-small", *, max_windows: int = 0, steps: int = 2, threads: int = 2,
            timeout: float = 3600, shape: Sequence[int] = CT_SHAPE) -> dict:
    """Run one child; returns {kind, card, peak_rss_gb, status, windows, total, seconds}."""
    command = [sys.executable, "-m", "benchmarks.memory", "--child", kind, "--card", card,
               "--max-windows", str(max_windows), "--train-steps", str(steps), "--threads", str(threads),
               "--shape", *map(str, shape)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    if done.returncode != 0 or "RESULT" not in done.stdout:
        raise RuntimeError(f"memory child {kind} {card} failed:\n{done.stderr[-3000:]}")
    fields = dict(item.split("=") for item in done.stdout.split("RESULT", 1)[1].split())
    peak_kb = float(fields["maxrss_kb"])
    return {"measure": kind, "card": card, "peak_rss_gb": peak_kb / 1024 ** 2, "status": fields.get("status", ""),
            "windows_or_steps": f"{fields.get('windows', '')}/{fields.get('total', '')}",
            "seconds": float(fields.get("seconds", "nan"))}


def run(cards: Sequence[str] = ("cpu-small", "la-vnet", "pancreas-vnet"), *, max_windows: dict | None = None,
        train_cards: Sequence[str] = ("cpu-small", "la-vnet", "pancreas-vnet"), steps: int = 2,
        threads: int = 2, shape: Sequence[int] = CT_SHAPE) -> list[dict]:
    """Baseline, then inference per card, then training per card; print, write CSV; returns rows.

    """
    register_all_methods()
    results_dir("memory")
    max_windows = max_windows or {}
    rows = [measure("idle", "none", threads=threads)]
    rows += [measure("inference", card, max_windows=max_windows.get(card, 0), threads=threads, shape=shape)
             for card in cards]
    rows += [measure("training", card, steps=steps, threads=threads) for card in train_cards]
    for row in rows:
        row["target_lt_4gb"] = ("yes" if row["peak_rss_gb"] < TARGET_GB else "NO") if row["measure"] == "inference" \
            else ""
    report("memory", rows, title=f"Peak RSS: inference on a {'×'.join(map(str, shape))} volume (window batch 1) "
           "and training (supervised, card batch)",
           notes=["peak of each child process (VmHWM on Linux, else ru_maxrss); 'idle' = imports only",
                  "status 'cancelled' = sweep stopped after the windows shown (output buffers already allocated)"])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["idle", "inference", "training"], default=None)
    parser.add_argument("--card", default="cpu-small")
    parser.add_argument("--cards", nargs="+", default=["cpu-small", "la-vnet", "pancreas-vnet"])
    parser.add_argument("--train-cards", nargs="+", default=["cpu-small", "la-vnet", "pancreas-vnet"])
    parser.add_argument("--max-windows", type=int, default=0, help="child: cancel after N windows (0: all)")
    parser.add_argument("--big-card-windows", type=int, default=8,
                        help="windows after which the V-Net cards' sweeps are cancelled (0: the whole volume)")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=list(CT_SHAPE), help="inference volume (z, y, x)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared-data", default=None, help="unused (run_all passes it to every script)")
    args = parser.parse_args(argv)
    if args.child == "idle":
        import torch  # noqa: F401
        import napari_semiseg.engine.inference  # noqa: F401
        _result("complete", 0, 0, 0.0)
    elif args.child == "inference":
        _child_infer(args.card, args.max_windows, args.threads, args.shape)
    elif args.child == "training":
        _child_train(args.card, args.train_steps, args.threads)
    else:
        windows = {card: args.big_card_windows for card in args.cards if card != "cpu-small"}
        run(args.cards, max_windows=windows, train_cards=args.train_cards, steps=args.train_steps,
            threads=args.threads, shape=args.shape)


if __name__ == "__main__":
    main()
