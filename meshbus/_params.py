"""Typed handler parameters: a handler's signature read once, at decoration, into one plain
function ``call(message)`` that decodes what the handler asks for and calls it.

A handler may ask for at most one payload (a pydantic model, a dataclass, ``bytes``, ``str``,
``dict``, ``list``, ``int``, ``float``, ``bool`` or ``Any``: the JSON value), the
``meshbus.Message`` itself and the ``meshbus.Bus``, each by annotation. A payload that does not
decode into its annotation raises :class:`InvalidPayload`, which the runtime dead-letters at
once instead of retrying. Return values must be something the codecs encode (checked by
annotation, where there is one).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from meshbus import codec
from meshbus.errors import ConfigurationError, DecodeError, InvalidPayload
from meshbus.message import Message

if typing.TYPE_CHECKING:
    from meshbus.bus import Bus

__all__ = ["Call", "InvalidPayload", "bind", "check_return"]

Call = Callable[[Message], Any]
"""``call(message)``: the handler's result, or the coroutine of an ``async def`` handler."""

_JSON_TYPES: tuple[type, ...] = (dict, list, str, int, float, bool)


def _decoder(kind: Any, where: str) -> Callable[[bytes], Any]:
    """How ``data`` becomes a value of ``kind``; ``ConfigurationError`` for a kind there is no
    codec for."""
    if kind is bytes:
        return bytes
    if kind is Any:
        return codec.decode_json
    origin = typing.get_origin(kind)
    if origin in (dict, list):
        kind = origin
    if isinstance(kind, type):
        validate = getattr(kind, "model_validate_json", None)
        if callable(validate):  # a pydantic model
            return validate  # type: ignore[no-any-return]
        if dataclasses.is_dataclass(kind) or kind in _JSON_TYPES:
            model = kind
            return lambda data: codec.decode(data, model)
    raise ConfigurationError(
        f"{where}: meshbus cannot decode a payload into {kind!r}; annotate it as a pydantic "
        "model, a dataclass, bytes, str, dict, list, int, float, bool, Any, meshbus.Message "
        "or meshbus.Bus"
    )


def bind(handler: Callable[..., Any], get_bus: Callable[[], Bus]) -> Call:
    """Read ``handler``'s parameters and return ``call(message)`` for it (see the module
    docstring); ``ConfigurationError`` for a signature meshbus cannot serve."""
    from meshbus.bus import Bus

    where = f"handler {getattr(handler, '__qualname__', handler)!r}"
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:  # a forward reference that does not resolve, and the like
        raise ConfigurationError(f"{where}: cannot read its annotations: {exc}") from exc
    params = list(inspect.signature(handler).parameters.values())
    getters: list[Callable[[Message], Any]] = []
    payload: Callable[[bytes], Any] | None = None
    payload_kind: Any = None
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.KEYWORD_ONLY):
            raise ConfigurationError(f"{where}: parameter {param.name!r} must be positional")
        kind = hints.get(param.name, inspect.Parameter.empty)
        if kind is inspect.Parameter.empty:
            if len(params) != 1:
                raise ConfigurationError(
                    f"{where}: parameter {param.name!r} needs an annotation (the payload's "
                    "type, meshbus.Message or meshbus.Bus)"
                )
            kind = Message
        if isinstance(kind, type) and issubclass(kind, Message):
            getters.append(_same)
        elif kind is Bus:
            getters.append(lambda _message: get_bus())
        else:
            if payload is not None:
                raise ConfigurationError(
                    f"{where}: a handler takes one payload; {param.name!r} would be a second"
                )
            payload, payload_kind = _decoder(kind, where), kind
            getters.append(_payload_getter(payload, kind))
    check_return(hints.get("return", inspect.Parameter.empty), where)
    if getters == [_same]:
        return handler
    if len(getters) == 1 and payload is not None:
        return _one_payload(handler, payload, payload_kind)
    return lambda message: handler(*[get(message) for get in getters])


def _same(message: Message) -> Message:
    return message


def _describe(kind: Any) -> str:
    return getattr(kind, "__name__", None) or repr(kind)


def _payload_getter(decode: Callable[[bytes], Any], kind: Any) -> Callable[[Message], Any]:
    name = _describe(kind)
    if kind is str:

        def text(message: Message) -> Any:
            try:
                return message.text()
            except DecodeError as exc:
                raise InvalidPayload(f"payload is not {name}: {exc}") from exc

        return text

    def get(message: Message) -> Any:
        try:
            return decode(message.data)
        except (ValueError, TypeError) as exc:  # DecodeError and pydantic's errors among them
            raise InvalidPayload(f"payload does not decode as {name}: {exc}") from exc

    return get


def _one_payload(handler: Callable[..., Any], decode: Callable[[bytes], Any], kind: Any) -> Call:
    """The usual handler, one payload and nothing else: one call less per message."""
    if kind is str:
        get = _payload_getter(decode, kind)
        return lambda message: handler(get(message))
    name = _describe(kind)

    def call(message: Message) -> Any:
        try:
            value = decode(message.data)
        except (ValueError, TypeError) as exc:
            raise InvalidPayload(f"payload does not decode as {name}: {exc}") from exc
        return handler(value)

    return call


_ENCODABLE: tuple[Any, ...] = (None, type(None), bytes, bytearray, Any, *_JSON_TYPES, tuple)


def check_return(kind: Any, where: str) -> None:
    """``ConfigurationError`` when a handler's return annotation is something no codec
    encodes (unannotated and ``Any`` pass: they are checked when a value is encoded)."""
    if kind is inspect.Parameter.empty or kind in _ENCODABLE:
        return
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(kind):
            check_return(arg, where)
        return
    if origin is not None and origin in (dict, list, tuple, Awaitable):
        return
    if isinstance(kind, type) and (
        callable(getattr(kind, "model_dump_json", None)) or dataclasses.is_dataclass(kind)
    ):
        return
    raise ConfigurationError(
        f"{where}: it returns {_describe(kind)}, which meshbus cannot encode as a reply or a "
        "published message; return a pydantic model, a dataclass, bytes or JSON data"
    )


def is_async(handler: Callable[..., Any]) -> bool:
    """True for an ``async def`` (or anything whose call returns an awaitable by its type)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 -- an object with an async __call__
    )
