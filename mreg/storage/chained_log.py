"""Committing a change to a model on disk: its chained log lines, then its files.

Under the model's lock (:class:`mreg.storage.refs.RefStore`), every change goes in
git's order, log first:

1. *Recover.* Lines past the head that ``_refs`` names were written by a change that
   was killed before its commit point. Those whose effect is visible (a note whose
   ``_notes`` was replaced) are kept, as committed; the rest are cut off.
2. *Append* the change's lines, chained after the head, in one ``write`` (fsync). The
   first chained line of a log an older mreg wrote seals the lines before it.
3. *Replace* the side file the change touches (``_notes``), if any.
4. *Replace* ``_refs``: the table and the new head, in one rename: the commit point.

A failure (a full disk) puts the log and the side files back as they were. Every file
is opened without following links: a link planted in a shared store is refused,
never written through.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mreg.errors import CorruptRefsError, MregError
from mreg.records.chain import Head, Link, chained, continues, encode_line, parse_link, table_head, with_head
from mreg.records.names import Digest
from mreg.records.notes import parse_table
from mreg.records.refs import RefTable
from mreg.storage.files import fsync_dir, open_no_follow, read_no_follow, write_all, write_atomically
from mreg.storage.model_files import LOG_FILE, NOTES_FILE, TABLE_FILE


def commit(
    directory: Path, fields: Sequence[Mapping[str, Any]], table: RefTable | None, sides: Mapping[str, bytes], *, time: str, author: str
) -> Head | None:
    """Write one change of a model: ``fields`` (its log lines, unchained), the side
    files ``sides`` (``_notes``: name -> new bytes) and ``table`` (None:
    the table stays, only its head moves). The caller holds the model's lock.

    Returns the new head (None when there was nothing to write).

    Raises:
        CorruptRefsError: the log does not end at the head ``_refs`` names, in a way no
            interrupted change explains (it was edited: ``mreg fsck`` says where).
        UnsafeFileError: a file of the model is a symbolic link.
    """
    refs_text = _text(read_no_follow(directory / TABLE_FILE), directory)
    head = table_head(refs_text)
    log = directory / LOG_FILE
    data, start = _tail(log) if head is not None else (read_no_follow(log) or b"", 0)
    try:
        kept, head = _recover(directory, data, head)
    except CorruptRefsError:
        if start == 0:
            raise
        data, start = read_no_follow(log) or b"", 0  # the head's line is further back than the end read: read it all
        kept, head = _recover(directory, data, head)
    kept += start
    if not fields:
        return head
    lines, new_head = chained(fields, head, data[:kept])  # the bytes a first chained line seals (read whole then)
    if table is None:
        table = RefTable.parse(refs_text, where=f"ref table in {directory}") if refs_text else RefTable()
    saved = {name: read_no_follow(directory / name) for name in sides}
    try:
        _append(log, kept, b"".join(line + b"\n" for line in lines))
        for name, content in sides.items():
            write_atomically(directory / name, content, temp=directory / (name + ".tmp"))
        write_atomically(directory / TABLE_FILE, with_head(table.encode(), new_head), temp=directory / (TABLE_FILE + ".tmp"))
    except BaseException:
        _undo(directory, kept, saved)
        raise
    return new_head


TAIL = 64 << 10
"""Bytes read from the end of a log to find its head: a change reads the end, not the whole log."""


def _tail(log: Path) -> tuple[bytes, int]:
    """The last whole lines of a log (at most ``TAIL`` bytes) and where they start in it."""
    try:
        fd = open_no_follow(log, os.O_RDONLY)
    except FileNotFoundError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    if start > 0:
        cut = data.find(b"\n") + 1  # the first line read is partial: it starts before the window
        data, start = data[cut:], start + cut
    return data, start


def _text(data: bytes | None, directory: Path) -> str:
    try:
        return (data or b"").decode("ascii")
    except UnicodeDecodeError:
        raise CorruptRefsError(f"the ref table in {directory} is not text") from None


def _recover(directory: Path, data: bytes, head: Head | None) -> tuple[int, Head | None]:
    """Where the committed log ends (a byte offset) and its head, after keeping the lines
    of an interrupted change that took effect (see the module docstring)."""
    end, pending = _split(data, head, directory)
    committed = _effective(directory, pending)
    if committed:
        last = committed[-1]
        return end + sum(len(encode_line(link.fields)) + 1 for link in committed), last.head
    return end, head


def _split(data: bytes, head: Head | None, directory: Path) -> tuple[int, list[Link]]:
    """The offset just past the head's line, and the chained lines after it.

    Without a head, every chained line is past it (an interrupted first change); with
    one, only the end of the log is read, back to the head's line.
    """
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise CorruptRefsError(f"the log in {directory} ends without a line feed; run 'mreg fsck'")
    lines.pop()
    pending: list[Link] = []
    offset = len(data)
    for number in range(len(lines), 0, -1):
        line = lines[number - 1]
        link = parse_link(line, number)
        if head is not None and isinstance(link, Link) and link.seq == head.seq:
            if link.hash != head.hash:
                raise CorruptRefsError(f"the log in {directory} has another line at seq {head.seq} than its head names; run 'mreg fsck'")
            return offset, _ordered(pending, link.head, b"", directory)
        if not isinstance(link, Link):
            if head is None:
                return offset, _ordered(pending, None, data[:offset], directory)
            raise CorruptRefsError(f"the log in {directory} does not end at its head (seq {head.seq}); run 'mreg fsck'")
        pending.insert(0, link)
        offset -= len(line) + 1
    if head is not None:
        raise CorruptRefsError(f"the log in {directory} lacks the line of its head (seq {head.seq}); run 'mreg fsck'")
    return offset, _ordered(pending, None, b"", directory)


def _ordered(pending: list[Link], head: Head | None, legacy: bytes, directory: Path) -> list[Link]:
    """``pending`` if it continues ``head`` line by line (without a head: if it seals ``legacy``)."""
    if continues(pending, head, legacy):
        raise CorruptRefsError(f"the log in {directory} has lines past its head that do not continue it; run 'mreg fsck'")
    return pending


def _effective(directory: Path, pending: list[Link]) -> list[Link]:
    """The longest run of ``pending`` lines, from the first, whose change took effect: a
    note in ``_notes`` (a table change takes effect only with its head, so it never has)."""
    if not pending:
        return []
    notes = read_no_follow(directory / NOTES_FILE)
    try:
        note_table = parse_table(notes, "notes") if notes is not None else {}
    except MregError:
        return []
    committed: list[Link] = []
    for link in pending:
        target = link.fields.get("target")
        if not (link.ref.startswith("notes/") and link.applied and isinstance(target, str)):
            break
        if note_table.get(Digest(target)) != link.fields.get("new"):
            break
        committed.append(link)
    return committed


def _append(log: Path, keep: int, lines: bytes) -> None:
    """Cut the log to ``keep`` bytes (the lines of an interrupted change), then append ``lines``
    in one write, fsynced."""
    fd = open_no_follow(log, os.O_RDWR | os.O_CREAT)
    try:
        if os.fstat(fd).st_size != keep:
            os.ftruncate(fd, keep)
        os.lseek(fd, keep, os.SEEK_SET)
        write_all(fd, lines)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(log.parent)


def _undo(directory: Path, size: int, saved: Mapping[str, bytes | None]) -> None:
    """Put the log and the side files back after a failed change (best effort: the disk may be gone)."""
    try:
        fd = open_no_follow(directory / LOG_FILE, os.O_RDWR)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        if size == 0:
            (directory / LOG_FILE).unlink()
    except OSError:
        pass
    for name, data in saved.items():
        try:
            if data is None:
                (directory / name).unlink(missing_ok=True)
            else:
                write_atomically(directory / name, data, temp=directory / (name + ".tmp"))
        except (OSError, MregError):
            pass
