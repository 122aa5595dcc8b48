"""Writing a stream of bytes into blobs, cut where the caller says."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.errors import CorruptObjectError
from mreg.records.names import Digest, digest_from_hex
from mreg.storage.blobs import WRITEBACK_STEP, Block
from mreg.storage.files import (
    fsync_all,
    fsync_dirs,
    start_writeback,
    unique_temp_path,
    write_all,
)
from mreg.storage.threads import Worker

if TYPE_CHECKING:
    from mreg.storage.layout import ObjectLayout

MAX_PENDING = 256  # blobs written but not yet synced and installed (open files)


class SegmentWriter:
    """Writes a stream into blobs, starting a new one at each cut point.

    Three threads share the work, so that on two cores no byte waits for one thread
    to both hash and write it: the caller's thread hashes each segment, a hashing
    thread feeds the whole file's hash, and the writer thread writes and starts each
    blob's writeback to disk early. Finished blobs wait in a batch: each is fsynced,
    then renamed into place, then the directories they entered are fsynced once for
    the whole batch.

    ``expected`` lists the digest each segment must have (a file fetched from another
    store, cut where its chunk index says): a segment that differs raises
    CorruptObjectError before it is kept.
    """

    def __init__(self, layout: ObjectLayout, cuts: list[int], expected: list[Digest] | None = None) -> None:
        self.layout = layout
        self.cuts = cuts
        self.expected = expected
        self.whole = hashlib.sha256() if cuts else None  # one segment: its hash is the file's
        self.position = 0
        self.chunks: list[tuple[Digest, int]] = []
        self.wrote_any = False
        self._next_cut = 0
        self._temps: list[Path] = []  # every temporary file, for cleanup after a failure
        self._pending: list[tuple[int, Path, Path]] = []  # written blobs to sync and install
        self._unflushed = 0
        self._background = Worker()
        self._hashing = Worker() if self.whole is not None else None
        self._open()

    def _open(self) -> None:
        self.temp = unique_temp_path(self.layout.tmp_dir, "obj")
        self._temps.append(self.temp)
        self.fd: int | None = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, block: Block) -> None:
        view = memoryview(block)
        while view:
            part = view[: self._room(len(view))]
            self.hasher.update(part)
            self._feed_whole(part)
            self._background.submit(partial(self._write, self._open_fd(), part))
            self.size += len(part)
            view = view[len(part) :]
            self._advance(len(part))

    def _open_fd(self) -> int:
        """The descriptor of the segment being written (there is one until :meth:`finish`)."""
        if self.fd is None:
            raise ValueError("this writer has finished")
        return self.fd

    def skip(self, digest: Digest, size: int, blocks: Iterable[Block]) -> None:
        """Take a whole segment that is already stored: its bytes only feed the file's hash.

        ``blocks`` must hold exactly ``size`` bytes, from a cut to the next.
        """
        self._whole_segment(size)
        for block in blocks:
            self._feed_whole(memoryview(block))
        self.chunks.append((digest, size))
        self._advance(size)

    def adopt(self, digest: Digest, size: int, staged: Path, blocks: Iterable[Block]) -> None:
        """Take a whole segment that the caller checked against ``digest`` and already wrote
        to ``staged`` (:func:`stage_blob`): its bytes (``blocks``, ``size`` of them) only feed
        the file's hash, and its file joins the batch. The writer owns ``staged`` from now on."""
        self._temps.append(staged)
        self.skip(digest, size, blocks)
        self._background.submit(partial(self._finished, None, staged, digest))

    def _whole_segment(self, size: int) -> None:
        end = self.cuts[self._next_cut] if self._next_cut < len(self.cuts) else self.position + size
        if self.size or end - self.position != size:
            raise ValueError("a whole segment must lie between two cuts")

    def _room(self, wanted: int) -> int:
        """How many of ``wanted`` bytes fit before the next cut."""
        return min(wanted, self.cuts[self._next_cut] - self.position) if self._next_cut < len(self.cuts) else wanted

    def _advance(self, count: int) -> None:
        self.position += count
        if self._next_cut < len(self.cuts) and self.position == self.cuts[self._next_cut]:
            self._next_cut += 1
            if self.size:
                self._close_segment()
                self._open()

    def _feed_whole(self, part: memoryview) -> None:
        if self._hashing is not None:
            self._hashing.submit(partial(self.whole.update, part))  # type: ignore[union-attr]

    def _write(self, fd: int, part: memoryview) -> None:
        """On the writer thread: write, and start writeback now and then."""
        write_all(fd, part)
        self._unflushed += len(part)
        if self._unflushed >= WRITEBACK_STEP:
            start_writeback(fd)
            self._unflushed = 0

    def _close_segment(self, expected: Digest | None = None) -> None:
        digest = digest_from_hex(self.hasher.hexdigest())
        if self.expected is not None:
            expected = self.expected[len(self.chunks)]
        if expected is not None and digest != expected:
            raise CorruptObjectError(expected, f"received bytes hash to {digest}")
        fd, self.fd = self.fd, None
        self._background.submit(partial(self._finished, fd, self.temp, digest))
        self.chunks.append((digest, self.size))

    def _finished(self, fd: int | None, temp: Path, digest: Digest) -> None:
        """On the writer thread, after the segment's bytes: batch it, unless already stored
        (``fd`` None: a staged blob, whose writeback has started; it is opened to be synced)."""
        target = self.layout.object_path(digest)
        if target.is_file():
            if fd is not None:
                os.close(fd)
            temp.unlink(missing_ok=True)
            return
        if fd is None:
            fd = os.open(temp, os.O_RDONLY)
        else:
            start_writeback(fd)
            self._unflushed = 0
        self._pending.append((fd, temp, target))
        if len(self._pending) >= MAX_PENDING:  # bound the open files
            self._install_pending()

    def _install_pending(self) -> None:
        """fsync every pending blob, rename each into place, then fsync their directories once."""
        pending, self._pending = self._pending, []
        try:
            fsync_all([fd for fd, _, _ in pending])
        finally:
            for fd, _, _ in pending:
                os.close(fd)
        directories = []
        for _, temp, target in pending:
            directories += self.layout.install(temp, target, durable=False)
        fsync_dirs(directories)
        self.wrote_any = self.wrote_any or bool(pending)

    def finish(self, expected: Digest | None = None) -> tuple[Digest, list[tuple[Digest, int]]]:
        """Close the last segment, make every new blob durable; return the file's digest and its chunks.

        With ``expected`` a mismatch raises CorruptObjectError: for a single blob
        nothing is kept; for a cut file its segments (each checked) may be kept, but
        the caller must not record the file.
        """
        if self.size or not self.chunks:
            self._close_segment(expected if not self.cuts else None)
        self._background.submit(self._install_pending)
        self._background.drain()
        if self._hashing is not None:
            self._hashing.drain()
        digest = digest_from_hex(self.whole.hexdigest()) if self.whole is not None else self.chunks[0][0]
        if expected is not None and digest != expected:
            raise CorruptObjectError(expected, f"its bytes hash to {digest}")
        return digest, self.chunks

    def discard(self) -> None:
        """Stop the threads and remove what is left (after an error, too)."""
        self._background.stop()
        if self._hashing is not None:
            self._hashing.stop()
        for fd in [self.fd, *(fd for fd, _, _ in self._pending)]:
            if fd is not None:
                os.close(fd)
        self.fd, self._pending = None, []
        for temp in self._temps:
            temp.unlink(missing_ok=True)
