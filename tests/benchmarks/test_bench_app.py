"""The App's cost: ``@app.handle`` handlers against FastStream 0.7.8 and against ``bus.serve``.

- ``nats://`` core and ``kafka://``: one pydantic model (``Order``) and one handler body
  (``on_order``: checks the model, counts it and sums its ids) run as an ``@app.handle``
  handler (``nats://``: ``broadcast=True``, a core subscription; ``kafka://``: the app's group,
  manual commits; every other setting the App's default) and as a FastStream 0.7.8 subscriber
  taking the model as its parameter (``logger=None``, so that no log line is written per
  message; ``kafka://``: a ``group_id``, FastStream's default ``AckPolicy.ACK_FIRST``, which is
  aiokafka's auto-commit every 5 s, and ``fetch_max_wait_ms=50`` as meshbus's). A third side
  runs the same body behind the raw client (nats-py ``subscribe`` with a callback; aiokafka
  ``getmany`` in a group, one manual commit per fetched batch), each message decoded with
  ``Order.model_validate_json``: what the same work costs without a framework. On
  ``kafka://`` a fourth side runs the App again with ``prefetch=256`` (``bus.serve``'s default;
  the App's is its ``concurrency``, 1).
- Each consumer runs in its own process (``python test_bench_app.py KIND ...``), started once
  before the warm-up round (which so includes any group join, and is not counted). This
  process publishes the same JSON bytes (``Order(...).model_dump_json()``, about 50 B) to
  every side with a raw client, so that the publishing side is the same code for all and only
  the consuming runtime differs: nats-py ``publish`` each; aiokafka ``send`` each (acks=all,
  linger 5 ms, 1 MiB batches; the producer's own buffer paces it) with the futures gathered at
  the end. Each side has its own subject or topic (4 partitions, made beforehand).
- A round is timed from the first publish (here) to the handler call that brings the count
  to N (there: ``time.perf_counter`` is the system's monotonic clock, the same in both
  processes); the consuming process also reports the CPU time it used for the round
  (``time.process_time``, every thread of it). Then the round waits briefly and asks for the
  count and the sum of the ids: a loss, a duplicate or a payload the body refused fails the
  benchmark. Each benchmark round runs every side once, in one order and then in the reverse
  one, so that App and FastStream each go first half the time; a warm-up round is not counted.
  ``ratio`` is the median of the per-round rate ratios App / FastStream, ``ratio_range`` their
  range; ``raw_ratio`` App / raw client, ``prefetch_ratio`` App with prefetch=256 /
  FastStream; ``*cpu_us_per_msg`` the median CPU per message of each consuming process.
- ``tcp://`` round trip: 100 B requests to a responder in another process, in alternating
  blocks of 100: ``@app.handle("rpc.echo")`` taking ``data: bytes`` and returning it, on an App
  listening on its own ``tcp://`` URL, and ``bus.serve`` with a plain ``Message`` handler doing
  the same, both in group ``svc``, started afresh for each round. Pinned as
  ``test_bench_direct.test_round_trip`` is (this process on one CPU, the responders on the
  same one or on the other). ``p50_us`` is the App's, ``baseline_p50_us`` ``bus.serve``'s;
  ``ratio`` is the median of the per-round ratios of the two, ``ratio_range`` their range.

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import meshbus

if __name__ != "__main__":  # the benchmark process; the consuming ones need none of this
    from conftest import Runner
    from direct_peer import warm_malloc

    pytest.importorskip("meshbus_nats", reason="pip install -e adapters/nats")
    pytest.importorskip("meshbus_kafka", reason="pip install -e adapters/kafka")
    pytest.importorskip("faststream", reason="pip install 'faststream[nats,kafka]'")

NATS_COUNT = 40_960
KAFKA_COUNT = 20_480
PAIRS = 7
ROUND_TRIPS = 2_000
DONE_TIMEOUT = 120.0  # seconds a round may take before it counts as lost messages
SETTLE = 0.3  # seconds to keep listening after the last message, for duplicates
KAFKA_OPTIONS = {  # the timings of test_bench_kafka.py; Tansu has no idempotent producer
    "idempotence": False,
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
}
_HERE = Path(__file__).resolve()


class Order(BaseModel):
    id: int
    customer: str
    total: float


def payloads(count: int) -> list[bytes]:
    """``count`` orders as JSON, ids 0 to count - 1 (about 50 B each)."""
    return [
        Order(id=i, customer=f"customer-{i % 1000:04d}", total=10.0 + i % 97)
        .model_dump_json()
        .encode()
        for i in range(count)
    ]


# -- the consuming process ---------------------------------------------------------------------


class Tally:
    """What ``on_order`` records in the consuming process."""

    def __init__(self) -> None:
        self.expected = 0
        self.count = 0
        self.ids = 0
        self.bad = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.expected, self.count, self.ids, self.bad, self.last = expected, 0, 0, 0, 0.0
        self.done = asyncio.Event()


TALLY = Tally()


async def on_order(order: Order) -> None:
    """The handler body every side runs."""
    if type(order) is not Order or not order.customer or order.total <= 0:
        TALLY.bad += 1
        return
    TALLY.count += 1
    TALLY.ids += order.id
    if TALLY.count == TALLY.expected:
        TALLY.last = time.perf_counter()
        TALLY.done.set()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _stdin() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _serve_rounds(stdin: asyncio.StreamReader) -> None:
    """``round N`` -> ``go``, then ``done LAST CPU`` once N orders are handled; ``check`` ->
    ``count COUNT IDS BAD``; the end of stdin ends it."""
    while line := await stdin.readline():
        command, *args = line.split()
        if command == b"round":
            TALLY.reset(int(args[0]))
            cpu = time.process_time()
            _say("go")
            await TALLY.done.wait()
            _say(f"done {TALLY.last:.6f} {time.process_time() - cpu:.6f}")
        elif command == b"check":
            _say(f"count {TALLY.count} {TALLY.ids} {TALLY.bad}")


async def _app_consumer(url: str, subject: str, broadcast: bool, prefetch: int | None) -> None:
    stdin = await _stdin()
    app = meshbus.App("bench", url=url, options={"kafka": KAFKA_OPTIONS})
    app.handle(subject, broadcast=broadcast, prefetch=prefetch)(on_order)
    await app.start()
    try:
        _say("ready 0")
        await _serve_rounds(stdin)
    finally:
        await app.stop()


async def _faststream_nats(url: str, subject: str) -> None:
    from faststream.nats import NatsBroker

    stdin = await _stdin()
    broker = NatsBroker(url, logger=None)
    broker.subscriber(subject)(on_order)
    await broker.start()
    try:
        connection: Any = broker._connection  # FastStream's nats-py client
        await connection.flush()  # twice: see test_bench_nats.settled
        await connection.flush()
        _say("ready 0")
        await _serve_rounds(stdin)
    finally:
        await broker.stop()


async def _faststream_kafka(servers: str, topic: str) -> None:
    from faststream.kafka import KafkaBroker

    stdin = await _stdin()
    broker = KafkaBroker(servers, logger=None)
    subscriber = broker.subscriber(  # ack_policy left at FastStream's default (ACK_FIRST)
        topic,
        group_id=f"bench-{topic}",  # a group of its own: one per topic
        auto_offset_reset="earliest",
        session_timeout_ms=KAFKA_OPTIONS["session_timeout_ms"],
        heartbeat_interval_ms=KAFKA_OPTIONS["heartbeat_interval_ms"],
        fetch_max_wait_ms=50,  # as meshbus's kafka:// (aiokafka's default is 500)
    )
    subscriber(on_order)
    await broker.start()
    try:
        _say("ready 0")
        await _serve_rounds(stdin)
    finally:
        await broker.stop()


async def _raw_nats(url: str, subject: str) -> None:
    import nats

    stdin = await _stdin()
    client = await nats.connect(url)

    async def on_msg(msg: Any) -> None:
        try:
            order = Order.model_validate_json(msg.data)
        except ValueError:
            TALLY.bad += 1
            return
        await on_order(order)

    await client.subscribe(subject, cb=on_msg)
    await client.flush()  # twice: see test_bench_nats.settled
    await client.flush()
    try:
        _say("ready 0")
        await _serve_rounds(stdin)
    finally:
        await client.close()


async def _raw_kafka(servers: str, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer

    stdin = await _stdin()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=f"bench-{topic}",  # a group of its own: one per topic
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=KAFKA_OPTIONS["session_timeout_ms"],
        heartbeat_interval_ms=KAFKA_OPTIONS["heartbeat_interval_ms"],
        fetch_max_wait_ms=50,
    )
    await consumer.start()

    async def consume() -> None:  # manual commits, one per fetched batch
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        order = Order.model_validate_json(record.value)
                    except ValueError:
                        TALLY.bad += 1
                        continue
                    await on_order(order)
            if batches:
                await consumer.commit()

    consuming = asyncio.create_task(consume())
    try:
        _say("ready 0")
        await _serve_rounds(stdin)
    finally:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
        await consumer.stop()


async def _echo_bytes(data: bytes) -> bytes:
    return data


async def _echo_message(msg: meshbus.Message) -> bytes:
    return msg.data


async def _responder(kind: str) -> None:
    from direct_peer import warm_malloc

    from meshbus.testing.brokers import free_port

    warm_malloc()
    stdin = await _stdin()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    if kind == "app-rpc":
        app = meshbus.App("svc", url=address, listen=address)
        app.handle("rpc.echo")(_echo_bytes)
        await app.start()
        try:
            _say(f"ready {port}")
            await stdin.read()
        finally:
            await app.stop()
        return
    async with (
        meshbus.connect(address, listen=address) as bus,
        bus.serve("rpc.echo", _echo_message, group="svc"),
    ):
        _say(f"ready {port}")
        await stdin.read()


def _peer_main(kind: str, args: list[str]) -> None:
    prefetch = int(args[2]) if len(args) > 2 else None  # the App's default unless given
    mains: dict[str, Callable[[], Awaitable[None]]] = {
        "app-nats": lambda: _app_consumer(args[0], args[1], True, prefetch),
        "app-kafka": lambda: _app_consumer(args[0], args[1], False, prefetch),
        "faststream-nats": lambda: _faststream_nats(args[0], args[1]),
        "faststream-kafka": lambda: _faststream_kafka(args[0], args[1]),
        "raw-nats": lambda: _raw_nats(args[0], args[1]),
        "raw-kafka": lambda: _raw_kafka(args[0], args[1]),
        "app-rpc": lambda: _responder(kind),
        "serve-rpc": lambda: _responder(kind),
    }
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(mains[kind]())


# -- the benchmark process ---------------------------------------------------------------------


class Peer:
    """A consuming or responding process (see ``_peer_main``), driven over its stdin/stdout."""

    def __init__(self, kind: str, *args: str) -> None:
        self.argv = [kind, *args]
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(_HERE),
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(_HERE.parent),
        )
        word, port = await self.line(60)
        assert word == "ready", f"{self.argv[0]} did not start: {word!r}"
        self.port = int(port)

    async def line(self, timeout: float) -> list[str]:
        assert self.process is not None
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            line = (await self.process.stdout.readline()).decode().split()
        if not line:
            raise RuntimeError(f"the {self.argv[0]} process stopped")
        return line

    def send(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(15):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
def peers(run: Runner) -> Iterator[Callable[..., Peer]]:
    """Start peer processes; each is stopped afterwards."""
    started: list[Peer] = []

    def start(kind: str, *args: str) -> Peer:
        peer = Peer(kind, *args)
        started.append(peer)
        run(peer.start)
        return peer

    yield start
    for peer in started:
        run(peer.stop)


Publish = Callable[[str, list[bytes]], Awaitable[None]]


async def timed_round(
    peer: Peer, publish: Publish, target: str, messages: list[bytes]
) -> tuple[float, float]:
    """One round (see the module docstring): seconds from the first publish to the last
    message handled, and the consuming process's CPU seconds."""
    peer.send(f"round {len(messages)}")
    assert (await peer.line(10)) == ["go"]
    start = time.perf_counter()
    async with asyncio.timeout(DONE_TIMEOUT):
        await publish(target, messages)
    word, last, cpu = await peer.line(DONE_TIMEOUT)
    assert word == "done"
    await asyncio.sleep(SETTLE)
    peer.send("check")
    word, count, ids, bad = await peer.line(10)
    expected_ids = len(messages) * (len(messages) - 1) // 2
    assert (word, int(count), int(ids), int(bad)) == ("count", len(messages), expected_ids, 0), (
        f"{peer.argv[0]}: handled {count} of {len(messages)} (id sum {ids}, expected "
        f"{expected_ids}; {bad} refused)"
    )
    return float(last) - start, float(cpu)


