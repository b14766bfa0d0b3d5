"""The bus around the channels: routing, registry, lifecycle and errors at the call."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest

import meshbus
from meshbus import errors
from meshbus.channels.memory import MemoryTransport
from meshbus.registry import TransportRegistry
from meshbus.routing import Router


def name() -> str:
    return f"memory://unit-{uuid.uuid4().hex}"


def test_unknown_scheme_names_what_is_installed() -> None:
    with pytest.raises(errors.UnknownScheme, match=r"no meshbus channel serves gopher://") as err:
        meshbus.connect("gopher://x")
    assert "memory://" in str(err.value)


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [
        ("nats://nats:4222", "meshbus-nats", "nats"),
        ("amqp://guest:guest@rabbit/", "meshbus-rabbitmq", "rabbitmq"),
        ("kafka://k:9092", "meshbus-kafka", "kafka"),
    ],
)
def test_missing_adapter_says_what_to_install(url: str, package: str, extra: str) -> None:
    registry = TransportRegistry(entry_points=False)
    with pytest.raises(errors.AdapterNotInstalled) as err:
        meshbus.connect(url, registry=registry)
    assert err.value.package == package
    assert f"pip install 'meshbus[{extra}]'" in str(err.value)


def test_channels_can_be_given_directly() -> None:
    registry = TransportRegistry({"mem2": MemoryTransport}, entry_points=False)
    assert registry.schemes() == ["mem2"]
    bus = meshbus.connect("mem2://x", registry=registry)
    assert isinstance(bus, meshbus.Bus)


def test_memory_url_errors() -> None:
    with pytest.raises(errors.InvalidURL, match="needs a name"):
        meshbus.connect("memory://")
    with pytest.raises(errors.InvalidURL, match="unknown memory:// options: colour"):
        meshbus.connect("memory://x?colour=red")
    with pytest.raises(errors.InvalidURL, match="whole numbers"):
        meshbus.connect("memory://x?max_payload=big")


def test_listen_on_a_channel_that_cannot_listen() -> None:
    with pytest.raises(errors.NotSupported, match="cannot listen"):
        meshbus.connect("memory://x", listen="memory://y")


def test_the_environment_configures_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHBUS_URL", "memory://from-env")
    monkeypatch.setenv("MESHBUS_ROUTES", "a.>=memory://routed")
    bus = meshbus.connect()
    assert bus.config.url == "memory://from-env"
    assert bus.config.routes == {"a.>": "memory://routed"}
    monkeypatch.setenv("MESHBUS_ROUTES", "garbage")
    with pytest.raises(errors.InvalidRoutes):
        meshbus.connect()


def test_router_prefers_the_most_specific_route() -> None:
    router = Router("default", {"a.>": "gt", "a.*": "star", "a.b": "exact", "*.b.>": "deep"})
    assert router.for_subject("a.b") == "exact"
    assert router.for_subject("a.c") == "star"
    assert router.for_subject("a.c.d") == "gt"
    assert router.for_subject("x.b.c") == "deep"
    assert router.for_subject("z") == "default"
    assert router.for_pattern("a.*") == ["default", "exact", "star", "gt"]
    assert router.for_pattern("q.r") == ["default"]


@pytest.mark.asyncio
async def test_routes_send_subjects_to_their_channel() -> None:
    default, thumbs = name(), name()
    async with (
        meshbus.connect(default, routes={"thumbs.>": thumbs}) as bus,
        meshbus.connect(thumbs) as only_thumbs,
        meshbus.connect(default) as only_default,
        bus.subscribe(">") as everything,
        only_thumbs.subscribe(">") as t,
        only_default.subscribe(">") as d,
    ):
        await bus.publish("thumbs.small", b"t")
        await bus.publish("orders.new", b"o")
        got_t = await asyncio.wait_for(t.__anext__(), 5)
        got_d = await asyncio.wait_for(d.__anext__(), 5)
        assert (got_t.subject, got_d.subject) == ("thumbs.small", "orders.new")
        # A subscription whose pattern reaches both channels hears both.
        both = {(await asyncio.wait_for(everything.__anext__(), 5)).subject for _ in "12"}
        assert both == {"thumbs.small", "orders.new"}


@pytest.mark.asyncio
async def test_using_a_bus_before_starting_it() -> None:
    bus = meshbus.connect(name())
    with pytest.raises(errors.NotStarted, match="start the bus first"):
        await bus.publish("a", b"x")
    started = await bus
    assert started is bus
    assert await bus.start() is bus
    await bus.close()
    with pytest.raises(errors.Closed, match="closed"):
        await bus.start()


@pytest.mark.asyncio
async def test_iterating_a_subscription_before_entering_it() -> None:
    async with meshbus.connect(name()) as bus:
        sub = bus.subscribe("a")
        with pytest.raises(errors.Closed, match="enter the subscription first"):
            await sub.__anext__()


@pytest.mark.asyncio
async def test_bad_arguments_at_the_call() -> None:
    async with meshbus.connect(name()) as bus:
        with pytest.raises(TypeError, match="key must be a str"):
            await bus.publish("a", b"x", key=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="prefetch"):
            bus.subscribe("a", prefetch=0)
        with pytest.raises(ValueError, match="timeout"):
            await bus.request("a", b"x", timeout=0)
        with pytest.raises(errors.EncodeError):
            await bus.publish("a", object())


@pytest.mark.asyncio
async def test_memory_publisher_waits_for_a_full_broadcast_subscriber() -> None:
    async with meshbus.connect(name() + "?buffer=2") as bus, bus.subscribe("a") as sub:
        await bus.publish("a", b"1")
        await bus.publish("a", b"2")
        with pytest.raises(errors.PublishTimeout, match="stayed full"):
            await bus.publish("a", b"3", timeout=0.1)
        assert (await sub.__anext__()).data == b"1"
        await bus.publish("a", b"4", timeout=1)


def test_error_tree() -> None:
    """Every error is a MeshbusError, drawn in the module docstring, with the builtins it
    promises."""
    doc = errors.__doc__ or ""
    for error_name in errors.__all__:
        cls = getattr(errors, error_name)
        assert issubclass(cls, errors.MeshbusError)
        assert error_name in doc, error_name
    assert issubclass(errors.PayloadTooLarge, ValueError)
    assert issubclass(errors.RequestTimeout, TimeoutError)
    assert issubclass(errors.TransportError, ConnectionError)
    assert issubclass(errors.InvalidSubject, ValueError)
    too_large = errors.PayloadTooLarge(10, 5, "a.b")
    assert (too_large.size, too_large.limit) == (10, 5)


def test_public_names_have_docstrings() -> None:
    for public in meshbus.__all__:
        obj = getattr(meshbus, public)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, public


def test_options_given_for_a_scheme_apply_to_its_sibling_schemes() -> None:
    """``amqp`` and ``amqps`` are one channel: options given under either reach both, and
    options under the URL's own scheme win."""
    seen: list[dict[str, object]] = []

    def factory(url: str, options: dict[str, object]) -> MemoryTransport:
        seen.append(dict(options))
        return MemoryTransport("memory://sibling", {})

    registry = TransportRegistry({"plain": factory, "secure": factory}, entry_points=False)
    meshbus.connect("secure://x", registry=registry, options={"plain": {"tls": "ctx"}})
    meshbus.connect("secure://x", registry=registry, options={"secure": {"tls": "own"}})
    meshbus.connect("secure://x", registry=registry, options={"memory": {"tls": "other"}})
    assert seen == [{"tls": "ctx"}, {"tls": "own"}, {}]
