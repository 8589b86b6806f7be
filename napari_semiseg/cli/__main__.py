"""``python -m napari_semiseg.cli``: the same as the ``semiseg`` console script."""

import sys

from ._main import main

sys.exit(main())
