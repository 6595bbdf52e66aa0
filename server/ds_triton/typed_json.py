"""Build frozen dataclasses from parsed JSON, checking each value against its annotation.

A spec section declares its keys once, as annotated dataclass fields; this
module reads the annotations and turns every mistake into one ``SpecError``
that names the dotted key, the type it must have and what was found, e.g.
``batching.max_batch_size must be an integer, got "64" (a string)``. Nothing
is coerced: ``"false"`` is not a boolean and ``1`` is not ``true``.

Supported annotations: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``,
``tuple[T, ...]`` (a JSON list), unions with ``None`` and with each other, and
nested dataclasses (a JSON object). A field may declare a ``minimum`` for its
numbers (``setting(64, minimum=1)``), checked on every number it holds.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ds_triton.errors import SpecError

T = TypeVar("T")

_MINIMUM = "minimum"


def setting(default: Any, *, minimum: int | None = None) -> Any:
    """A field's default, and the smallest number it (or each of its items) may hold."""
    metadata = {} if minimum is None else {_MINIMUM: minimum}
    return dataclasses.field(default=default, metadata=metadata)


def build(cls: type[T], data: Any, path: str = "") -> T:
    """An instance of dataclass ``cls`` from the JSON object ``data``.

    Raises:
        SpecError: an unknown or missing key, or a value of the wrong type or
            below its minimum; the message names the dotted key.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{path or 'spec'} must be {describe(cls)}, got {_found(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in {path!r}" if path else ""
        raise SpecError(f"unknown key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        where = f" in {path!r}" if path else ""
        raise SpecError(f"missing key(s){where}: {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else key
        kwargs[key] = _value(value, hints[key], dotted, fields[key].metadata.get(_MINIMUM))
    return cls(**kwargs)


def check_minimums(instance: Any, path: str) -> None:
    """Hold a dataclass built in code (not read from JSON) to its fields' declared minimums.

    Raises:
        SpecError: naming the dotted key, as reading it from JSON would.
    """
    for f in dataclasses.fields(instance):
        minimum = f.metadata.get(_MINIMUM)
        if minimum is None:
            continue
        value = getattr(instance, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, (int, float)) and not isinstance(item, bool) and item < minimum:
                raise SpecError(f"{path}.{f.name} must be >= {minimum}, got {item}")


def describe(annotation: Any) -> str:
    """What a value of ``annotation`` looks like in JSON, for messages."""
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation):
        return "an object"
    origin = get_origin(annotation)
    if origin is Literal:
        values = get_args(annotation)
        return json.dumps(values[0]) if len(values) == 1 else f"one of {json.dumps(list(values))}"
    if origin is tuple:
        item = describe(get_args(annotation)[0])
        return f"a list of {item.removeprefix('an ').removeprefix('a ')}s"
    if _is_union(annotation):
        return " or ".join(describe(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _value(value: Any, annotation: Any, key: str, minimum: int | None) -> Any:
    if _is_union(annotation):
        for option in get_args(annotation):
            if _matches(value, option):
                return _value(value, option, key, minimum)
        raise SpecError(f"{key} must be {describe(annotation)}, got {_found(value)}")
    if not _matches(value, annotation):
        raise SpecError(f"{key} must be {describe(annotation)}, got {_found(value)}")
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, key)  # type: ignore[arg-type]
    if get_origin(annotation) is tuple:
        item = get_args(annotation)[0]
        return tuple(_value(v, item, f"{key}[{i}]", minimum) for i, v in enumerate(value))
    if minimum is not None and isinstance(value, (int, float)) and value < minimum:
        raise SpecError(f"{key} must be >= {minimum}, got {value}")
    return float(value) if annotation is float else value


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the JSON shape of ``annotation`` (items are checked later)."""
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is type(None):
        return value is None
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, dict)
    origin = get_origin(annotation)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in get_args(annotation))
    if origin is tuple:
        return isinstance(value, list)
    if _is_union(annotation):
        return any(_matches(value, a) for a in get_args(annotation))
    raise TypeError(f"unsupported annotation in a spec: {annotation!r}")


def _found(value: Any) -> str:
    kind = {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "an object", type(None): "null",
    }.get(type(value), type(value).__name__)
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return kind
    return f"{json.dumps(value)} ({kind})"
