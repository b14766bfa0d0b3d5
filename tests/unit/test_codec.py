"""Payload codecs."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

from meshbus.codec import JSON, decode, encode
from meshbus.errors import DecodeError, EncodeError


class Order(pydantic.BaseModel):
    id: int


@dataclasses.dataclass
class Point:
    x: int


def test_bytes_pass_through_without_content_type() -> None:
    assert encode(b"\x00") == (b"\x00", None)
    assert encode(bytearray(b"ab")) == (b"ab", None)
    assert encode(memoryview(b"cd")) == (b"cd", None)


@pytest.mark.parametrize("value", [{"a": [1, 2.5]}, [1, "é"], "text", 3, 2.5, True, None])
def test_json_values(value: object) -> None:
    data, content_type = encode(value)
    assert content_type == JSON
    assert decode(data, type(value)) == value


def test_pydantic_and_dataclasses() -> None:
    data, content_type = encode(Order(id=3))
    assert (data, content_type) == (b'{"id":3}', JSON)
    assert decode(data, Order) == Order(id=3)
    assert decode(encode(Point(2))[0], Point) == Point(2)


def test_unencodable_payload_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="cannot encode a object"):
        encode(object())
    with pytest.raises(EncodeError, match="not JSON-serialisable"):
        encode({"a": object()})
    with pytest.raises(TypeError):
        encode({1, 2})


def test_decode_errors() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode(b"\xff{", dict)
    with pytest.raises(DecodeError, match="not dict"):
        decode(b"[1]", dict)
    with pytest.raises(DecodeError, match="does not validate as Order"):
        decode(b'{"id": "x"}', Order)
    with pytest.raises(DecodeError, match="does not fit Point"):
        decode(b'{"y": 1}', Point)
    assert decode(b"7", float) == 7.0
    assert decode(b"raw", bytes) == b"raw"
