"""``python -m napari_semiseg.engine.training CONFIG.json``: one training run, as a child process.

Reads a ``TrainConfig`` JSON (``TrainConfig.write``), runs ``train`` with SIGTERM/SIGINT
turned into a graceful stop, and exits 0 when the run finished or stopped, 1 on an error
(whose message is also the run's last ``error`` event). Works unchanged under ``torchrun``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ...errors import SemisegError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_semiseg.engine.training",
                                     description="Run one training run described by a JSON config.")
    parser.add_argument("config", help="the TrainConfig JSON file (e.g. <run_dir>/config.json)")
    args = parser.parse_args(argv)
    from ._config import TrainConfig
    from ._loop import train
    try:
        config = TrainConfig.read(args.config)
        if config.deterministic:  # cuBLAS reads it when CUDA starts, i.e. before any kernel runs
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        result = train(config, handle_signals=True)
    except SemisegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"status": result.status, "iteration": result.iteration, "model": str(result.model),
                          "checkpoint": str(result.checkpoint)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
