"""Methods by name: ``get_method("supervised")``, ``list_methods()``, ``register_method``."""

from __future__ import annotations

from typing import Any

from ..cards import ModelCard
from ._base import Method, MethodError, NetworkFactory

_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Make a ``Method`` subclass available by its ``name`` (usable as a class decorator).

    Raises:
        MethodError: the class has no name, or another class already took it.
    """
    if not cls.name:
        raise MethodError(f"{cls.__qualname__} has no 'name' to register it under")
    known = _METHODS.get(cls.name)
    if known is not None and known is not cls:
        raise MethodError(f"method name {cls.name!r} is already taken by {known.__qualname__}")
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of the registered methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``.

    Raises:
        MethodError: unknown name (the message lists the known ones).
    """
    try:
        return _METHODS[name]
    except KeyError:
        raise MethodError(f"unknown training method {name!r}; known methods: "
                          f"{', '.join(list_methods()) or 'none'}") from None


def create_method(name: str, card: ModelCard, params: dict[str, Any] | None = None, *,
                  network_factory: NetworkFactory | None = None) -> Method:
    """Build the named method with its networks for ``card`` and hyperparameter overrides."""
    return get_method(name)(card, params, network_factory=network_factory)


__all__ = ["create_method", "get_method", "list_methods", "register_method"]
