"""``mreg export``: every file of a version written into a directory, verified.

This is what ``huggingface_hub.snapshot_download(local_dir=...)`` does for a Hub
repository: the version's files under their recorded paths, ready for tools that
want a directory rather than a store.

Whole-file objects are hard-linked where the file system allows: an export of a
multi-gigabyte model then costs no space and no copy. The link *is* the object, so
it keeps the object's read-only mode (0444): editing it in place fails with
"Permission denied", and editors that save by writing a new file and renaming it
(most do) replace the link and leave the store alone. Root ignores permission
bits, so for root, and with ``link=False`` (``--copy``), every file is an
independent, writable copy; so is every file stored as chunks, which has no single
object to link. Whoever makes a linked file writable on purpose (``chmod``) and
edits it in place changes the store's object, which ``mreg fsck`` then reports.

Nothing is overwritten: a file that already exists with the same bytes is left as
it is, and any other existing file stops the export before anything is written.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.errors import ConflictError, CorruptObjectError, InputFileError
from mreg.operations.listing import version_view
from mreg.records.manifest import FileEntry
from mreg.records.reports import ExportReport
from mreg.storage.files import fsync_dir, unique_temp_path, write_all
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.store.store import Store

# Errors of os.link that mean "not here" (another file system, no hard links, too many)
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}




def export(store: Store, ref: str, directory: str | os.PathLike, *, link: bool = True) -> ExportReport:
    """Write every file of the version ``ref`` names into ``directory``; see the module docstring."""
    view = version_view(store, ref)
    root = Path(directory).absolute()
    report = ExportReport(view.name, view.version, root)
    targets = [(entry, _target(root, entry)) for entry in view.files]
    for entry, target in targets:  # refuse before writing anything
        if _existing(store, target, entry):
            report.unchanged.append(entry.path)
    link = link and permissions_protect()
    for entry, target in targets:
        if entry.path in report.unchanged:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        store.segments(entry)  # fetched from a fallback if only it has the file
        if link and not store.objects.is_chunked(entry.digest) and _link(store, entry, target):
            report.linked.append(entry.path)
        else:
            _copy(store, entry, target)
            report.copied.append(entry.path)
    return report


def permissions_protect() -> bool:
    """False for root, whom a read-only mode does not stop: root gets copies, never links."""
    return os.geteuid() != 0


def _target(root: Path, entry: FileEntry) -> Path:
    """Where a file goes; never outside ``root``, even through a symbolic link in it."""
    target = root.joinpath(*entry.path.split("/"))
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise ConflictError(f"cannot export '{printable(entry.path)}': a symbolic link in {root} leads outside it")
    return target


def _existing(store: Store, target: Path, entry: FileEntry) -> bool:
    """True when ``target`` already holds the file's bytes; ConflictError when it holds others."""
    try:
        status = target.lstat()
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise ConflictError(f"refusing to export {entry.path}: a parent of {target} is a file") from None
    different = f"refusing to overwrite {target}: it exists with other content (export into an empty directory)"
    if not target.is_file() or target.is_symlink() or status.st_size != entry.size:
        raise ConflictError(different)
    blob = store.objects.object_path(entry.digest)
    if blob.exists() and os.path.samefile(blob, target):
        return True
    if store.objects.hash_file(target)[0] != entry.digest:
        raise ConflictError(different)
    return True


def _link(store: Store, entry: FileEntry, target: Path) -> bool:
    """Hard-link the object, verified first; False where the file system cannot."""
    problem = store.objects.verify(entry.digest)
    if problem:
        raise CorruptObjectError(entry.digest, problem)
    try:
        os.link(store.objects.object_path(entry.digest), target)
    except FileExistsError:
        return _existing(store, target, entry)  # written meanwhile: fine if identical
    except OSError as exc:
        if exc.errno in _CANNOT_LINK:
            return False
        raise InputFileError(f"cannot write {target}: {exc.strerror or exc}") from None
    return True


def _copy(store: Store, entry: FileEntry, target: Path) -> None:
    """Write a verified, writable copy; link it into place so nothing is overwritten."""
    temp = unique_temp_path(target.parent, ".mreg-export")
    hasher = hashlib.sha256()
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for block in store.objects.iter_bytes(entry.digest):  # each blob verified
                hasher.update(block)
                write_all(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
        if "sha256:" + hasher.hexdigest() != entry.digest:
            raise CorruptObjectError(entry.digest, "its chunks do not add up to the file")
        _place(store, temp, target, entry)
        fsync_dir(target.parent)
    except OSError as exc:
        raise InputFileError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)


def _place(store: Store, temp: Path, target: Path, entry: FileEntry) -> None:
    """Give the finished copy its name without replacing a file created meanwhile."""
    try:
        os.link(temp, target)  # fails if the name is taken, unlike a rename
    except FileExistsError:
        _existing(store, target, entry)  # fine if identical
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        if not _existing(store, target, entry):  # no hard links here: check, then rename
            os.replace(temp, target)
