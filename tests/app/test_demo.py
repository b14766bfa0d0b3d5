"""``make demo``'s shop runs as the README says: separate processes started by ``meshbus run``,
one billing replica stopped midway, the poison order dead-lettered, every confirmed order
handled exactly once (the demo's own count, which sets its exit status)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "shop" / "demo.py"


def test_the_shop_demo_loses_nothing_and_says_so() -> None:
    done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "billing-2 drained and exited with status 0" in out
    assert "dead-lettered [13]" in out
    assert "lost [], twice [], billed but not shipped []" in out
    assert "everything confirmed was handled exactly once" in out
