"""The engine: model cards, networks, inference, metrics, methods and the trainer.

No napari and no Qt here: everything is usable from scripts, notebooks and the CLI. Long
work reports progress through plain callbacks or generators of small report objects.
"""
