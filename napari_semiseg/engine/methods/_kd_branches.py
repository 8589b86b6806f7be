"""One branch of a dual-decoder network, seen as an ordinary single-decoder network.

The dual-branch KD method trains a network with two decoders on one encoder
(``build_network(spec, second_decoder=True)``) but deploys, validates and predicts with one
branch. ``BranchNetwork`` is that branch: it *shares* the encoder and the chosen decoder
modules (no copy, so it always shows the current weights), its ``forward`` is the one the
inference and validation code call, and its ``state_dict`` has exactly the keys of
``build_network(spec)`` built without a second decoder (``encoder.*``, ``decoder.*``), so the
trainer's model file loads into a plain network.
"""

from __future__ import annotations

from ..networks import NetworkError, SegmentationNetwork

BRANCHES = ("teacher", "student")


class BranchNetwork(SegmentationNetwork):
    """The encoder plus one decoder of a dual-decoder network (modules shared, not copied).

    Args:
        dual: a ``SegmentationNetwork`` built with a second decoder.
        branch: ``"teacher"`` (the main decoder) or ``"student"`` (the second decoder).

    ``forward(x)`` maps (B, C, Z, Y, X) to that branch's logits (B, K, Z, Y, X); ``train()`` /
    ``eval()`` and ``to()`` act on the shared modules, hence on ``dual`` too.
    """

    def __init__(self, dual: SegmentationNetwork, branch: str):
        super().__init__(in_channels=dual.in_channels, num_classes=dual.num_classes,
                         feature_channels=dual.feature_channels, input_multiple=dual.input_multiple)
        if branch not in BRANCHES:
            raise NetworkError(f"unknown branch {branch!r}; expected one of {BRANCHES}")
        if not dual.has_second_decoder:
            raise NetworkError(f"{type(dual).__name__} has no second decoder: build it with second_decoder=True")
        self.branch = branch
        self.encoder = dual.encoder
        self.decoder = dual.student_decoder if branch == "student" else dual.decoder


__all__ = ["BRANCHES", "BranchNetwork"]
