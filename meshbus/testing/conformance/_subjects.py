"""Contract point 1 (subjects) and 8 (headers)."""

from __future__ import annotations

import pytest

from meshbus.errors import InvalidHeader, InvalidSubject
from meshbus.headers import CONTENT_TYPE
from meshbus.testing.harness import Session, contract

BAD_SUBJECTS = ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "ä.b", "a/b", "x" * 256]
BAD_PATTERNS = ["", "a..b", "a.>.b", "a.**", "a.b*", ">.a", "a b", "x" * 256]


class SubjectTests:
    """Subjects, wildcards and headers."""

    @contract(1)
    async def test_invalid_subject_raises_before_anything_is_sent(self, s: Session) -> None:
        """Every invalid subject raises InvalidSubject at the call; nothing reaches a
        subscriber."""
        bus = await s.bus()
        async with bus.subscribe(s.subject(">")) as sub:
            for bad in BAD_SUBJECTS:
                with pytest.raises(InvalidSubject):
                    await bus.publish(bad, b"x")
                with pytest.raises(InvalidSubject):
                    await bus.request(bad, b"x", timeout=1.0)
            with pytest.raises(InvalidSubject):
                await bus.publish_many([(s.subject("ok"), b"1"), ("bad..one", b"2")])
            await bus.publish(s.subject("ok"), b"sentinel")
            (first,) = await s.take(sub, 1)
            assert first.data == b"sentinel"

    @contract(1)
    async def test_invalid_pattern_and_group_raise_at_the_call(self, s: Session) -> None:
        """Invalid subscription patterns and group names raise InvalidSubject at subscribe()."""
        bus = await s.bus()
        for bad in BAD_PATTERNS:
            with pytest.raises(InvalidSubject):
                bus.subscribe(bad)
        for bad_group in ["", "a.b", "a b", "g*"]:
            with pytest.raises(InvalidSubject):
                bus.subscribe(s.subject("x"), group=bad_group)

    @contract(1)
    async def test_star_matches_exactly_one_token(self, s: Session) -> None:
        """``p.*`` matches ``p.a`` but not ``p`` or ``p.a.b``."""
        bus = await s.bus()
        async with bus.subscribe(s.subject("*")) as sub:
            await bus.publish(s.prefix, b"no: too short")
            await bus.publish(s.subject("a.b"), b"no: too long")
            await bus.publish(s.subject("a"), b"yes")
            (got,) = await s.take(sub, 1)
            assert (got.subject, got.data) == (s.subject("a"), b"yes")
            await s.nothing(sub)

    @contract(1)
    async def test_gt_matches_one_or_more_trailing_tokens(self, s: Session) -> None:
        """``p.>`` matches ``p.a`` and ``p.a.b`` but not ``p``."""
        bus = await s.bus()
        async with bus.subscribe(s.subject(">")) as sub:
            await bus.publish(s.prefix, b"no")
            await bus.publish(s.subject("a"), b"1")
            await bus.publish(s.subject("a.b.c"), b"2")
            got = await s.take(sub, 2)
            assert sorted(m.data for m in got) == [b"1", b"2"]
            await s.nothing(sub)

    @contract(1)
    async def test_longest_valid_subject_round_trips(self, s: Session) -> None:
        """A subject of exactly 255 characters is valid and delivered."""
        bus = await s.bus()
        subject = s.subject("x" * (255 - len(s.prefix) - 1))
        assert len(subject) == 255
        async with bus.subscribe(subject) as sub:
            await bus.publish(subject, b"long")
            (got,) = await s.take(sub, 1)
            assert got.subject == subject

    @contract(8)
    async def test_headers_round_trip(self, s: Session) -> None:
        """User headers arrive unchanged, unicode and empty values included."""
        bus = await s.bus()
        headers = {"tenant": "a", "text": "grüße ✓", "empty": "", "long": "v" * 2000}
        async with bus.subscribe(s.subject("h")) as sub:
            await bus.publish(s.subject("h"), b"x", headers=headers)
            (got,) = await s.take(sub, 1)
            for name, value in headers.items():
                assert got.headers.get(name) == value, name

    @contract(8)
    async def test_reserved_and_non_str_headers_raise(self, s: Session) -> None:
        """The mb- prefix is reserved; header names and values are str."""
        bus = await s.bus()
        bad: list[dict[object, object]] = [
            {"mb-id": "x"},
            {"MB-Attempt": "2"},
            {"n": 1},
            {1: "v"},
            {"": "v"},
            {"a\nb": "v"},
        ]
        for headers in bad:
            with pytest.raises(InvalidHeader):
                await bus.publish(s.subject("h"), b"x", headers=headers)  # type: ignore[arg-type]

    @contract(8)
    async def test_content_type_travels_in_reserved_header(self, s: Session) -> None:
        """JSON payloads carry mb-content-type; bytes carry none."""
        bus = await s.bus()
        async with bus.subscribe(s.subject("ct")) as sub:
            await bus.publish(s.subject("ct"), {"a": 1})
            await bus.publish(s.subject("ct"), b"raw")
            first, second = await s.take(sub, 2)
            assert first.headers.get(CONTENT_TYPE) == "application/json"
            assert first.json() == {"a": 1}
            assert CONTENT_TYPE not in second.headers
            assert second.data == b"raw"
