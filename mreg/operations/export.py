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
it is, and any other existing file stops the export before anything is written, as
does every other target that cannot be written (:mod:`export_targets`: a path into
``.git`` or ``.mreg``, both ``f`` and ``f/g``, a link out of the directory). A copy
has no name until it is whole and verified (:mod:`export_files`), so an export that
is killed leaves only complete files; running it again finishes it. A file system
that refuses a write (disk full, read-only) is reported as such
(:class:`~mreg.errors.OutputFileError`), with what was written kept.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mreg.errors import CorruptObjectError
from mreg.operations.export_files import PendingFile, make_directories, output_error, sweep
from mreg.operations.export_targets import existing, plan_export
from mreg.operations.listing import version_view
from mreg.records.reports import ExportReport
from mreg.storage.files import fsync_dir, write_all

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry
    from mreg.store.store import Store

# Errors of os.link that mean "not here" (another file system, no hard links, too many)
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}
T = TypeVar("T")


def export(store: Store, ref: str, directory: str | os.PathLike, *, link: bool = True) -> ExportReport:
    """Write every file of the version ``ref`` names into ``directory``; see the module docstring."""
    view = version_view(store, ref)
    root = Path(directory).absolute()
    plan = plan_export(store, root, view.files)  # every refusal comes before a byte is written
    report = ExportReport(view.name, view.version, root, unchanged=list(plan.unchanged))
    link = link and permissions_protect()
    for directory_path in dict.fromkeys(target.parent for _, target in plan.to_write):
        sweep(directory_path)  # what killed exports left there
    for entry, target in plan.to_write:
        make_directories(target.parent)
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


def _link(store: Store, entry: FileEntry, target: Path) -> bool:
    """Hard-link the object, verified first; False where the file system cannot."""
    problem = store.objects.verify(entry.digest)
    if problem:
        raise CorruptObjectError(entry.digest, problem)
    try:
        os.link(store.objects.object_path(entry.digest), target)
    except FileExistsError:
        return existing(store, target, entry)  # written meanwhile: fine if identical
    except OSError as exc:
        if exc.errno in _CANNOT_LINK:
            return False
        raise output_error(target, exc) from None
    return True


def _copy(store: Store, entry: FileEntry, target: Path) -> None:
    """Write a verified, writable copy that gets its name only when whole (so nothing is overwritten).

    Only the writes are the destination's failures; a failed read is the store's, reported as such.
    """
    hasher = hashlib.sha256()
    with _writing(target, PendingFile, target.parent) as pending:
        for block in store.objects.iter_bytes(entry.digest):  # each blob verified
            hasher.update(block)
            _writing(target, write_all, pending.fd, block)
        _writing(target, os.fsync, pending.fd)
        if "sha256:" + hasher.hexdigest() != entry.digest:
            raise CorruptObjectError(entry.digest, "its chunks do not add up to the file")
        _writing(target, _place, store, pending, target, entry)
    _writing(target, fsync_dir, target.parent)


def _writing(target: Path, write: Callable[..., T], *args: Any) -> T:
    """``write(*args)``, a write towards ``target``: the file system's refusal becomes an OutputFileError."""
    try:
        return write(*args)
    except OSError as exc:
        raise output_error(target, exc) from None


def _place(store: Store, pending: PendingFile, target: Path, entry: FileEntry) -> None:
    """Give the finished copy its name without replacing a file created meanwhile."""
    try:
        pending.link(target)  # fails if the name is taken, unlike a rename
    except FileExistsError:
        existing(store, target, entry)  # fine if identical
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK or pending.temp is None:
            raise
        if not existing(store, target, entry):  # no hard links here: check, then rename
            pending.rename(target)