def versus_faststream(
    benchmark: Any, run: Runner, sides: dict[str, tuple[Peer, str]], publish: Publish, count: int
) -> None:
    """Rounds of the App, FastStream and the raw client, in one order and then the reverse
    (so that each goes before the other half the time); the figures into
    ``benchmark.extra_info``."""
    messages = payloads(count)
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    pairs = 0

    def pair() -> None:
        nonlocal pairs
        order = list(sides) if pairs % 2 == 0 else list(reversed(sides))
        pairs += 1
        for side in order:
            peer, target = sides[side]
            took, used = run(lambda: timed_round(peer, publish, target, messages))  # noqa: B023
            seconds[side].append(took)
            cpu[side].append(used)

    pair()  # warm-up (also under --benchmark-disable, where pedantic runs once)
    for values in (*seconds.values(), *cpu.values()):
        values.clear()
    benchmark.pedantic(pair, rounds=PAIRS)
    info = benchmark.extra_info
    info["baseline"] = "FastStream 0.7.8"
    for side, prefix in SIDE_KEYS.items():
        if side in sides:
            info[f"{prefix}msgs_per_s"] = round(count / statistics.median(seconds[side]))
            info[f"{prefix}cpu_us_per_msg"] = round(statistics.median(cpu[side]) / count * 1e6, 2)
    for (top, bottom), key in RATIOS.items():
        if top in sides and bottom in sides:
            ratios = [b / t for t, b in zip(seconds[top], seconds[bottom], strict=True)]
            info[key] = round(statistics.median(ratios), 2)
            info[f"{key}_range"] = [round(min(ratios), 2), round(max(ratios), 2)]


