"""What every benchmark shares: the results folder, tables, CSV, the machine, LA cases.

Nothing here is timed; the scripts time their own work with ``time.perf_counter``.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

#: Where results go (gitignored): ``bench-results/<benchmark>/``; ``SEMISEG_BENCH_RESULTS`` moves it.
RESULTS_ENV = "SEMISEG_BENCH_RESULTS"
#: The LA benchmark's folder of volumes inside the shared data folder.
LA_FOLDER = "LA"
#: Validation split carved from the 80 training volumes: the last 8 of ``train.list``.
VALIDATION_CASES = 8


def results_dir(name: str) -> Path:
    """``bench-results/<name>/``, created."""
    folder = Path(os.environ.get(RESULTS_ENV, "bench-results")) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def register_all_methods() -> list[str]:
    """Every registered method's name (importing the package registers them all)."""
    from napari_semiseg.engine.methods import list_methods
    return list_methods()


def set_threads(threads: int | None) -> int:
    """Fix torch's intra-op threads (None: leave it); returns the count in force."""
    import torch
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict[str, str]:
    """Where the numbers came from: CPU model, cores, load, torch version and threads, date."""
    import torch
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"cpu": cpu_model(), "cores": str(os.cpu_count()), "load_avg_1_5_15": load,
            "torch": torch.__version__, "torch_threads": str(torch.get_num_threads()),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def describe_machine() -> str:
    info = machine()
    return (f"{info['cpu']}, {info['cores']} cores (load {info['load_avg_1_5_15']}), torch {info['torch']} "
            f"({info['torch_threads']} threads), CUDA {info['cuda']}, {info['date']}")


def write_csv(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    """Rows (dicts with the same keys, first row's order) as CSV; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _cell(value: object) -> str:
    if isinstance(value, float):
        if not np.isfinite(value):
            return "nan"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def curve_panels(panels: int, width: float):
    """A row of ``panels`` plots sharing the Dice axis, as (figure, axes); None without matplotlib
    (the curves are optional, the tables are not)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(1, panels, figsize=(width * panels, 4.2), sharey=True, squeeze=False)
    return figure, list(axes[0])


def save_curve_panels(figure, axes, path: Path) -> Path:
    """Grid and legend on every panel, "validation Dice" on the first; the figure written to ``path``."""
    import matplotlib.pyplot as plt
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("validation Dice")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def format_table(rows: Sequence[Mapping[str, object]], columns: Iterable[str] | None = None) -> str:
    """A markdown table of ``rows`` (all columns, or ``columns``)."""
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = []
        for row in rows:
            columns += [key for key in row if key not in columns]
    columns = list(columns)
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def report(name: str, rows: Sequence[Mapping[str, object]], *, title: str, notes: Sequence[str] = ()) -> Path:
    """Print the table with the machine, write ``<name>.csv`` and ``summary.md``; returns the CSV."""
    folder = results_dir(name)
    csv_path = write_csv(folder / f"{name}.csv", rows)
    text = "\n".join([f"## {title}", "", f"Machine: {describe_machine()}", "", format_table(rows), "",
                      *[f"- {n}" for n in notes]])
    (folder / "summary.md").write_text(text + "\n")
    print(text, flush=True)
    print(f"[{name}] wrote {csv_path}", flush=True)
    return csv_path


def la_root(shared_data: str | Path) -> Path:
    """``<shared-data>/LA`` (or the folder itself when it is the LA folder)."""
    root = Path(shared_data)
    return root / LA_FOLDER if (root / LA_FOLDER).is_dir() else root


def la_list(shared_data: str | Path, list_file: str | Path | None = None) -> list[tuple[str, Path]]:
    """(case id, mri_norm2.h5 path) of ``list_file`` (default the LA ``train.list``), in order."""
    from napari_semiseg.io import la_case_paths
    root = la_root(shared_data)
    cases = la_case_paths(root, list_file or root / "train.list")
    return [(case.case_id, Path(case.path)) for case in cases]


def read_la_case(path: Path, downsample: int | tuple[int, int, int] = 1
                 ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """An LA case as (image float32 zyx, label uint8 zyx, spacing zyx mm), optionally
    downsampled: an int ``k`` is ``(1, k, k)``, k×k in-plane blocks (the CPU quality protocol);
    a tuple gives the (z, y, x) factors. Image: mean of each block; label: a block is foreground
    when at least half its voxels are."""
    from napari_semiseg.io import read_volume
    volume = read_volume(path)
    image = np.asarray(volume.array, dtype=np.float32)
    label = np.asarray(volume.label, dtype=np.uint8)
    spacing = tuple(float(s) for s in volume.spacing)
    factors = block_factors(downsample)
    if factors != (1, 1, 1):
        image, label = downsample_blocks(image, label, factors)
        spacing = tuple(s * f for s, f in zip(spacing, factors))
    return image, label, spacing


def block_factors(downsample: int | Sequence[int]) -> tuple[int, int, int]:
    """(z, y, x) block sizes of a ``downsample`` setting: ``k`` → (1, k, k); a triple as given."""
    if isinstance(downsample, int):
        return (1, downsample, downsample)
    z, y, x = (int(f) for f in downsample)
    return (z, y, x)


def downsample_blocks(image: np.ndarray, label: np.ndarray, factors: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Block means of (fz, fy, fx) blocks; trailing slices, rows and columns that do not fill a
    block are dropped. Label blocks vote (≥ half foreground → 1)."""
    fz, fy, fx = factors
    z, y, x = (size // f for size, f in zip(image.shape, factors))

    def blocks(a):
        cut = a[:z * fz, :y * fy, :x * fx].reshape(z, fz, y, fy, x, fx)
        return cut.astype(np.float32).mean(axis=(1, 3, 5))
    return blocks(image).astype(np.float32), (blocks(label) >= 0.5).astype(np.uint8)


__all__ = ["RESULTS_ENV", "VALIDATION_CASES", "cpu_model", "block_factors", "describe_machine", "downsample_blocks",
           "format_table", "la_list", "la_root", "machine", "read_la_case", "register_all_methods",
           "report", "results_dir", "set_threads", "write_csv"]


#: The folder that holds the ``benchmarks`` package: children started with ``-m benchmarks.x``
#: run from here, whatever the caller's working directory (the tests run from ``tests/``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def rerun_under_xvfb(module: str, argv: Sequence[str] | None) -> None:
    """Without a display, run ``python -m module argv`` again inside ``xvfb-run`` and exit with its status.

    napari renders only under an X server; with one (or inside the re-run) this returns.
    """
    if os.environ.get("DISPLAY") or os.environ.get("SEMISEG_BENCH_XVFB") or not shutil.which("xvfb-run"):
        return
    command = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, "-m", module,
               *(argv if argv is not None else sys.argv[1:])]
    raise SystemExit(subprocess.call(command, env={**os.environ, "SEMISEG_BENCH_XVFB": "1"}, cwd=REPO_ROOT))
