"""Fingerprints of network weights, and a probe of the weights a training really starts from.

ATSO's students must start from M0's weights, self-learning's from the previous student's.
Rather than trusting the ``init_from`` path we asked for, ``StartWeightsProbe`` is the
trainer's network factory: it keeps the networks the trainer builds, and when the trainer
announces its start (after loading the initial weights, before the first step) it hashes the
deployed network's state dict. The run report records that hash beside the hash of the model
it was meant to start from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..cards import NetworkSpec
from ..methods import default_network_factory


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and values of a state dict (device-independent)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.reshape(-1)
        flat = flat.to(torch.uint8) if flat.dtype == torch.bool else flat
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_file_sha256(path: str | Path) -> str:
    """The fingerprint of the deployed network's weights in a model (or checkpoint) file."""
    from ..training import load_model_weights
    weights, _record = load_model_weights(path)
    return state_dict_sha256(weights)


class StartWeightsProbe:
    """A network factory that remembers what it built, to fingerprint the starting weights.

    Args:
        factory: the real factory (the engine's ``build_network`` by default).

    Use: pass it as ``train(..., network_factory=probe)`` and call ``probe.on_event(event)``
    from the progress callback; after the ``start`` event ``probe.start_sha256`` is set.
    """

    def __init__(self, factory: Callable[[NetworkSpec], nn.Module] | None = None):
        self.factory = factory or default_network_factory
        self.networks: list[nn.Module] = []
        self.start_sha256: str | None = None

    def __call__(self, spec: NetworkSpec) -> nn.Module:
        network = self.factory(spec)
        self.networks.append(network)
        return network

    def on_event(self, event: dict) -> None:
        if event.get("event") == "start" and self.start_sha256 is None and self.networks:
            # the supervised method builds one network: the one it trains and deploys
            self.start_sha256 = state_dict_sha256(self.networks[0].state_dict())


__all__ = ["StartWeightsProbe", "model_file_sha256", "state_dict_sha256"]
