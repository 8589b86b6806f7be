"""The README's main job: ``python -m napari_semiseg.demo --out DIR [--headless]``.

The demo is part of the napari face and lives in ``_napari/_demo.py``; this entry point keeps
the command short and imports nothing of napari until the demo runs.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ._napari._demo import main as run_demo
    return run_demo(argv)


if __name__ == "__main__":
    sys.exit(main())
