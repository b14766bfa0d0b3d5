"""The ``meshbus`` command line: ``meshbus channels``, ``meshbus version``."""

from __future__ import annotations

import argparse
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
    commands.add_parser("channels", help="list the URL schemes this installation serves")
    commands.add_parser("version", help="print the meshbus version")
    args = parser.parse_args(argv)
    if args.command == "channels":
        return _channels()
    print(meshbus.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