SIDE_KEYS = {"app": "", "faststream": "baseline_", "raw": "raw_", "app-prefetch": "prefetch_"}
"""Where each side's msgs/s and CPU per message go in ``extra_info``."""
RATIOS = {
    ("app", "faststream"): "ratio",
    ("app", "raw"): "raw_ratio",
    ("app-prefetch", "faststream"): "prefetch_ratio",
}
"""The per-round rate ratios reported: the first side's rate over the second's."""


def space() -> str:
    return "b" + uuid.uuid4().hex[:10]


def test_app_nats_vs_faststream(
    benchmark: Any, run: Runner, peers: Callable[..., Peer], nats_server: Any
) -> None:
    """nats:// core: an ``@app.handle(subject, broadcast=True)`` handler taking ``Order``
    against a FastStream NatsBroker subscriber taking ``Order``, both fed by one raw nats-py
    publisher; msgs/s, the ratio App / FastStream and CPU per message of each consumer."""
    import nats

    url = nats_server.url
    subjects = {side: f"{space()}.orders" for side in ("app", "faststream", "raw")}
    sides = {side: (peers(f"{side}-nats", url, s), s) for side, s in subjects.items()}
    client = run(lambda: nats.connect(url))

    async def publish(subject: str, messages: list[bytes]) -> None:
        for data in messages:
            await client.publish(subject, data)
        await client.flush()

    try:
        versus_faststream(benchmark, run, sides, publish, NATS_COUNT)
    finally:
        run(client.close)


