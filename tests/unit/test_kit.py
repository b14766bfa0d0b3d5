"""meshbus.kit: URL settings, the bounded cache, error tables and the subscription skeleton."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from meshbus.errors import (
    AuthenticationFailed,
    ConnectFailed,
    InvalidURL,
    NoResponders,
    PublishTimeout,
    RequestTimeout,
    TransportError,
)
from meshbus.kit import (
    BoundedCache,
    Inbox,
    InFlight,
    as_error,
    channel_settings,
    during,
    error_mapper,
    error_table,
    move_typed,
    parse_flag,
    reject_unknown,
    split_hosts,
    take_tls,
    timed_out,
)
from meshbus.message import Message

# -- settings from a URL -----------------------------------------------------------------


def test_channel_settings_merge_the_query_with_options_which_win() -> None:
    parts, settings = channel_settings(
        "nats://u:p@h1:4222,h2:4222/?buffer=5&buffer=7&ack_wait=2&empty=",
        {"ack_wait": 3.5, "client_options": {"name": "x"}},
    )
    assert parts.scheme == "nats"
    assert parts.netloc == "u:p@h1:4222,h2:4222"
    assert settings == {"buffer": "7", "ack_wait": 3.5, "client_options": {"name": "x"}}


def test_channel_settings_take_only_the_named_query_settings_where_told() -> None:
    parts, settings = channel_settings(
        "amqp://guest:guest@rabbit/vhost?heartbeat=10&exchange=ex", None, query={"exchange"}
    )
    assert settings == {"exchange": "ex"}
    assert parts.query == "heartbeat=10&exchange=ex"
    assert parts.path == "/vhost"


def test_channel_settings_need_a_scheme() -> None:
    with pytest.raises(InvalidURL, match="expected scheme"):
        channel_settings("localhost:4222", {})


def test_split_hosts() -> None:
    assert split_hosts("user:pa@ss@h1:1,,h2:2") == ("user:pa@ss", ["h1:1", "h2:2"])
    assert split_hosts("h1") == ("", ["h1"])
    assert split_hosts("") == ("", [])


@pytest.mark.parametrize(
    ("given", "expected"),
    [(True, True), (False, False), ("1", True), ("YES", True), ("on", True), ("Off", False)],
)
def test_parse_flag(given: object, expected: bool) -> None:
    assert parse_flag(given) is expected


def test_parse_flag_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        parse_flag("maybe")


def test_move_typed_converts_what_is_there_and_leaves_the_rest() -> None:
    settings: dict[str, object] = {
        "buffer": "12",
        "wait": "0.5",
        "name": 7,
        "fsync": "false",
        "colour": "blue",
    }
    values: dict[str, object] = {}
    move_typed(
        settings,
        values,
        ints=("buffer", "absent"),
        floats=("wait",),
        strs=("name",),
        flags=("fsync",),
    )
    assert values == {"buffer": 12, "wait": 0.5, "name": "7", "fsync": False}
    assert settings == {"colour": "blue"}
    with pytest.raises(ValueError, match="invalid literal"):
        move_typed({"buffer": "lots"}, {}, ints=("buffer",))


def test_take_tls_wants_an_ssl_context() -> None:
    values: dict[str, object] = {}
    context = ssl.create_default_context()
    settings: dict[str, object] = {"tls": context}
    take_tls("foo://h", "foo", settings, values)
    assert values == {"tls": context}
    assert settings == {}
    with pytest.raises(InvalidURL, match=r"the foo .tls. option is an ssl\.SSLContext"):
        take_tls("foo://h", "foo", {"tls": "yes"}, {})


def test_reject_unknown_names_every_leftover_setting() -> None:
    reject_unknown("foo://h", "foo", {})
    with pytest.raises(InvalidURL, match="unknown foo:// options: colour, size"):
        reject_unknown("foo://h", "foo", {"size": "1", "colour": "red"})


# -- the bounded cache -------------------------------------------------------------------


def test_bounded_cache_empties_when_full_and_fills_again() -> None:
    cache: BoundedCache[str, int] = BoundedCache(limit=3)
    for index, key in enumerate("abc"):
        assert cache.put(key, index) == index
    assert dict(cache) == {"a": 0, "b": 1, "c": 2}
    cache.put("b", 5)  # a key it holds: replaced, nothing forgotten
    assert dict(cache) == {"a": 0, "b": 5, "c": 2}
    cache.put("d", 3)
    assert dict(cache) == {"d": 3}
    assert cache.get("a") is None
    assert cache["d"] == 3


def test_bounded_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedCache(limit=0)


# -- error tables ------------------------------------------------------------------------


class LibError(Exception):
    pass


class LibAuth(LibError):
    pass


class LibNobody(LibError):
    pass


class LibTimeout(LibError):
    pass


translate = error_table(
    (
        (LibAuth, as_error(AuthenticationFailed, "lib refused {subject}: {exc}")),
        (LibNobody, lambda f: NoResponders(f.subject) if f.op == "request" else None),
        (BaseException, during("connect", as_error(ConnectFailed, "no lib at {subject}"))),
        ((LibTimeout, TimeoutError), timed_out("lib took too long: {op}{where}, {timeout:g} s")),
    ),
    otherwise=as_error(TransportError, "lib failed during {op}{where}: {exc!r}"),
)


def test_error_table_takes_the_first_row_that_applies() -> None:
    error = translate(LibAuth("bad password"), "publish", "a.b")
    assert type(error) is AuthenticationFailed
    assert str(error) == "lib refused a.b: bad password"

    error = translate(LibNobody(), "request", "a.b", 2.0)
    assert type(error) is NoResponders
    assert error.subject == "a.b"


def test_a_row_whose_factory_gives_none_passes_to_the_next() -> None:
    error = translate(LibNobody("x"), "publish", "a.b")
    assert type(error) is TransportError
    assert str(error) == "lib failed during publish on 'a.b': LibNobody('x')"

    error = translate(LibNobody("x"), "connect", "h:1")
    assert type(error) is ConnectFailed
    assert str(error) == "no lib at h:1"


def test_timeouts_of_requests_and_of_everything_else() -> None:
    error = translate(LibTimeout(), "request", "q", 1.5)
    assert type(error) is RequestTimeout
    assert (error.subject, error.timeout) == ("q", 1.5)

    error = translate(TimeoutError(), "publish", "", 0.25)
    assert type(error) is PublishTimeout
    assert str(error) == "lib took too long: publish, 0.25 s"


def test_meshbus_errors_pass_through_a_table() -> None:
    original = NoResponders("x")
    assert translate(original, "publish") is original


def test_error_mapper_raises_the_translation_from_the_original() -> None:
    mapped = error_mapper((LibError, TimeoutError), translate)
    with pytest.raises(AuthenticationFailed) as caught, mapped("publish", "a.b"):
        raise LibAuth("no")
    assert isinstance(caught.value.__cause__, LibAuth)

    with pytest.raises(KeyError), mapped("publish"):
        raise KeyError("not the library's")  # passes through

    original = NoResponders("x")
    with pytest.raises(NoResponders) as passed, mapped("request"):
        raise original
    assert passed.value is original


# -- the subscription skeleton -----------------------------------------------------------


def _message(token: object, body: bytes = b"") -> Message:
    return Message("a.b", body, {}, token=token)


class Tracked(Inbox):
    _take = Inbox._track


@pytest.mark.asyncio
async def test_inbox_hands_out_in_order_and_waits_for_more() -> None:
    inbox = Inbox()
    first, second = _message(None, b"1"), _message(None, b"2")
    inbox.push(first)
    assert await inbox.__anext__() is first
    waiting = asyncio.ensure_future(inbox.__anext__())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.push(second)
    assert await waiting is second


@pytest.mark.asyncio
async def test_stopping_ends_the_iteration_and_returns_what_was_queued() -> None:
    inbox = Inbox()
    waiting = asyncio.ensure_future(inbox.__anext__())
    await asyncio.sleep(0)
    assert inbox._stop() == []
    with pytest.raises(StopAsyncIteration):
        await waiting

    inbox = Inbox()
    queued = [_message(1), _message(2)]
    for message in queued:
        inbox.push(message)
    assert inbox._stop() == queued
    assert not inbox.queue
    assert [m async for m in inbox] == []


@pytest.mark.asyncio
async def test_a_full_inbox_makes_its_producer_wait_until_half_is_taken() -> None:
    inbox = Inbox(capacity=4)
    for index in range(4):
        inbox.push(_message(index))
    assert inbox.buffer_full()
    producer = asyncio.ensure_future(inbox.wait_for_room())
    await asyncio.sleep(0)
    await inbox.__anext__()  # 3 left: more than half
    await asyncio.sleep(0)
    assert not producer.done()
    await inbox.__anext__()  # 2 left: half
    await asyncio.wait_for(producer, 1)
    assert not inbox.buffer_full()


@pytest.mark.asyncio
async def test_stopping_releases_a_waiting_producer() -> None:
    inbox = Inbox(capacity=2)
    inbox.push(_message(1))
    inbox.push(_message(2))
    producer = asyncio.ensure_future(inbox.wait_for_room())
    await asyncio.sleep(0)
    inbox._stop()
    await asyncio.wait_for(producer, 1)


@pytest.mark.asyncio
async def test_handed_out_messages_are_tracked_until_released() -> None:
    inbox = Tracked()
    request, delivery = _message(None), _message("tag-1")
    inbox.push(request)
    inbox.push(delivery)
    assert await inbox.__anext__() is request
    assert await inbox.__anext__() is delivery
    assert inbox.in_flight == {"tag-1": delivery}
    assert inbox._release(delivery) is True
    assert inbox._release(delivery) is False  # settled already
    assert inbox._release(request) is False  # never tracked: no token


@pytest.mark.asyncio
async def test_the_prefetch_gate_opens_on_a_release() -> None:
    flight = InFlight(prefetch=2)
    one, two = flight._track(_message(1)), flight._track(_message(2))
    assert flight.prefetch_full()
    gate = asyncio.ensure_future(flight.wait_settled())
    await asyncio.sleep(0)
    assert not gate.done()
    flight._release(one)
    await asyncio.wait_for(gate, 1)
    assert not flight.prefetch_full()
    assert flight.in_flight == {2: two}
    assert not InFlight().prefetch_full()


@pytest.mark.asyncio
async def test_drain_waits_for_the_last_settle_then_gives_back_nothing() -> None:
    flight = InFlight()
    one, two = flight._track(_message(1)), flight._track(_message(2))
    asyncio.get_running_loop().call_later(0.01, flight._release, one)
    asyncio.get_running_loop().call_later(0.02, flight._release, two)
    flight._stop()
    await asyncio.wait_for(flight._drain(5.0), 2)
    assert flight._unsettled() == []


@pytest.mark.asyncio
async def test_drain_gives_up_after_its_timeout_and_leaves_the_rest_to_give_back() -> None:
    flight = InFlight()
    one, two = flight._track(_message(1)), flight._track(_message(2))
    asyncio.get_running_loop().call_later(0.01, flight._release, one)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await flight._drain(0.1)
    assert 0.09 <= loop.time() - started < 1
    assert flight._unsettled() == [two]
    assert flight.in_flight == {}
    assert flight._release(two) is False  # given back: no longer the subscriber's


@pytest.mark.asyncio
async def test_drain_of_some_messages_only() -> None:
    flight = InFlight()
    odd, even = flight._track(_message(1)), flight._track(_message(2))
    asyncio.get_running_loop().call_later(0.01, flight._release, odd)
    await asyncio.wait_for(flight._drain(5.0, lambda m: m.token % 2 == 1), 2)
    assert flight.in_flight == {2: even}
    await flight._drain(0)  # no time: returns at once
