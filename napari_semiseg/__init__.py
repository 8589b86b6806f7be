"""napari-semiseg: semi-supervised segmentation of 3D medical volumes.

Layers (dependencies point downwards only):

- ``napari_semiseg._napari``: the napari face (widgets, reader, writer, sample data);
- ``napari_semiseg.cli``: the ``semiseg`` command;
- ``napari_semiseg.engine``: networks, methods, trainer, inference, metrics;
- ``napari_semiseg.project``: the SQLite catalogue of cases, label and model versions;
- ``napari_semiseg.io``: volumes with their geometry.

Importing this package imports none of them, so ``import napari_semiseg.io`` stays light.
"""

__version__ = "0.1.0"
