"""fsck and gc: prove the store is sound, and reclaim what nothing refers to."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mreg.errors import CorruptRefsError, MregError, ObjectNotFoundError
from mreg.operations import history, notes, pack_check
from mreg.records.manifest import Manifest
from mreg.records.names import Digest, is_digest
from mreg.records.reports import FsckReport, GcReport
from mreg.storage.cache import max_size, trim
from mreg.storage.locks import FileLock
from mreg.storage.refs import LOCK_FILE, TABLE_FILE
from mreg.storage.server_info import INFO_MODELS, read_server_info, write_server_info

if TYPE_CHECKING:
    from mreg.store.store import Store


def fsck(store: Store, *, repair: bool = False) -> FsckReport:
    """Verify every object against its digest, every ref's target and every reachable manifest.

    Also compares ``info/models`` with the refs; ``repair`` rewrites it, and restores
    damaged and missing objects from the fallbacks and remotes (:mod:`repair`). A damaged
    object is reported, never fatal.
    """
    report = FsckReport()
    corrupt = _check_objects(store, report)
    reachable = set()
    for name in store.refs.names():
        reachable |= _check_model(store, name, corrupt, report)
    reachable |= pack_check.check(store, reachable, report)  # packed objects' bases are not dangling
    dangling = len(set(store.objects.iter_digests()) - reachable)
    if dangling:
        report.notes.append(f"{dangling} unreachable object(s); 'mreg gc' removes them")
    report.problems += store.index.problems(store.objects.read_bytes)
    temps = store.objects.temp_files()
    if temps:
        report.notes.append(f"{len(temps)} temporary file(s) from interrupted writes; 'mreg gc' removes them")
    _check_server_info(store, report, repair)
    if repair and not report.ok:
        return _restored(store, corrupt, report)
    return report


def _restored(store: Store, corrupt: set[Digest], report: FsckReport) -> FsckReport:
    """Restore damaged and missing objects from the fallbacks and remotes (:mod:`repair`),
    then check again if any came back; the report says what was restored and what was not."""
    from mreg.operations.repair import restore  # start-up: only fsck --repair of a damaged store

    outcome = restore(store, corrupt)
    final = fsck(store) if outcome.restored else report
    final.notes += outcome.notes
    return final


def _check_server_info(store: Store, report: FsckReport, repair: bool) -> None:
    """``info/models`` must list every model with versions; a name too many is only noted."""
    expected = {name for name in store.refs.names() if _has_versions(store, name)}
    listed = read_server_info(store.refs)
    missing = sorted(expected - set(listed or ()))
    extra = sorted(set(listed or ()) - expected)
    if listed is None and not expected:
        return
    if repair and (missing or extra or listed is None):
        with store.creating_model():
            write_server_info(store.refs)
        report.notes.append(f"rewrote {INFO_MODELS} from the refs")
        return
    if listed is None:
        report.problems.append(f"{INFO_MODELS} is missing or unreadable; 'mreg fsck --repair' rewrites it")
    report.problems += [f"{INFO_MODELS} does not list model '{name}'; 'mreg fsck --repair' rewrites it" for name in missing]
    if extra:
        report.notes.append(f"{INFO_MODELS} lists {len(extra)} model(s) without versions ({', '.join(extra[:5])}); 'mreg fsck --repair' rewrites it")


def _has_versions(store: Store, name: str) -> bool:
    try:
        return bool(store.refs.read(name).versions)
    except MregError:
        return False  # reported with the model


def _verify(store: Store, digest: Digest) -> str | None:
    """An object's problem, or None; a damaged object is a finding, never a crash."""
    objects = store.objects
    try:
        if objects.is_chunked(digest):
            chunks = objects.chunks(digest)
            if not chunks:
                return "its chunk index is empty"
            for chunk, size in chunks:
                actual = objects.object_path(chunk).stat().st_size if objects.object_path(chunk).is_file() else None
                if actual is not None and actual != size:
                    return f"its chunk index gives chunk {chunk} {size} bytes, but it has {actual}"
        return objects.verify(digest)
    except MregError as exc:
        return exc.message
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"


def _check_objects(store: Store, report: FsckReport) -> set[Digest]:
    """Re-hash every object; return the digests of the corrupt ones."""
    objects = store.objects
    corrupt, verified = set(), set()
    # A chunked file is checked chunk by chunk and as a whole in one pass; its
    # chunks need no second pass of their own.
    for digest in objects.iter_chunked():
        problem = _verify(store, digest)
        if problem:
            corrupt.add(digest)
            report.problems.append(f"object {digest} is corrupt: {problem}")
        else:
            verified.update([digest, *(chunk for chunk, _ in objects.chunks(digest))])
    for digest in set(objects.iter_digests()):
        report.objects += 1
        problem = None if digest in verified or digest in corrupt else _verify(store, digest)
        if problem:
            corrupt.add(digest)
            report.problems.append(f"object {digest} is corrupt: {problem}")
    for stray in store.objects.stray_files():
        report.problems.append(f"unexpected file in the object store: {stray}")
    return corrupt


