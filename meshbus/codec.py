"""Payload encoding and decoding.

``bytes`` (and ``bytearray``/``memoryview``) pass through untouched and carry no content type.
``dict``, ``list``, ``str``, numbers, ``bool`` and ``None`` travel as JSON; pydantic models as
their JSON; dataclasses as the JSON of their fields. The content type travels in the reserved
``mb-content-type`` header, and ``Message.json()`` / ``Message.decode(Model)`` read it back.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar, cast

from meshbus.errors import DecodeError, EncodeError

__all__ = ["BINARY", "JSON", "decode", "encode"]

JSON = "application/json"
BINARY = "application/octet-stream"

T = TypeVar("T")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_JSON_TYPES = (dict, list, tuple, str, int, float, bool, type(None))


def encode(payload: object) -> tuple[bytes, str | None]:
    """Encode ``payload`` to bytes; return them with their content type (``None`` for bytes)."""
    if type(payload) is bytes:  # the common case first, without a call
        return payload, None
    kind = type(payload)
    if kind in _JSON_TYPES:
        try:
            return _dumps(payload).encode(), JSON
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"payload is not JSON-serialisable: {exc}") from exc
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload), None
    dump_json = getattr(payload, "model_dump_json", None)
    if dump_json is not None and callable(dump_json):  # a pydantic model
        return cast(str, dump_json()).encode(), JSON
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        return encode(dataclasses.asdict(payload))
    raise EncodeError(
        f"cannot encode a {kind.__name__} payload: pass bytes, JSON-serialisable data "
        "(dict, list, str, numbers, bool, None), a pydantic model or a dataclass"
    )


def decode(data: bytes, model: type[T]) -> T:
    """Decode ``data`` as ``model``: a pydantic model, a dataclass, ``bytes``, ``str`` or a
    JSON type (``dict``, ``list``, ``int``...)."""
    if model is bytes:
        return cast(T, data)
    validate_json = getattr(model, "model_validate_json", None)
    if validate_json is not None:
        try:
            return cast(T, validate_json(data))
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise DecodeError(f"data does not validate as {model.__name__}: {exc}") from exc
    value = decode_json(data)
    if dataclasses.is_dataclass(model):
        if not isinstance(value, dict):
            raise DecodeError(f"{model.__name__} needs a JSON object, got {type(value).__name__}")
        try:
            return cast(T, model(**value))
        except TypeError as exc:
            raise DecodeError(f"data does not fit {model.__name__}: {exc}") from exc
    if model is float and type(value) is int:
        return cast(T, float(value))
    if isinstance(value, model):
        return value
    raise DecodeError(f"data is a JSON {type(value).__name__}, not {model.__name__}")


def decode_json(data: bytes) -> Any:
    """Parse ``data`` as JSON, raising ``DecodeError`` when it is not."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"data is not JSON: {exc}") from exc
