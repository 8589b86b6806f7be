"""Every benchmark, one after another (``make bench``).

``python -m benchmarks.run_all --shared-data PATH`` runs the full CPU protocol: iteration
cost, inference speed on the 8 validation volumes, memory per card (the V-Net cards' sweeps
cancelled after a few windows), pseudo-labelling throughput, the GUI responsiveness probe, and
the LA quality study (N = 4, 8, 16, every method with ATSO, the upper bound; 400 steps per
run, from about 3 minutes for supervised to about 20 for CrossMatch on one core, about 1.5
CPU-hours per N), and the fine-tune gain from M0 (N = 4 and 8, six methods and the control, 3
seeds; estimated at about 80 minutes per N on 2 idle cores) with what its teachers' targets are worth
(``finetune_targets``): about 7-8 hours for everything.
``--quick`` runs each at reduced sizes (minutes to an hour): fewer repeats and volumes, cpu-small
memory only, quality at N = 8 for supervised and two methods with a short budget, the fine-tune
gain at N = 8 for Mean Teacher and one seed. ``--only`` picks benchmarks. A failing benchmark is reported and
the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from . import finetune_gain, finetune_targets, inference_speed, iteration_cost, memory, pseudo_throughput, quality_la
from ._common import REPO_ROOT, describe_machine, set_threads


def plan(shared_data: str, quick: bool) -> dict[str, Callable[[], object]]:
    """Name → a call running that benchmark at the chosen size."""
    if quick:
        return {
            "iteration_cost": lambda: iteration_cost.run(repeats=5, warmup=1),
            "inference_speed": lambda: inference_speed.run(shared_data, cases=2),
            "memory": lambda: memory.run(("cpu-small",), train_cards=("cpu-small",)),
            "pseudo_throughput": lambda: pseudo_throughput.run(shared_data, volumes=2),
            "responsiveness": lambda: _responsiveness(["--iterations", "6", "--phantoms", "3"]),
            "quality_la": lambda: quality_la.run(shared_data, labeled=(8,), upper_bound=False, iterations=60,
                                                 validate_every=30,
                                                 methods=("supervised", "mean-teacher", "crossmatch")),
            "finetune_gain": lambda: finetune_gain.run(shared_data, labeled=(8,), methods=("mean-teacher",), seeds=1,
                                                       m0_iterations=60, iterations=30, validate_every=15),
            "finetune_targets": lambda: finetune_targets.run(shared_data),
        }
    return {
        "iteration_cost": lambda: iteration_cost.run(repeats=20, warmup=3),
        "inference_speed": lambda: inference_speed.run(shared_data, cases=8),
        "memory": lambda: memory.run(max_windows={"la-vnet": 8, "pancreas-vnet": 8}),
        "pseudo_throughput": lambda: pseudo_throughput.run(shared_data, volumes=8),
        "responsiveness": lambda: _responsiveness([]),
        "quality_la": lambda: quality_la.run(shared_data),
        "finetune_gain": lambda: finetune_gain.run(shared_data),
        "finetune_targets": lambda: finetune_targets.run(shared_data),
    }


def _responsiveness(argv: list[str]) -> None:
    # Its own process: it needs a display (xvfb-run) and a Qt application of its own.
    import subprocess
    code = subprocess.call([sys.executable, "-m", "benchmarks.responsiveness", *argv], cwd=REPO_ROOT)
    if code:
        raise RuntimeError(f"responsiveness benchmark exited with status {code}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", required=True, help="folder holding LA/")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--only", nargs="+", default=None, help="benchmarks to run (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    print(f"Machine: {describe_machine()}", flush=True)
    failed = []
    for name, call in plan(args.shared_data, args.quick).items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        try:
            call()
        except Exception:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - started:.0f} s ===", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