def _check_model(store: Store, name: str, corrupt: set[Digest], report: FsckReport) -> set[Digest]:
    """Check one model's refs, log and manifests; return the objects they reach."""
    try:
        table = store.refs.read(name)
    except (CorruptRefsError, ValueError) as exc:
        report.problems.append(str(exc))
        return set()
    report.models += 1
    report.problems += [f"model '{name}': {problem}" for problem in table.problems()]
    report.problems += store.refs.log(name)[1]
    history.check(store, name, report)  # the hash chain of the log, replayed against the refs
    reachable: set[Digest] = set()
    for version, digest in table.versions.items():
        report.versions += 1
        where = f"{name}@{version} -> {digest}"
        if digest in corrupt or not is_digest(digest):
            reachable |= {digest} if is_digest(digest) else set()  # a damaged manifest is still needed
            continue  # already reported
        if not store.objects.contains(digest):
            report.problems.append(f"{where}: manifest object is missing")
            continue
        try:
            manifest = local_manifest(store, digest)
        except MregError as exc:
            report.problems.append(f"{where}: {exc}")
            continue
        if (manifest.name, manifest.version) != (name, version):
            report.problems.append(f"{where}: manifest is for {manifest.name}@{manifest.version}")
        reachable.add(digest)
        for entry in manifest.files:
            if not store.objects.contains(entry.digest):
                report.problems.append(f"{where}: file '{entry.path}' ({entry.digest}) is missing")
            elif entry.digest in corrupt:
                reachable |= damaged_file_objects(store, entry.digest)  # still needed, as gc counts them
            else:
                try:
                    reachable |= file_objects(store, entry.digest)
                    size = store.objects.size(entry.digest)
                except (MregError, OSError) as exc:
                    report.problems.append(f"{where}: file '{entry.path}': {exc}")
                    continue
                if size != entry.size:
                    report.problems.append(f"{where}: file '{entry.path}' has {size} bytes, but the manifest says {entry.size}")
    noted, problems = notes.check(store, name)
    report.problems += problems
    return reachable | noted | history.signature_objects(store, name, report)


def file_objects(store: Store, digest: Digest) -> set[Digest]:
    """The objects a stored file needs: itself, and its chunks if it is chunked."""
    if store.objects.is_chunked(digest):
        return {digest, *(chunk for chunk, _ in store.objects.chunks(digest))}
    return {digest}


def damaged_file_objects(store: Store, digest: Digest) -> set[Digest]:
    """The objects a damaged file needs, as far as they can be read: its chunks if its
    index still reads (one bad chunk leaves the others needed), else itself."""
    try:
        return file_objects(store, digest)
    except (MregError, OSError):
        return {digest}


def reachable_objects(store: Store) -> set[Digest]:
    """Every object some ref leads to.

    Raises:
        MregError: a ref's manifest cannot be read; gc must not guess what it needs.
    """
    reachable: set[Digest] = set()
    for name in store.refs.names():
        problems = store.refs.read(name).problems()
        if problems:
            raise CorruptRefsError(f"refs of '{name}' are damaged ({problems[0]}); run 'mreg fsck'")
        reachable |= model_objects(store, name)
    return reachable


def model_objects(store: Store, name: str) -> set[Digest]:
    """Every object the versions of one model lead to: manifests, files, chunks, notes."""
    found: set[Digest] = notes.reachable(store, name) | history.signature_objects(store, name)
    for digest in store.refs.read(name).versions.values():
        found.add(digest)
        for entry in local_manifest(store, digest).files:
            if store.objects.contains(entry.digest):  # a missing file needs nothing here
                found |= file_objects(store, entry.digest)
    return found


def local_manifest(store: Store, digest: Digest) -> Manifest:
    """A manifest stored here; fsck and gc never fetch (gc holds the store lock alone).

    Raises:
        ObjectNotFoundError: it is not stored here.
    """
    if not store.objects.contains(digest):
        raise ObjectNotFoundError(digest, "the manifest is not stored here; 'mreg fsck' for details")
    return Manifest.decode(store.objects.read_bytes(digest), digest)


def gc(store: Store, *, dry_run: bool = False) -> GcReport:
    """Delete objects unreachable from any ref, and stale temporary files.

    gc holds the store lock exclusively; every writer holds it shared while it
    writes objects and until its refs are updated, so an object an ``add`` is about
    to reference is never deleted.
    """
    report = GcReport(dry_run)
    cache_limit = max_size(store.config)  # a bad bound stops gc before it deletes anything
    with store.exclusive():
        inventory = store.objects.inventory()
        packed = pack_check.packed_objects(store, inventory.packed)
        reachable = reachable_objects(store)
        reachable |= pack_check.base_closure(packed, reachable)  # a kept packed object keeps its bases
        for digest in pack_check.deletion_order(packed, inventory.digests - reachable):
            report.objects.append(digest)
            report.bytes += store.objects.stored_size(digest)
            if not dry_run:
                store.objects.delete(digest)
        report.cache = trim(store.objects, reachable, cache_limit, dry_run=dry_run).bytes
        temps = store.objects.temp_files()
        report.temp_files = len(temps)
        if not dry_run:
            for temp in temps:
                temp.unlink(missing_ok=True)
            _remove_stale_ref_temps(store)
            _remove_empty_fanouts(store)
    return report


def _remove_stale_ref_temps(store: Store) -> None:
    """Remove ``_refs.tmp`` files left by writers that were killed (under each model's lock)."""
    for temp in store.refs.models_dir.rglob(TABLE_FILE + ".tmp"):
        with FileLock(temp.parent / LOCK_FILE):
            temp.unlink(missing_ok=True)


def _remove_empty_fanouts(store: Store) -> None:
    for entry in os.scandir(store.objects.objects_dir):
        if entry.is_dir():
            try:
                os.rmdir(entry.path)
            except OSError:
                pass  # not empty
