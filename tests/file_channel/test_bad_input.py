"""file:// against bad input: corrupt, truncated, foreign and unreadable files, and
directories it cannot use. Bad files are reported and moved aside; a reader keeps going."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import meshbus
from meshbus.errors import InvalidURL, ProtocolError
from meshbus.testing.harness import Session

PROC = str(Path(__file__).with_name("proc.py"))


def group_new(root: Path, group: str) -> Path:
    (found,) = root.glob(f"groups/{group}@*/new")
    return found


def quarantined(root: Path) -> list[Path]:
    return [p for p in (root / "quarantine").iterdir() if not p.name.endswith(".reason")]


async def publish_parked(root: Path, count: int) -> list[Path]:
    """Publish ``count`` messages to a declared group nobody reads yet; return their files."""
    async with meshbus.connect(f"file://{root}") as bus:
        await bus.declare_group("bad.in", "g")
        await bus.publish_many([("bad.in", f"m{i}") for i in range(count)])
    return sorted(group_new(root, "g").iterdir())


async def connect(url: str) -> None:
    """Connect and close again (raises what connecting raises)."""
    async with meshbus.connect(url):
        pass


async def publish_one(root: Path) -> None:
    async with meshbus.connect(f"file://{root}") as bus:
        await bus.publish("bad.in", "still works")


async def read_all(root: Path, count: int) -> list[str]:
    async with (
        meshbus.connect(f"file://{root}?notify=poll") as bus,
        bus.subscribe("bad.in", group="g") as sub,
    ):
        got = [m.json() for m in await Session.take(sub, count)]
        await Session.nothing(sub, within=0.3)
        return got


def test_corrupt_and_truncated_files_are_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flipped byte and a cut-off file are moved to quarantine/ and logged; the good
    messages around them are delivered."""
    files = asyncio.run(publish_parked(tmp_path, 4))
    flipped = bytearray(files[1].read_bytes())
    flipped[-1] ^= 0xFF
    files[1].write_bytes(bytes(flipped))
    with open(files[2], "r+b") as handle:
        handle.truncate(20)
    with caplog.at_level(logging.WARNING, logger="meshbus.file"):
        assert asyncio.run(read_all(tmp_path, 2)) == ["m0", "m3"]
    assert len(quarantined(tmp_path)) == 2
    text = caplog.text
    assert "checksum" in text
    assert "truncated" in text
    reasons = [p.read_text() for p in (tmp_path / "quarantine").glob("*.reason")]
    assert len(reasons) == 2


def test_unknown_files_are_moved_aside_or_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A foreign file among the messages, a FIFO named like a message (which must not hang
    a reader), a stray file in groups/ and in the root: reported, never fatal."""
    files = asyncio.run(publish_parked(tmp_path, 2))
    new = files[0].parent
    (new / "README.txt").write_text("not a message")
    os.mkfifo(new / f"{'0' * 16}.someone.0")
    (tmp_path / "groups" / "stray-file").write_text("?")
    (tmp_path / "groups" / "stray-dir").mkdir()
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="meshbus.file"):
        assert asyncio.run(read_all(tmp_path, 2)) == ["m0", "m1"]
        asyncio.run(publish_one(tmp_path))
    assert len(quarantined(tmp_path)) == 2
    assert "not a message file name" in caplog.text
    assert "not a regular file" in caplog.text
    assert "stray-dir is not a group" in caplog.text


def test_unreadable_file_is_quarantined() -> None:
    """A message file the reader may not open (mode 000, owned by another user) is reported
    and moved aside by a reader process running as an unprivileged user; the reader goes on.
    (Root reads any file, so as root the reader drops to uid 65534 first; the tree lives in a
    world-writable temp directory because pytest's own is private to root.)"""
    root = Path(tempfile.mkdtemp(prefix="meshbus-perm-"))
    try:
        files = asyncio.run(publish_parked(root, 3))
        if os.geteuid() == 0:
            for folder, _, _ in os.walk(root):
                os.chmod(folder, 0o777)
            for path in files[::2]:
                os.chmod(path, 0o666)
        os.chmod(files[1], 0)
        out = root / "perm.out"
        url = f"file://{root}?notify=poll"
        result = subprocess.run(
            [sys.executable, PROC, "perm-reader", url, "bad.in", "g", str(out), "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert out.read_text().split() == ['"m0"', '"m2"']
        assert "Permission denied" in result.stderr
        assert len(quarantined(root)) == 1
    finally:
        shutil.rmtree(root)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidURL, match="does not exist"):
        asyncio.run(connect(f"file://{tmp_path}/nope"))
    (tmp_path / "plain").write_text("")
    with pytest.raises(InvalidURL, match="is not a directory"):
        asyncio.run(connect(f"file://{tmp_path}/plain"))


def test_newer_layout_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "meshbus-layout.json").write_text(json.dumps({"layout": 99}))
    with pytest.raises(ProtocolError, match="layout version 99"):
        asyncio.run(connect(f"file://{tmp_path}"))
    (tmp_path / "meshbus-layout.json").write_text("garbage")
    with pytest.raises(ProtocolError, match="not a meshbus layout file"):
        asyncio.run(connect(f"file://{tmp_path}"))


def test_temp_and_groups_on_different_filesystems_is_refused(tmp_path: Path) -> None:
    """tmp/ on another filesystem than groups/ (here: a symlink to /dev/shm) gives EXDEV."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temp directory")
    elsewhere = shm / f"meshbus-test-{os.getpid()}-{tmp_path.name}"
    elsewhere.mkdir()
    try:
        (tmp_path / "tmp").symlink_to(elsewhere)
        with pytest.raises(InvalidURL, match="EXDEV"):
            asyncio.run(connect(f"file://{tmp_path}"))
    finally:
        shutil.rmtree(elsewhere)


READ_ONLY_PROBE = """
import asyncio, sys, meshbus
from meshbus.errors import InvalidURL
async def main():
    try:
        await meshbus.connect("file://" + sys.argv[1])
    except InvalidURL as exc:
        print("refused:", exc)
    else:
        print("accepted")
asyncio.run(main())
"""


def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    """A directory on a read-only mount: a private mount namespace (unshare -m) mounts a
    read-only tmpfs that only the child process sees and that vanishes with it."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root to mount a read-only filesystem privately")
    mount = tmp_path / "ro"
    mount.mkdir()
    script = (
        f"mount -t tmpfs -o ro,size=1m tmpfs {mount} && "
        f"{sys.executable} -c '{READ_ONLY_PROBE}' {mount}"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "mount" in result.stderr:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout
    assert "read-only" in result.stdout
