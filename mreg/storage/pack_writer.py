"""Changing the form of a stored blob: raw to packed and back, never losing it on the way.

Each step makes the new form durable before the old one goes: a record is written to
``tmp/``, fsynced, renamed to ``objects/ab/cdef....pack`` and its directory fsynced;
only then is the raw blob unlinked (and the directory fsynced again). A ``kill -9``
at any instant therefore leaves the blob in at least one complete form, raw or
packed, which every reader tries in that order (:mod:`mreg.storage.packed`); a blob
left in both forms costs space until the next ``mreg pack`` and nothing else. The
caller checks a new form against the blob's name before installing it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mreg.storage import format_version
from mreg.storage.files import fsync_dir, unique_temp_path, write_all

if TYPE_CHECKING:
    from mreg.storage.blobs import Block
    from mreg.storage.layout import ObjectLayout


def install_record(layout: ObjectLayout, digest: str, record: bytes, *, durable: bool = True) -> None:
    """Make ``record`` the packed form of ``digest`` (replacing an older record atomically):
    its bytes durable, and with ``durable`` its name too (else the caller fsyncs its
    directory, once for many, before it removes the raw blobs they replace).

    The store's format version is raised first (:mod:`mreg.storage.format_version`), so
    that no store holds a record while its config says it cannot.
    """
    format_version.require(layout.root, format_version.PACKS)
    _install(layout, [record], str(layout.pack_path(digest)), durable=durable)


def install_raw(layout: ObjectLayout, digest: str, blocks: Iterable[Block]) -> None:
    """Make ``blocks`` (checked by the caller against ``digest``) the durable raw blob of ``digest``."""
    _install(layout, blocks, str(layout.object_path(digest)))


def drop_raw(layout: ObjectLayout, digest: str, *, durable: bool = True) -> None:
    """Remove the raw form of a blob whose record is durable and checked (with ``durable``
    False the caller syncs the directory: a removal lost in a crash only leaves both forms)."""
    _unlink(str(layout.object_path(digest)), durable=durable)


def drop_record(layout: ObjectLayout, digest: str) -> None:
    """Remove the packed form of a blob whose raw form is durable and checked."""
    _unlink(str(layout.pack_path(digest)))


def _install(layout: ObjectLayout, blocks: Iterable[Block], target: str, *, durable: bool = True) -> None:
    layout.tmp_dir.mkdir(parents=True, exist_ok=True)
    temp = unique_temp_path(layout.tmp_dir, "pack")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            for block in blocks:
                write_all(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        os.replace(temp, target)
        if durable:
            fsync_dir(directory)  # type: ignore[arg-type]
    finally:
        temp.unlink(missing_ok=True)


def _unlink(path: str, *, durable: bool = True) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    if durable:
        fsync_dir(os.path.dirname(path))  # type: ignore[arg-type]
