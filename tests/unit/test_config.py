"""URLs, route tables and the MESHBUS_* environment."""

from __future__ import annotations

import pytest

from meshbus.config import parse_routes, parse_url, resolve_config
from meshbus.errors import ConfigurationError, InvalidRoutes, InvalidURL


def test_routes_with_semicolons_newlines_and_commas() -> None:
    text = "thumbs.>=file:///shared/thumbs; pricing.>=dns://pricing:7000\nlogs.*=memory://logs"
    assert parse_routes(text) == {
        "thumbs.>": "file:///shared/thumbs",
        "pricing.>": "dns://pricing:7000",
        "logs.*": "memory://logs",
    }
    assert parse_routes("a.>=memory://a,b.>=memory://b") == {
        "a.>": "memory://a",
        "b.>": "memory://b",
    }


def test_a_comma_inside_a_url_stays_in_the_url() -> None:
    routes = parse_routes("events.>=kafka://k1:9092,k2:9092;x=memory://x")
    assert routes == {"events.>": "kafka://k1:9092,k2:9092", "x": "memory://x"}


def test_routes_as_json() -> None:
    assert parse_routes('{"a.*": "memory://a"}') == {"a.*": "memory://a"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("thumbs.>", "not 'pattern=url'"),
        ("=memory://a", "not 'pattern=url'"),
        ("a..b=memory://a", "pattern 'a..b' is not valid"),
        ("a=not-a-url", "expected scheme://"),
        ("a=memory://x;a=memory://y", "routed twice"),
        ('{"a": 1}', "object of pattern to URL"),
        ("{nope", "does not parse"),
    ],
)
def test_malformed_routes_raise_invalid_routes(text: str, match: str) -> None:
    with pytest.raises(InvalidRoutes, match=match):
        parse_routes(text)


def test_empty_routes() -> None:
    assert parse_routes("  ") == {}


@pytest.mark.parametrize("url", ["", "nats", "nats:/x", "://x", "1x://y", 5])
def test_bad_urls(url: object) -> None:
    with pytest.raises(InvalidURL):
        parse_url(url)


def test_environment_fills_what_arguments_leave_out() -> None:
    env = {
        "MESHBUS_URL": "memory://env",
        "MESHBUS_ROUTES": "a.>=memory://a",
        "MESHBUS_LISTEN": "tcp://0.0.0.0:7000",
    }
    config = resolve_config(None, None, None, env)
    assert (config.url, config.routes, config.listen) == (
        "memory://env",
        {"a.>": "memory://a"},
        "tcp://0.0.0.0:7000",
    )
    config = resolve_config("memory://arg", {}, None, env)
    assert (config.url, config.routes) == ("memory://arg", {})


def test_no_url_anywhere_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="MESHBUS_URL"):
        resolve_config(None, None, None, {})


def test_bad_routes_from_the_environment_name_the_variable() -> None:
    with pytest.raises(InvalidRoutes, match="MESHBUS_ROUTES"):
        resolve_config(None, None, None, {"MESHBUS_URL": "memory://x", "MESHBUS_ROUTES": "{"})
