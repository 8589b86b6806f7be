"""A project's model versions as the faces use them: each with its card as a ``ModelCard``.

The project keeps a version's card as plain data (the catalogue sits below the engine and cannot
know its types); every face reads it through here, typed, instead of reaching into the mapping.
"""

from __future__ import annotations

from ..errors import SemisegError


def card_of(model):
    """The ``ModelCard`` a model version was trained with.

    Raises:
        SemisegError: the stored card is not a valid card (a damaged or foreign catalogue).
    """
    from ..engine.cards import card_from_dict
    return card_from_dict(model.card, where=f"model version {model.id}: card")


def card_name(model) -> str:
    """The name of a version's card, or its own name when the stored card cannot be read."""
    try:
        return card_of(model).name
    except SemisegError:
        return str(model.name)


def trained_with_network(model, card) -> bool:
    """Whether ``model``'s network is ``card``'s (so its weights can start a run of that card)."""
    try:
        return card_of(model).network == card.network
    except SemisegError:
        return False


__all__ = ["card_name", "card_of", "trained_with_network"]
