"""Plain data (parsed YAML or JSON) checked against the annotations of a dataclass's fields.

Cards, run configurations and method hyperparameters come from files a person typed or a
program wrote. A value of the wrong type must be refused where it is read, naming its key:
left alone it fails much later or not at all (``dropout: "yes please"`` is truthy and trains,
``lr: "fast"`` fails at the first optimiser step, ``base_filters: 8.5`` deep inside a layer).

The rules follow the annotations: ``int`` takes integers but not booleans (``True`` is an
``int`` to Python, never a channel count to a user); ``float`` takes integers and floats,
finite ones, and becomes a float; ``bool`` only ``true``/``false``; ``str`` only text;
``tuple[X, Y, Z]`` a list of exactly that many such values, which becomes a tuple;
``X | None`` also ``null``. Fields whose type is another dataclass are the caller's to build.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any


class _Mismatch(Exception):
    """A value does not fit its annotation; the message says what was expected."""


def check_field_types(cls: type, data: Mapping[str, Any], *, where: str, error: type[Exception],
                      prefix: str = "") -> dict[str, Any]:
    """``data`` with every value of an annotated field checked and brought to its type.

    Args:
        cls: the dataclass whose field annotations say what each key holds.
        data: key → value, as parsed; keys that are not fields are left as they are (the
            caller reports unknown keys in its own words).
        where: the file or object the data comes from (the message starts with it).
        error: the exception to raise (``CardError``, ``TrainingError``, ...).
        prefix: how the caller names the section, e.g. ``"network."``.

    Returns:
        A new dict: lists become tuples where a tuple belongs, integers floats where a float
        belongs; everything else unchanged.

    Raises:
        error: "WHERE: PREFIXKEY: must be ..., got ...", for the first value that does not fit.
    """
    hints = typing.get_type_hints(cls)
    checked = dict(data)
    for key, value in data.items():
        if key not in hints:
            continue
        try:
            checked[key] = _conform(value, hints[key])
        except _Mismatch as mismatch:
            raise error(f"{where}: {prefix}{key}: {mismatch}") from None
    return checked


def _conform(value: Any, annotation: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _conform_union(value, args, annotation)
    if annotation is Any or (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
        return value
    if origin is tuple:
        return _conform_tuple(value, args, annotation)
    if origin is dict or annotation is dict:
        return _conform_mapping(value, args, annotation)
    if origin is list or annotation is list:
        _expect(isinstance(value, (list, tuple)), value, annotation)
        return [_conform(v, args[0]) for v in value] if args else list(value)
    if annotation in _SCALARS:
        return _SCALARS[annotation](value)
    return value  # an annotation these rules do not cover (a tensor, a class): the caller's


def _conform_union(value: Any, args: tuple, annotation: Any) -> Any:
    if value is None and type(None) in args:
        return None
    for option in (a for a in args if a is not type(None)):
        try:
            return _conform(value, option)
        except _Mismatch:
            continue
    raise _Mismatch(f"must be {describe(annotation)}, got {value!r}")


def _conform_tuple(value: Any, args: tuple, annotation: Any) -> tuple:
    _expect(isinstance(value, (list, tuple)), value, annotation)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_element(v, args[0], annotation) for v in value)
    _expect(len(value) == len(args), value, annotation)
    return tuple(_element(v, a, annotation) for v, a in zip(value, args))


def _element(value: Any, annotation: Any, whole: Any) -> Any:
    try:
        return _conform(value, annotation)
    except _Mismatch:
        raise _Mismatch(f"must be {describe(whole)}, got {value!r} in it") from None


def _conform_mapping(value: Any, args: tuple, annotation: Any) -> dict:
    _expect(isinstance(value, Mapping), value, annotation)
    if args and args[0] is str:
        _expect(all(isinstance(k, str) for k in value), value, annotation)
    return dict(value)


def _expect(condition: bool, value: Any, annotation: Any) -> None:
    if not condition:
        raise _Mismatch(f"must be {describe(annotation)}, got {value!r}")


def _integer(value: Any) -> int:
    _expect(isinstance(value, int) and not isinstance(value, bool), value, int)
    return value


def _number(value: Any) -> float:
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool), value, float)
    if not math.isfinite(value):
        raise _Mismatch(f"must be a finite number, got {value!r}")
    return float(value)


def _boolean(value: Any) -> bool:
    _expect(isinstance(value, bool), value, bool)
    return value


def _text(value: Any) -> str:
    _expect(isinstance(value, str), value, str)
    return value


_SCALARS = {int: _integer, float: _number, bool: _boolean, str: _text}
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text",
          dict: "a mapping", list: "a list", type(None): "null"}


def describe(annotation: Any) -> str:
    """What an annotation accepts, in a user's words: ``"a list of 3 integers or null"``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in sorted(args, key=lambda a: a is type(None)))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of ({', '.join(describe(a) for a in args)})"
    if origin is dict:
        return "a mapping"
    if origin is list:
        return "a list"
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _plural(annotation: Any) -> str:
    return {int: "integers", float: "numbers", bool: "booleans", str: "texts"}.get(
        annotation, describe(annotation))
