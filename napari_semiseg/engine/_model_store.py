"""A project's model version, rebuilt as a network ready for inference.

The weights file of a model version is the trainer's ``model.pt`` (or a ``checkpoint.pt``),
copied into the project by ``register_model``; the trainer's ``load_model`` reads it safely
(``weights_only``) and rebuilds the network from the card stored inside it.
"""

from __future__ import annotations

from torch import nn

from ..errors import ProjectError
from .cards import ModelCard
from .methods import with_method_postprocessing


def resolve_model_id(project, model_id: int | None) -> int:
    """``model_id`` if given (checked), else the project's active model's id.

    Raises:
        ProjectError: no such model, or no model given and none is active.
    """
    if model_id is not None:
        return project.model(model_id).id
    active = project.active_model()
    if active is None:
        raise ProjectError(f"{project.root}: the project has no model yet; train one or "
                           "register one before making predictions")
    return active.id


def load_model_version(project, model_id: int | None = None, *, device="cpu"
                       ) -> tuple[nn.Module, ModelCard]:
    """The network of a model version (the active one by default), in eval mode, and its card.

    Args:
        project: an open ``Project``.
        model_id: the model version; None takes the active model.
        device: where to put the network ("cpu", "cuda", ...); inference moves it anyway.

    Returns:
        (network, card): the deployed network with its trained weights, and the card it was
        trained with (preprocessing, patch, sliding-window settings).

    Raises:
        ProjectError: unknown model, or none active.
        TrainingError: the weights file is missing, unsafe, differs from the SHA-256 recorded
            when the version was registered, or does not fit its network.
    """
    from .training import load_model  # the trainer pulls in MONAI: only when a model is loaded

    model = project.model(resolve_model_id(project, model_id))
    trained = load_model(model.checkpoint_path, device=device, expected_sha256=model.sha256)
    return trained.network, with_method_postprocessing(trained.card, model.method, model.config)


__all__ = ["load_model_version", "resolve_model_id"]
