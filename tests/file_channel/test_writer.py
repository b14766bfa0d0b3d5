"""The file writer on real files: batches larger than one fsync chunk land whole and in order,
fan-out by links, and a failure part-way leaves a prefix of the batch in place and no temp
file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbus.channels.file._format import encode_header, read_message
from meshbus.channels.file._writer import _FSYNC_FILES, Planned, write_batch
from meshbus.transport import Envelope


def plan(root: Path, i: int, targets: list[Path]) -> Planned:
    envelope = Envelope("w.test", f"payload {i}".encode(), {}, None, f"id{i}")
    name = f"{i:016x}.writer.0"
    temp = str(root / "tmp" / f"m.writer.{i:016x}")
    return (temp, encode_header(envelope), envelope.data, name, [str(t) for t in targets])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for folder in ("tmp", "a", "b"):
        (tmp_path / folder).mkdir()
    return tmp_path


@pytest.mark.parametrize("fsync", [True, False])
def test_a_batch_over_several_chunks_lands_whole_and_in_order(root: Path, fsync: bool) -> None:
    write_batch([plan(root, i, [root / "a"]) for i in range(150)], fsync)
    names = sorted(p.name for p in (root / "a").iterdir())
    assert names == [f"{i:016x}.writer.0" for i in range(150)]
    assert read_message(str(root / "a" / names[149]))[1] == b"payload 149"
    assert not list((root / "tmp").iterdir())


def test_fan_out_links_one_file_into_every_target(root: Path) -> None:
    write_batch([plan(root, i, [root / "a", root / "b"]) for i in range(70)], True)
    for i in (0, 69):
        name = f"{i:016x}.writer.0"
        assert (root / "a" / name).stat().st_ino == (root / "b" / name).stat().st_ino
        assert (root / "a" / name).stat().st_nlink == 2
    assert not list((root / "tmp").iterdir())


def test_a_removed_target_drops_the_message_only_there(root: Path) -> None:
    write_batch([plan(root, 0, [root / "gone"]), plan(root, 1, [root / "a"])], True)
    assert [p.name for p in (root / "a").iterdir()] == [f"{1:016x}.writer.0"]
    assert not list((root / "tmp").iterdir())


@pytest.mark.parametrize("fsync", [True, False])
def test_a_failure_leaves_a_prefix_in_place_and_no_temp_file(root: Path, fsync: bool) -> None:
    batch = [plan(root, i, [root / "a"]) for i in range(100)]
    _, header, data, name, targets = batch[80]
    batch[80] = (str(root / "no-such-folder" / "m"), header, data, name, targets)
    with pytest.raises(FileNotFoundError):
        write_batch(batch, fsync)
    names = sorted(p.name for p in (root / "a").iterdir())
    assert names == [f"{i:016x}.writer.0" for i in range(len(names))]  # a prefix
    # one at a time without fsync; with fsync, the whole chunks before the failing one
    assert len(names) == (80 // _FSYNC_FILES * _FSYNC_FILES if fsync else 80)
    assert not list((root / "tmp").iterdir())
