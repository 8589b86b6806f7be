"""Files the plugin ships that are not code: the icon napari.yaml names (``napari_semiseg.resources:icon.svg``).

A package of its own because npe2 resolves an icon with ``importlib.resources`` as
``package:resource``, and a resource name may not contain a folder.
"""
