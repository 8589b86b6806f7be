"""The napari face: reader, writer, sample data and dock widgets (the only layer importing napari/Qt).

Everything here is reached through ``napari.yaml``; the modules import napari and Qt lazily
where they can, so that the manifest validates quickly.
"""
