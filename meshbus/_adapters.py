"""What the channels do the same way: raising a client library's exceptions as meshbus errors
(the broker adapters), and reading the options of a channel URL (the adapters and the direct
channel)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from meshbus.errors import InvalidURL, MeshbusError

__all__ = ["ErrorMapper", "error_mapper", "move_typed", "reject_unknown", "take_tls"]

Translate = Callable[[BaseException, str, str, float], MeshbusError]


class ErrorMapper(Protocol):
    def __call__(
        self, op: str, subject: str = "", timeout: float = 0.0
    ) -> contextlib.AbstractContextManager[None]: ...


def error_mapper(errors: tuple[type[BaseException], ...], translate: Translate) -> ErrorMapper:
    """``mapped(op, subject, timeout)``: a block inside which the library's ``errors`` are
    raised as ``translate(exc, op, subject, timeout)``, ``from`` the original. meshbus errors
    pass through as they are."""

    @contextlib.contextmanager
    def mapped(op: str, subject: str = "", timeout: float = 0.0) -> Iterator[None]:
        try:
            yield
        except MeshbusError:
            raise
        except errors as exc:
            raise translate(exc, op, subject, timeout) from exc

    return mapped


def move_typed(
    settings: dict[str, Any],
    values: dict[str, Any],
    *,
    ints: Iterable[str] = (),
    floats: Iterable[str] = (),
    strs: Iterable[str] = (),
) -> None:
    """Move the named options that are present from ``settings`` into ``values``, converted;
    ``ValueError``/``TypeError`` when one does not convert."""
    for names, kind in ((ints, int), (floats, float), (strs, str)):
        for name in names:
            if name in settings:
                values[name] = kind(settings.pop(name))


def take_tls(url: str, label: str, settings: dict[str, Any], values: dict[str, Any]) -> None:
    """Move the ``tls`` option, which must be an ``ssl.SSLContext``."""
    if "tls" in settings:
        tls = settings.pop("tls")
        if not isinstance(tls, ssl.SSLContext):
            raise InvalidURL(url, f"the {label} 'tls' option is an ssl.SSLContext")
        values["tls"] = tls


def reject_unknown(url: str, label: str, settings: dict[str, Any]) -> None:
    """Whatever is left in ``settings`` is an option the channel does not know."""
    if settings:
        raise InvalidURL(url, f"unknown {label}:// options: {', '.join(sorted(settings))}")
