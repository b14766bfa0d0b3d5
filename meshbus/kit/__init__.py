"""A kit for writing a channel: the parts every meshbus channel needs and writes the same way.

A channel needs no base class (see ``meshbus.transport``); these are helpers, each usable on
its own, that meshbus's own channels and broker adapters are built with.

**Settings from a URL.** ``channel_settings(url, options)`` splits the URL and merges its query
string with the bus's ``options`` for the channel (options win). Take the settings you know out
of that dict, converted (``move_typed``, ``parse_flag``, ``take_tls``), and let
``reject_unknown`` turn what is left into ``InvalidURL``; ``split_hosts`` reads a list of
hosts::

    parts, settings = channel_settings(url, options)
    userinfo, hosts = split_hosts(parts.netloc)
    values = {}
    try:
        move_typed(settings, values, ints=("buffer",), floats=("timeout",))
    except (TypeError, ValueError) as exc:
        raise InvalidURL(url, f"bad foo:// option: {exc}") from exc
    take_tls(url, "foo", settings, values)
    reject_unknown(url, "foo", settings)

**Errors.** Map the client library's exceptions onto meshbus's error tree in one place:
``error_table`` turns rows of ``(library exception class, factory)``, most specific first, into
a ``translate(exc, op, subject, timeout)`` function (``as_error``, ``during`` and ``timed_out``
make the usual factories), and ``error_mapper`` makes the ``with mapped(op, subject): ...``
block that raises the library's exceptions as ``translate`` says, ``from`` the original.

**Subscriptions.** ``Inbox`` is the queue between a client library's callbacks and
``__anext__`` (``push`` in, ``_stop`` to end), optionally bounded (``capacity``,
``wait_for_room``). What it inherits from ``InFlight`` tracks handed-out messages until they
are settled, by token (``_track``, ``_release``), with a prefetch gate (``prefetch_full``,
``wait_settled``) and what ``close`` needs: ``_drain(timeout)`` to let handlers settle, then
``_unsettled()`` to give back the rest. A subscription whose messages wait somewhere else
(files in a folder) uses ``InFlight`` alone.

**Caches.** ``BoundedCache`` is a ``dict`` for per-message lookups (subject -> topic) that
forgets everything when it is full, so that endless new keys cannot grow it.

Every method is meant to be called from the event loop that runs the channel; none is
thread-safe. Names with a leading underscore are for the subscription class itself.
"""

from meshbus._cache import DEFAULT_LIMIT, BoundedCache
from meshbus.kit._deliveries import Inbox, InFlight
from meshbus.kit._errors import (
    ErrorMapper,
    ErrorRow,
    Failure,
    Translate,
    as_error,
    during,
    error_mapper,
    error_table,
    timed_out,
)
from meshbus.kit._settings import (
    channel_settings,
    move_typed,
    parse_flag,
    reject_unknown,
    split_hosts,
    take_tls,
)

__all__ = [
    "DEFAULT_LIMIT",
    "BoundedCache",
    "ErrorMapper",
    "ErrorRow",
    "Failure",
    "InFlight",
    "Inbox",
    "Translate",
    "as_error",
    "channel_settings",
    "during",
    "error_mapper",
    "error_table",
    "move_typed",
    "parse_flag",
    "reject_unknown",
    "split_hosts",
    "take_tls",
    "timed_out",
]
