"""A read-only Docker Engine API client on the standard library, and "which container am I?".

The doctor only reads: ``GET /_ping``, ``/containers/json``, ``/containers/{id}/json`` and
``/networks/{id}``. It talks HTTP over the engine's unix socket (``unix:///var/run/docker.sock``,
or ``DOCKER_HOST=unix://...``) or, for a socket proxy, plain ``tcp://host:port`` (TLS is not
spoken). The API version is the one the engine reports in ``GET /_ping`` (the fields read here
are the same in every version since 1.24), ``1.41`` if it reports none.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from meshbus.errors import DockerEngineError

__all__ = ["DEFAULT_DOCKER_HOST", "Engine", "container_ids_from_proc"]

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
FALLBACK_API_VERSION = "1.41"
_CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """The Docker Engine API at ``host`` (a ``DOCKER_HOST`` value); blocking calls."""

    def __init__(self, host: str = DEFAULT_DOCKER_HOST, timeout: float = 2.0) -> None:
        parts = urlsplit(host)
        unix = parts.scheme == "unix" and bool(parts.path)
        if not unix and not (parts.scheme in {"tcp", "http"} and parts.hostname):
            raise DockerEngineError(
                f"DOCKER_HOST={host!r}: the doctor speaks to unix:///path or tcp://host:port"
            )
        self.host = host
        self.socket_path = parts.path if unix else None
        self._parts = parts
        self.timeout = timeout
        self._prefix: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], timeout: float = 2.0) -> Engine:
        """The engine ``DOCKER_HOST`` names, else the default unix socket."""
        return cls(environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST, timeout)

    def _connection(self) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, self.timeout)
        return http.client.HTTPConnection(
            self._parts.hostname or "", self._parts.port or 2375, timeout=self.timeout
        )

    def _request(self, path: str) -> tuple[int, http.client.HTTPResponse, bytes]:
        conn = self._connection()
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            response = conn.getresponse()
            return response.status, response, response.read()
        except FileNotFoundError as exc:
            raise DockerEngineError(f"no Docker socket at {self.socket_path}") from exc
        except PermissionError as exc:
            raise DockerEngineError(f"{self.host}: permission denied ({exc.strerror})") from exc
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DockerEngineError(f"{self.host}: {reason}") from exc
        finally:
            conn.close()

    def version(self) -> str:
        """The API version used: the engine's, from ``GET /_ping`` (negotiated once)."""
        if self._prefix is None:
            status, response, _ = self._request("/_ping")
            if status != 200:
                raise DockerEngineError(f"{self.host}: GET /_ping answered {status}", status)
            version = response.getheader("Api-Version") or FALLBACK_API_VERSION
            if not re.fullmatch(r"\d+\.\d+", version):
                version = FALLBACK_API_VERSION
            self._prefix = f"/v{version}"
        return self._prefix[2:]

    def get(self, path: str, **query: str) -> Any:
        """``GET /vX.Y{path}?{query}`` as parsed JSON; :class:`DockerEngineError` otherwise."""
        self.version()
        url = f"{self._prefix}{path}" + (f"?{urlencode(query)}" if query else "")
        status, _, body = self._request(url)
        if status != 200:
            try:
                message = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                message = body[:200].decode(errors="replace")
            raise DockerEngineError(f"GET {path}: {status} {message}".strip(), status)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DockerEngineError(f"GET {path}: the answer is not JSON") from exc

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        """``GET /containers/json`` (running ones only unless ``all``)."""
        found = self.get("/containers/json", all="1" if all else "0")
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    def container(self, ref: str) -> dict[str, Any]:
        """``GET /containers/{ref}/json``: ``ref`` is an id, an id prefix or a name."""
        found = self.get(f"/containers/{quote(ref, safe='')}/json")
        if not isinstance(found, dict):
            raise DockerEngineError(f"GET /containers/{ref}/json: not an object")
        return found

    def network(self, ref: str) -> dict[str, Any]:
        """``GET /networks/{ref}``."""
        found = self.get(f"/networks/{quote(ref, safe='')}")
        if not isinstance(found, dict):
            raise DockerEngineError(f"GET /networks/{ref}: not an object")
        return found

    def find_self(self, ids: list[str], hostname: str) -> dict[str, Any] | None:
        """Inspect this container: the first of ``ids`` the engine knows, else the container
        whose id starts with, or whose name is, ``hostname`` and whose hostname it is."""
        for ref in ids:
            try:
                return self.container(ref)
            except DockerEngineError as exc:
                if exc.status != 404:
                    raise
        if not hostname:
            return None
        try:
            found = self.container(hostname)
        except DockerEngineError as exc:
            if exc.status != 404:
                raise
            return None
        return found if (found.get("Config") or {}).get("Hostname") == hostname else None


def container_ids_from_proc(proc: Path = Path("/proc/self")) -> list[str]:
    """Container ids this process can see it runs in, most reliable first.

    ``mountinfo`` names ``/var/lib/docker/containers/<id>/`` for the hostname, hosts and
    resolv.conf bind mounts (cgroup v1 and v2 alike); ``cgroup`` names ``/docker/<id>`` or
    ``docker-<id>.scope`` under cgroup v1 or with a host cgroup namespace.
    """
    found: list[str] = []
    for name, marker in (("mountinfo", "containers/"), ("cgroup", "")):
        try:
            text = (proc / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if marker and marker not in line:
                continue
            for match in _CONTAINER_ID.finditer(line):
                if match.group(1) not in found:
                    found.append(match.group(1))
    return found
