"""``file:///path`` — the shared-volume channel.

Messages are files in a directory that several processes, in several containers, mount. Every
step that makes a message visible is one atomic rename or hard link on one filesystem, so a
reader never sees a partly written message and a crash at any point loses nothing confirmed:

- a publish writes the message under a unique name in ``tmp/``, fsyncs it, links it into the
  ``new/`` folder of every group whose pattern matches (renames it where there is just one),
  and fsyncs those folders (once per folder for a ``publish_many`` batch);
- a group is a folder registered under ``groups/``, so writers in every process fan out to it;
  groups are durable: they keep messages while no member runs;
- members of a group compete by renaming a message into their own claim folder; ``ack``
  deletes it, ``nack`` renames it back (after a delay through ``delayed/``), ``reject``
  publishes it to ``dead-letter.<group>`` with the reason and attempt in headers;
- the delivery count lives in the file name, so it survives crashes;
- each process heartbeats a file in ``consumers/``; one that stops for ``lease`` seconds loses
  its claims back to their groups (attempt counted), and its temp files are removed;
- a broadcast subscriber is a private group that it deletes when it leaves (or that the
  janitor deletes once its owner stops heartbeating);
- request/reply: replies go to a private folder ``replies/<consumer id>/``;
- corrupt, truncated, foreign or unreadable files are moved to ``quarantine/`` and logged
  (logger ``meshbus.file``); a reader goes on.

New files are noticed by inotify where it works and by polling where it does not (NFS, SMB,
FUSE): ``notify=auto`` chooses. The on-disk layout is versioned and documented in
``docs/file-layout.md``.

URL: ``file:///shared/queue?notify=auto&fsync=true&lease=15&poll_interval=0.05&rescan=1
&max_payload=1073741824``.
"""

from meshbus.channels.file._layout import LAYOUT_VERSION
from meshbus.channels.file._options import FileOptions
from meshbus.channels.file._transport import FileTransport
from meshbus.errors import CorruptMessage

__all__ = ["LAYOUT_VERSION", "CorruptMessage", "FileOptions", "FileTransport"]
