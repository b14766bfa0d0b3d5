"""Raising a client library's exceptions as meshbus errors: a table that translates them, and
a block that applies it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, Protocol

from meshbus.errors import MeshbusError, PublishTimeout, RequestTimeout

__all__ = [
    "ErrorMapper",
    "ErrorRow",
    "Failure",
    "Translate",
    "as_error",
    "during",
    "error_mapper",
    "error_table",
    "timed_out",
]


class Failure(NamedTuple):
    """A client library's exception and what the channel was doing when it was raised."""

    exc: BaseException
    """The library's exception."""
    op: str
    """The operation: ``connect``, ``publish``, ``request``, ``subscribe``, ``ack``..."""
    subject: str
    """The subject (or, for ``connect``, the address) it concerned; may be empty."""
    timeout: float
    """The operation's timeout in seconds (0 where it had none)."""

    @property
    def where(self) -> str:
        """`` on 'subject'``, or nothing when there is no subject: for messages."""
        return f" on {self.subject!r}" if self.subject else ""


Factory = Callable[[Failure], MeshbusError | None]
"""Makes the meshbus error for a failure, or gives ``None``: the row does not apply."""

ErrorRow = tuple[type[BaseException] | tuple[type[BaseException], ...], Factory]
"""``(library exception class or classes, factory)``: one row of an error table."""


class Translate(Protocol):
    """``translate(exc, op, subject, timeout)``: the meshbus error for a library's exception."""

    def __call__(
        self, exc: BaseException, op: str, subject: str = "", timeout: float = 0.0
    ) -> MeshbusError: ...


class ErrorMapper(Protocol):
    """``with mapped(op, subject, timeout): ...``: see ``error_mapper``."""

    def __call__(
        self, op: str, subject: str = "", timeout: float = 0.0
    ) -> contextlib.AbstractContextManager[None]: ...


def error_table(
    rows: Sequence[ErrorRow], otherwise: Callable[[Failure], MeshbusError]
) -> Translate:
    """A ``translate(exc, op, subject="", timeout=0.0)`` that reads ``rows`` top down, most
    specific class first, and returns the error of the first row whose classes ``exc`` is an
    instance of and whose factory gives one; ``otherwise(failure)`` when none does. A
    ``MeshbusError`` is returned as it is.

    Raise the result ``from`` the original, so that it stays the ``__cause__``::

        translate = error_table(
            (
                (libfoo.AuthError, as_error(AuthenticationFailed, "foo refused us: {exc}")),
                (BaseException, during("connect", as_error(ConnectFailed, "no foo at {subject}"))),
                ((libfoo.Timeout, TimeoutError), timed_out("foo did not take the {op}{where}")),
            ),
            otherwise=as_error(TransportError, "foo failed during {op}{where}: {exc!r}"),
        )
    """
    table = tuple(rows)

    def translate(
        exc: BaseException, op: str, subject: str = "", timeout: float = 0.0
    ) -> MeshbusError:
        if isinstance(exc, MeshbusError):
            return exc
        failure = Failure(exc, op, subject, timeout)
        for classes, factory in table:
            if isinstance(exc, classes):
                error = factory(failure)
                if error is not None:
                    return error
        return otherwise(failure)

    return translate


def as_error(
    error: Callable[[str], MeshbusError], template: str
) -> Callable[[Failure], MeshbusError]:
    """A factory: ``error(message)``, the message being ``template`` formatted with the
    failure's ``op``, ``subject``, ``where``, ``timeout`` and ``exc``."""

    def make(failure: Failure) -> MeshbusError:
        return error(
            template.format(
                op=failure.op,
                subject=failure.subject,
                where=failure.where,
                timeout=failure.timeout,
                exc=failure.exc,
            )
        )

    return make


def during(op: str, factory: Factory) -> Factory:
    """``factory`` for failures of ``op`` only (``None`` for any other)."""

    def make(failure: Failure) -> MeshbusError | None:
        return factory(failure) if failure.op == op else None

    return make


def timed_out(template: str) -> Callable[[Failure], MeshbusError]:
    """The factory for a timeout: ``RequestTimeout`` for a request, ``PublishTimeout`` with
    ``template`` (formatted as by ``as_error``) for anything else."""
    publish_timeout = as_error(PublishTimeout, template)

    def make(failure: Failure) -> MeshbusError:
        if failure.op == "request":
            return RequestTimeout(failure.subject, failure.timeout)
        return publish_timeout(failure)

    return make


def error_mapper(errors: tuple[type[BaseException], ...], translate: Translate) -> ErrorMapper:
    """``mapped(op, subject="", timeout=0.0)``: a block inside which the library's ``errors``
    are raised as ``translate(exc, op, subject, timeout)``, ``from`` the original. meshbus
    errors, and anything not in ``errors``, pass through as they are."""

    @contextlib.contextmanager
    def mapped(op: str, subject: str = "", timeout: float = 0.0) -> Iterator[None]:
        try:
            yield
        except MeshbusError:
            raise
        except errors as exc:
            raise translate(exc, op, subject, timeout) from exc

    return mapped