def test_app_kafka_vs_faststream(
    benchmark: Any, run: Runner, peers: Callable[..., Peer], kafka_broker: Any
) -> None:
    """kafka://: an ``@app.handle(subject)`` group handler (manual commits) taking ``Order``
    against a FastStream KafkaBroker subscriber with a ``group_id`` taking ``Order``
    (auto-commit), both fed by one raw aiokafka producer; each reads its own 4-partition topic,
    made before it joins; msgs/s, the ratio App / FastStream and CPU per message of each
    consumer."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    servers = kafka_broker.bootstrap_servers
    topics = {side: f"{space()}.orders" for side in ("app", "faststream", "raw", "app-prefetch")}

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, 4, 1) for t in topics.values()])
        finally:
            await admin.close()

    run(create)
    argv = {  # the last: the App again, with bus.serve's default prefetch (256) instead of 1
        "app": ("app-kafka", kafka_broker.url),
        "faststream": ("faststream-kafka", servers),
        "raw": ("raw-kafka", servers),
        "app-prefetch": ("app-kafka", kafka_broker.url),
    }
    sides = {
        side: (peers(*argv[side], topic, *(["256"] if side == "app-prefetch" else [])), topic)
        for side, topic in topics.items()
    }

    async def start() -> Any:
        made = AIOKafkaProducer(
            bootstrap_servers=servers, acks="all", linger_ms=5, max_batch_size=1 << 20
        )
        await made.start()
        return made

    producer = run(start)

    async def publish(topic: str, messages: list[bytes]) -> None:
        sent = [await producer.send(topic, data) for data in messages]
        await asyncio.gather(*sent)

    try:
        versus_faststream(benchmark, run, sides, publish, KAFKA_COUNT)
    finally:
        run(producer.stop)


LAYOUTS = ("one-core", "two-cores")
RT_ROUNDS = 7


def _cpus(layout: str) -> tuple[set[int], int, int]:
    """This process's CPUs, the one it runs on while measuring, the one the peers run on:
    the same one (``one-core``) or another (``two-cores``), as ``test_bench_direct._pinned``
    places them."""
    cpus = sorted(os.sched_getaffinity(0))
    if layout == "two-cores" and len(cpus) < 2:
        pytest.skip("the two-cores layout needs two CPUs")
    return set(cpus), cpus[0], cpus[0] if layout == "one-core" else cpus[1]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_app_round_trip(benchmark: Any, run: Runner, layout: str) -> None:
    """tcp:// request/reply p50, 100 B: an App responder (``@app.handle("rpc.echo")``,
    ``data: bytes`` in, bytes out) against ``bus.serve`` with a ``Message`` handler, each in
    its own process, in alternating blocks of 100 requests; ``ratio`` App / bus.serve.

    Each round starts both responders afresh (and connects to them, and makes 200 requests of
    each unmeasured) before it measures: in about one session in three on this project's
    2-core machines, one responder's connection ran ~14 µs slower per round trip on one CPU
    for as long as it lived, whichever kind it was (App or ``bus.serve``), with the same
    system calls, segments and read path per request as the other; with fresh processes a
    slow pair is one round of several instead of the whole session. ``ratio`` is the median
    of the per-round ratios of the p50s, ``ratio_range`` their range; ``p50_us`` and
    ``baseline_p50_us`` are over every round's samples."""
    warm_malloc()  # as the peers do (see direct_peer.warm_malloc)
    all_cpus, here, there = _cpus(layout)
    benchmark.extra_info["layout"] = layout
    payload = b"x" * 100
    samples: dict[str, list[float]] = {"app": [], "serve": []}
    per_round: list[dict[str, float]] = []

    async def session() -> None:
        peers = {"app": Peer("app-rpc"), "serve": Peer("serve-rpc")}
        clients: dict[str, meshbus.Bus] = {}
        try:
            for peer in peers.values():
                await peer.start()
                assert peer.process is not None
                os.sched_setaffinity(peer.process.pid, {there})
            for path, peer in peers.items():
                clients[path] = await meshbus.connect(f"tcp://127.0.0.1:{peer.port}").start()
                for _ in range(200):  # unmeasured: connection, caches, allocator warm
                    await clients[path].request("rpc.echo", payload, timeout=5)
            mine: dict[str, list[float]] = {path: [] for path in clients}
            for block in range(ROUND_TRIPS // 100):
                order = list(clients) if block % 2 == 0 else list(reversed(clients))
                for path in order:
                    client = clients[path]
                    for _ in range(100):
                        start = time.perf_counter()
                        await client.request("rpc.echo", payload, timeout=5)
                        mine[path].append(time.perf_counter() - start)
        finally:
            for client in clients.values():
                await client.close()
            for peer in peers.values():
                await peer.stop()
        for path, values in mine.items():
            samples[path].extend(values)
        per_round.append({path: statistics.median(values) for path, values in mine.items()})

    os.sched_setaffinity(0, {here})
    try:
        run(session)  # warm-up (also under --benchmark-disable, where pedantic runs once)
        for values in samples.values():
            values.clear()
        per_round.clear()
        benchmark.pedantic(lambda: run(session), rounds=RT_ROUNDS)
    finally:
        os.sched_setaffinity(0, all_cpus)
    p50 = {path: statistics.median(values) * 1e6 for path, values in samples.items()}
    ratios = [r["app"] / r["serve"] for r in per_round]
    info = benchmark.extra_info
    info["p50_us"] = round(p50["app"], 1)
    info["p99_us"] = round(sorted(samples["app"])[int(len(samples["app"]) * 0.99)] * 1e6, 1)
    info["baseline"] = "bus.serve"
    info["baseline_p50_us"] = round(p50["serve"], 1)
    info["ratio"] = round(statistics.median(ratios), 2)
    info["ratio_range"] = [round(min(ratios), 2), round(max(ratios), 2)]


if __name__ == "__main__":
    _peer_main(sys.argv[1], sys.argv[2:])
