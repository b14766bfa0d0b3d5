"""The ``meshbus`` command line: ``meshbus run``, ``meshbus probe``, ``meshbus doctor``,
``meshbus channels``, ``meshbus version``."""

from __future__ import annotations

import argparse
import asyncio
import sys

import meshbus
from meshbus.registry import KNOWN_ADAPTERS, default_registry


def _channels() -> int:
    installed = default_registry().schemes()
    for scheme in installed:
        print(f"{scheme}://")
    for scheme, (package, extra) in sorted(KNOWN_ADAPTERS.items()):
        if scheme not in installed:
            print(f"{scheme}://  (not installed: pip install 'meshbus[{extra}]' or {package})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="meshbus", description=meshbus.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser(
        "doctor", help="check why this container cannot reach others (exit 1 when it cannot)"
    )
    doctor.add_argument("urls", nargs="*", help="URLs to check (default: the MESHBUS_* settings)")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.add_argument("--timeout", type=float, default=2.0, help="seconds per lookup/connect")
    doctor.add_argument(
        "--resolv-conf", default="/etc/resolv.conf", help="the resolver configuration to read"
    )
    doctor.add_argument(
        "--docker",
        metavar="DOCKER_HOST",
        help="the Docker engine to ask (default: $DOCKER_HOST or unix:///var/run/docker.sock)",
    )
    doctor.add_argument(
        "--no-docker", action="store_true", help="do not ask the Docker engine, even if mounted"
    )
    doctor.add_argument(
        "--probe-bytes",
        type=int,
        default=None,
        help="size of the frame sent to each direct peer to test the path MTU (0: no probe; "
        "default 16384)",
    )
    run = commands.add_parser(
        "run", help="run a meshbus.App as a service (health endpoint, drain on SIGTERM)"
    )
    run.add_argument("app", help="the app as module:attribute (or path/to/file.py:attribute)")
    run.add_argument("--url", help="the channel URL (default: the app's, or MESHBUS_URL)")
    run.add_argument("--routes", help="JSON object or PATTERN=URL,... (default MESHBUS_ROUTES)")
    run.add_argument("--listen", help="direct listen address (default MESHBUS_LISTEN)")
    run.add_argument("--health", metavar="HOST:PORT", help="serve /livez and /readyz there")
    run.add_argument("--workers", type=int, default=1, help="processes of the app (default 1)")
    run.add_argument(
        "--drain-timeout", type=float, default=10.0, help="seconds to drain on SIGTERM (10)"
    )
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    probe = commands.add_parser(
        "probe", help="GET an http:// URL; exit 0 on a 2xx answer (a healthcheck without curl)"
    )
    probe.add_argument("url", help="e.g. http://127.0.0.1:8080/readyz")
    probe.add_argument("--timeout", type=float, default=2.0)
    commands.add_parser("channels", help="list the URL schemes this installation serves")
    commands.add_parser("version", help="print the meshbus version")
    args = parser.parse_args(argv)
    if args.command == "run":
        from meshbus.runner import RunOptions, main_run

        return main_run(
            RunOptions(
                app=args.app,
                url=args.url,
                routes=args.routes,
                listen=args.listen,
                health=args.health,
                workers=args.workers,
                drain_timeout=args.drain_timeout,
                log_format=args.log_format,
                loop=args.loop,
            )
        )
    if args.command == "probe":
        from meshbus.runner import probe as probe_url

        return probe_url(args.url, args.timeout)
    if args.command == "channels":
        return _channels()
    if args.command == "doctor":
        from meshbus.doctor import diagnose, render
        from meshbus.doctor._mtu import PROBE_BYTES

        docker: str | bool = False if args.no_docker else (args.docker or True)
        probe_bytes = PROBE_BYTES if args.probe_bytes is None else args.probe_bytes
        findings = asyncio.run(
            diagnose(
                args.urls,
                timeout=args.timeout,
                resolv_conf=args.resolv_conf,
                docker=docker,
                probe_bytes=probe_bytes,
            )
        )
        print(render(findings, as_json=args.json))
        return 1 if any(f.level == "fail" for f in findings) else 0
    print(meshbus.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
