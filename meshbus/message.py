"""Received messages: data, metadata and settlement."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from meshbus import codec
from meshbus.errors import AlreadySettled, DecodeError, NotARequest, PayloadTooLarge
from meshbus.headers import CONTENT_TYPE, check_user_headers
from meshbus.transport import Answering, Envelope, Settler

__all__ = ["Message", "too_many_deliveries"]

log = logging.getLogger("meshbus.serve")

T = TypeVar("T")
_new = object.__new__
_answering: dict[type, bool] = {}
"""Settler type -> whether it is ``Answering`` (asked once per type, not per message)."""


class _Unsettleable:
    """Settler of replies and other messages that nothing waits to hear back about."""

    max_payload = 0

    async def ack(self, message: Message) -> None:
        return None

    async def nack(self, message: Message, delay: float | None) -> None:
        return None

    async def reject(self, message: Message, reason: str) -> None:
        return None

    async def respond(self, message: Message, reply: Envelope) -> None:  # pragma: no cover
        raise NotARequest("this message expects no reply")

    async def progress(self, message: Message) -> None:
        return None


NO_SETTLER: Settler = _Unsettleable()


class Message:
    """A delivered message.

    ``data`` is the raw bytes; ``json()``, ``text()`` and ``decode(Model)`` read them.
    Settle it once with ``ack()``, ``nack(delay=)`` or ``reject(reason)``; settling twice raises
    ``AlreadySettled``. On a group subscription an unsettled message comes again (contract
    point 3); on a broadcast subscription settling only marks it done.
    """

    __slots__ = (
        "_settled",
        "_settler",
        "attempt",
        "data",
        "headers",
        "id",
        "key",
        "reply_to",
        "subject",
        "token",
    )

    def __init__(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        *,
        key: str | None = None,
        id: str = "",
        attempt: int = 1,
        reply_to: str | None = None,
        settler: Settler = NO_SETTLER,
        token: Any = None,
    ) -> None:
        self.subject = subject
        """The concrete subject it was published to."""
        self.data = data
        """The payload, as bytes."""
        self.headers = headers
        """All headers, the reserved ``mb-`` ones included."""
        self.key = key
        """The ordering key it was published with, if any."""
        self.id = id
        """The message id the publisher gave it."""
        self.attempt = attempt
        """How many times it has been delivered, this delivery included (1 the first time)."""
        self.reply_to = reply_to
        """Where ``respond()`` sends; ``None`` for messages that are not requests."""
        self.token = token
        """The channel's own handle on this delivery (delivery tag, offset, claim file...)."""
        self._settler = settler
        self._settled = False

    @classmethod
    def delivered(
        cls,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        key: str | None,
        id: str,
        attempt: int,
        reply_to: str | None,
        settler: Settler,
        token: Any,
    ) -> Message:
        """A delivered message, for channels' receive paths, which make one per message: the
        same as ``Message(...)`` with every field given, positional and without
        ``__init__``'s keyword handling. The only other place that knows this class's
        slots."""
        message = _new(cls)
        message.subject = subject
        message.data = data
        message.headers = headers
        message.key = key
        message.id = id
        message.attempt = attempt
        message.reply_to = reply_to
        message.token = token
        message._settler = settler
        message._settled = False
        return message

    _received = delivered  # the name adapters used before ``delivered`` was public

    # -- reading ---------------------------------------------------------------------------

    @property
    def content_type(self) -> str | None:
        """The payload's content type, when the publisher's codec set one."""
        return self.headers.get(CONTENT_TYPE)

    def json(self) -> Any:
        """The payload parsed as JSON (``DecodeError`` if it is not JSON)."""
        return codec.decode_json(self.data)

    def text(self, encoding: str = "utf-8") -> str:
        """The payload as text: the JSON string if it was published as one, else decoded bytes."""
        if self.headers.get(CONTENT_TYPE) == codec.JSON:
            value = self.json()
            if isinstance(value, str):
                return value
        try:
            return self.data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise DecodeError(f"data is not {encoding} text: {exc}") from exc

    def decode(self, model: type[T]) -> T:
        """The payload as ``model``: a pydantic model, a dataclass, or a JSON type."""
        return codec.decode(self.data, model)

    # -- settling --------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """True once ``ack``, ``nack`` or ``reject`` was called."""
        return self._settled

    def mark_settled(self) -> None:
        """For channels: record the message as settled without calling its settler, when the
        channel settles it itself (``Answering.answer``)."""
        self._settled = True

    def _settle(self, how: str) -> None:
        if self._settled:
            raise AlreadySettled(
                f"message {self.id or '?'} on {self.subject!r} is already settled; "
                f"{how}() is not allowed after ack, nack or reject"
            )
        self._settled = True

    async def ack(self) -> None:
        """Settle: the message is done with and will not come again."""
        if self._settled:
            self._settle("ack")  # raises AlreadySettled
        self._settled = True
        await self._settler.ack(self)

    async def nack(self, delay: float | None = None) -> None:
        """Settle, asking for redelivery to the group (after ``delay`` seconds where given)."""
        if delay is not None and delay < 0:
            raise ValueError(f"nack delay must be >= 0, got {delay}")
        self._settle("nack")
        await self._settler.nack(self, delay)

    async def reject(self, reason: str = "") -> None:
        """Settle, moving the message to its group's dead-letter subject
        (``dead-letter.<group>``) with the original subject, ``reason`` and attempt count in
        headers."""
        self._settle("reject")
        await self._settler.reject(self, str(reason))

    async def in_progress(self) -> None:
        """Tell the channel the handler is still working on the message (long handlers)."""
        await self._settler.progress(self)

    async def respond(self, payload: object, *, headers: Mapping[str, str] | None = None) -> None:
        """Answer a request. If the message is not settled yet, this also acks it."""
        if self.reply_to is None:
            raise NotARequest(
                f"message {self.id or '?'} on {self.subject!r} was published, not requested; "
                "there is nobody to respond to"
            )
        if type(payload) is bytes:
            if headers is None and not self._settled:
                # A settler that can answer at once (a member of an in-process hub: memory://,
                # and what a tcp:// listener queues) responds and acks without a coroutine
                # for either: the loop `async for msg in sub: await msg.respond(data)`.
                settler = self._settler
                answers = _answering.get(type(settler))
                if answers is None:
                    answers = _answering[type(settler)] = isinstance(settler, Answering)
                if answers and settler.answer(self, payload):  # type: ignore[attr-defined]
                    return  # False: over the largest payload, which the long way raises
            data, content_type = payload, None
        else:
            data, content_type = codec.encode(payload)
        limit = self._settler.max_payload
        if len(data) > limit:
            raise PayloadTooLarge(len(data), limit, self.subject)
        reply_headers = check_user_headers(headers) if headers is not None else {}
        if content_type is not None:
            reply_headers[CONTENT_TYPE] = content_type
        await self._settler.respond(self, Envelope(self.reply_to, data, reply_headers, None, ""))
        if not self._settled:
            self._settled = True
            await self._settler.ack(self)

    def __repr__(self) -> str:
        return (
            f"Message(subject={self.subject!r}, id={self.id!r}, attempt={self.attempt}, "
            f"size={len(self.data)})"
        )


async def too_many_deliveries(message: Message, limit: int) -> None:
    """Dead-letter ``message``, delivered more than ``limit`` times (``max_deliver``), without
    handing it to anybody."""
    log.warning(
        "message %s on %r dead-lettered: delivery %d is over max_deliver %d",
        message.id or "?",
        message.subject,
        message.attempt,
        limit,
    )
    try:
        await message.reject(f"max_deliver {limit} reached (this was delivery {message.attempt})")
    except Exception:
        log.exception("could not dead-letter message %s", message.id)
