"""Checkpoints (to resume) and model files (to deploy), written atomically, read safely.

Both are ``torch.save`` dicts of tensors and plain data only, so they load with
``torch.load(weights_only=True)``: a file never runs code when read. RNG states are stored as
tensors and tuples of ints for that reason.

``checkpoint.pt`` (everything needed to continue exactly)::

    format, version, iteration (steps done), method, deployed (network name),
    method_state {networks: {name: state_dict}, extra}, optimizer (state_dict),
    rng [per DDP rank: {torch, numpy, python, cuda?}], config (TrainConfig.to_dict()),
    validation {history, best_dice, best_iteration},
    compute {precision, channels_last, deterministic, device} (the trainer adds it: "auto" resolved)

``model.pt`` (what a model version keeps; ``load_model`` rebuilds the network)::

    format, version, card, network_spec, method, method_params, network (state_dict),
    iteration, metrics, config, compute (as in the checkpoint)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...io import atomic_path
from ..cards import ModelCard, card_from_dict, network_spec_from_dict
from ._config import TrainingError

CHECKPOINT_FORMAT = "napari-semiseg-checkpoint"
MODEL_FORMAT = "napari-semiseg-model"
FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
BEST_MODEL_FILE = "best_model.pt"


# -- RNG states ------------------------------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states as safe plain data."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what ``capture_rng_state`` saved (CUDA states only where CUDA runs)."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["position"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# -- writing and reading -----------------------------------------------------------------------

def save_atomically(payload: dict[str, Any], path: Path) -> Path:
    """``torch.save`` into a temporary file beside ``path``, then rename it into place.

    The payload is serialised in memory first: torch's own file writer turns a failed write
    (a full disk, the file-size limit) into an opaque ``RuntimeError``, where a plain write
    reports the ``OSError`` it is.

    Raises:
        TrainingError: the file cannot be written; ``path`` is as it was, no temporary file is left.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
    except OSError as exc:
        raise TrainingError(f"{path}: cannot be written, nothing was saved: {exc.strerror or exc}") from None
    return path


def _load(path: str | Path, expected_format: str, what: str, expected_sha256: str | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such {what} file")
    try:
        payload = torch.load(_verified_bytes(path, expected_sha256), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TrainingError(f"{path}: refused to load: the file holds objects other than tensors and plain "
                            "data (not a napari-semiseg file, or an unsafe one)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise TrainingError(f"{path}: not a readable {what} ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") not in (expected_format,):
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise TrainingError(f"{path}: not a napari-semiseg {what} (format {found!r})")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise TrainingError(f"{path}: {what} format version {payload['version']} is newer than this "
                            f"napari-semiseg reads ({FORMAT_VERSION})")
    return payload


def _verified_bytes(path: Path, expected_sha256: str | None) -> Path | io.BytesIO:
    """The file itself, or, when its SHA-256 is known, the bytes that were checked against it.

    Hashing and loading the same bytes leaves no moment in which a replaced file could slip
    between the check and the load.
    """
    if expected_sha256 is None:
        return path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise TrainingError(f"{path}: differs from the weights registered for this model version "
                            "(SHA-256 mismatch: the file was replaced or damaged); refused")
    return io.BytesIO(data)


def make_checkpoint(*, method, optimizer: torch.optim.Optimizer, iteration: int, config_dict: dict,
                    rng_states: list[dict], validation: dict) -> dict[str, Any]:
    """The checkpoint payload (see the module docstring)."""
    return {"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, "iteration": int(iteration),
            "method": method.name, "deployed": method.deployed_network_name,
            "method_state": method.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_states,
            "config": config_dict, "validation": validation}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors on CPU) with ``weights_only=True``.

    Raises:
        TrainingError: missing, unreadable, unsafe, or not a checkpoint.
    """
    return _load(path, CHECKPOINT_FORMAT, "checkpoint")


def make_model_payload(*, method, iteration: int, metrics: dict, config_dict: dict) -> dict[str, Any]:
    """The deployable model payload (see the module docstring)."""
    return {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "card": method.card.to_dict(),
            "network_spec": dataclasses.asdict(method.deployed_spec()), "method": method.name,
            "method_params": method.params_dict(), "network": method.deployed_state_dict(),
            "iteration": int(iteration), "metrics": metrics, "config": config_dict}


@dataclass
class TrainedModel:
    """A network rebuilt from a model (or checkpoint) file, in eval mode.

    Attributes:
        network: the deployed network with its trained weights.
        card: the card it was trained with.
        method: the method that trained it.
        iteration: steps it was trained for.
        metrics: what the run recorded (validation Dice...).
        config: the run's configuration as the file records it (its ``method_params``...);
            empty for a file that records none.
    """

    network: nn.Module
    card: ModelCard
    method: str
    iteration: int
    metrics: dict
    config: dict = field(default_factory=dict)


def load_model_weights(path: str | Path, *, expected_sha256: str | None = None
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The deployed network's weights and the file's record, from a model or a checkpoint file.

    Args:
        path: the file.
        expected_sha256: the SHA-256 a project recorded for it; a file that differs is refused.
    """
    path = Path(path)
    try:
        payload = _load(path, MODEL_FORMAT, "model", expected_sha256)
        return payload["network"], payload
    except TrainingError as model_error:
        if "SHA-256" in str(model_error):
            raise
        try:
            payload = _load(path, CHECKPOINT_FORMAT, "checkpoint", expected_sha256)
        except TrainingError:
            raise model_error from None
    config = payload["config"]
    record = {"card": config["card"], "network_spec": config["card"]["network"], "method": payload["method"],
              "iteration": payload["iteration"], "metrics": payload.get("validation", {}), "config": config}
    return payload["method_state"]["networks"][payload["deployed"]], record


def load_model(path: str | Path, *, device: str | torch.device = "cpu", network_factory=None,
               expected_sha256: str | None = None) -> TrainedModel:
    """Rebuild the trained network of a model file (or a checkpoint's deployed network).

    Args:
        path: ``model.pt`` / ``best_model.pt`` of a run, a project's model version file, or a
            ``checkpoint.pt``.
        device: where to put the network.
        network_factory: builds the network from its ``NetworkSpec`` (default: the engine's
            registry, by the spec's name: a file never names code to run).
        expected_sha256: the SHA-256 a project recorded for the file; a file that differs
            is refused before anything is read from it.

    Raises:
        TrainingError: the file is missing, unsafe, replaced, or its weights do not fit the network.
        CardError: the card or network spec it records is malformed or names an unknown network.
    """
    weights, record = load_model_weights(path, expected_sha256=expected_sha256)
    card = card_from_dict(record["card"], where=f"{path}: card")
    spec = network_spec_from_dict(record["network_spec"], where=f"{path}: network_spec")
    if network_factory is None:
        from ..networks import build_network as network_factory
    network = network_factory(spec)
    try:
        network.load_state_dict(weights)
    except RuntimeError as exc:
        raise TrainingError(f"{path}: the weights do not fit network {spec.name!r} ({str(exc).splitlines()[0]})"
                            ) from None
    network.to(device).eval()
    return TrainedModel(network, card, record["method"], int(record["iteration"]), dict(record["metrics"]),
                        dict(record.get("config") or {}))


__all__ = ["BEST_MODEL_FILE", "CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "MODEL_FILE", "MODEL_FORMAT",
           "TrainedModel", "capture_rng_state", "load_checkpoint", "load_model", "load_model_weights",
           "make_checkpoint", "make_model_payload", "restore_rng_state", "save_atomically"]
