"""A finding of ``meshbus doctor`` and how findings are printed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["LEVELS", "Finding", "render"]

LEVELS = ("ok", "skip", "warn", "fail")


@dataclass(frozen=True)
class Finding:
    """One result: ``level`` is ``ok``, ``skip`` (could not check), ``warn`` or ``fail``;
    ``fix`` says what to do."""

    level: str
    check: str
    message: str
    fix: str = ""


def render(findings: Sequence[Finding], as_json: bool = False) -> str:
    """The findings as text (one line each, fixes indented) or as JSON."""
    if as_json:
        return json.dumps([asdict(f) for f in findings], indent=2)
    marks = {"ok": "ok  ", "skip": "skip", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for finding in findings:
        lines.append(f"[{marks[finding.level]}] {finding.check}: {finding.message}")
        if finding.fix and finding.level != "ok":
            lines.append(f"       fix: {finding.fix}")
    return "\n".join(lines)
