"""fsck for a bucket: check, without changing anything, that every ref leads to what it needs.

Objects are known from one listing of ``objects/`` (a bucket cannot be locked, so this
is a snapshot: a push under way may add objects meanwhile, never remove them). Every
model's ref table must be valid; every version's manifest must be there, match its
digest and be that version's; every file a manifest lists must be there with its size,
either whole or as a chunk index that decodes and whose chunks are all there with their
sizes; every note and signature object a notes table or signature index names must be
there; every log object must be readable and the log's chain intact (a clone refuses
what fsck would pass otherwise); no two models may differ only in case. File bytes
are not downloaded: a pull verifies them as it reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mreg.errors import MregError
from mreg.records.codec import sha256_digest
from mreg.records.limits import MAX_CHUNK_INDEX_SIZE, MAX_MANIFEST_SIZE
from mreg.records.manifest import Manifest, manifest_check
from mreg.records.reports import FsckReport
from mreg.sharing.buckets.client import Bucket, ObjectInfo
from mreg.sharing.buckets.log import check_log
from mreg.sharing.buckets.notes import BucketNotes
from mreg.sharing.buckets.packs import check_packed
from mreg.sharing.buckets.refs import model_names, read_table
from mreg.sharing.buckets.sweep import digest_of
from mreg.storage.chunk_index import decode_chunk_index
from mreg.storage.layout import CHUNKS_SUFFIX, PACK_SUFFIX, object_key

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.storage.config import Config


def check(location: str, config: Config | None, timeout: float) -> FsckReport:
    """Check the registry in a bucket; every problem found is in the report's ``problems``."""
    bucket = Bucket.open(location, config, timeout)
    listed = {key: info for info in bucket.list("objects/") if (key := digest_of(str(info["path"]))) is not None}
    report = FsckReport(objects=len(listed))
    checker = _Checker(bucket, listed, report)
    names = model_names(bucket)
    report.problems += case_twins(names)
    for name in names:
        checker.model(name)
        report.problems += [f"model '{name}': {problem}" for problem in check_log(bucket, name)]
        checker.signatures(name)
    return report


def case_twins(names: list[str]) -> list[str]:
    """Models whose names differ only in case (clones on case-insensitive disks cannot hold both)."""
    seen: dict[str, str] = {}
    found = []
    for name in names:
        twin = seen.setdefault(name.lower(), name)
        if twin != name:
            found.append(f"models '{twin}' and '{name}' differ only in case: a clone cannot hold both; remove one")
    return found


class _Checker:
    def __init__(self, bucket: Bucket, listed: Mapping[tuple[Digest, str], ObjectInfo], report: FsckReport) -> None:
        self.bucket, self.listed, self.report = bucket, listed, report
        self.files: dict[Digest, int] = {}  # files already checked, with their size

    def model(self, name: str) -> None:
        try:
            table = read_table(self.bucket, name)[0]
        except MregError as exc:
            self.report.problems.append(f"model '{name}': {exc}")
            return
        self.report.models += 1
        for version, digest in sorted(table.versions.items()):
            self.report.versions += 1
            try:
                self.version(name, version, digest)
            except MregError as exc:
                self.report.problems.append(f"{name}@{version}: {exc}")
        try:
            notes = BucketNotes(self.bucket).notes(name)
        except MregError as exc:
            self.report.problems.append(f"notes of '{name}': {exc}")
            return
        for head in notes.values():
            if (head, "") not in self.listed:
                self.report.problems.append(f"model '{name}': note object {head} is missing")

    def signatures(self, name: str) -> None:
        """Every signature object a model's ref table names must be there."""
        try:
            index = read_table(self.bucket, name)[0].signatures
        except MregError:
            return  # reported with the model
        for _, digest in sorted(index):
            if (digest, "") not in self.listed:
                self.report.problems.append(f"model '{name}': signature object {digest} is missing")

    def version(self, name: str, version: str, digest: Digest) -> None:
        got = self.bucket.get(object_key(digest), MAX_MANIFEST_SIZE)
        if got is None:
            self.report.problems.append(f"{name}@{version}: manifest {digest} is missing")
            return
        if sha256_digest(got[0]) != digest:
            self.report.problems.append(f"{name}@{version}: manifest {digest} does not match its digest")
            return
        manifest = Manifest.decode(got[0], digest)
        manifest_check(digest, (name, version))(manifest)
        for entry in manifest.files:
            problem = self.file(entry.digest, entry.size)
            if problem:
                self.report.problems.append(f"{name}@{version}: {entry.path}: {problem}")

    def file(self, digest: Digest, size: int) -> str | None:
        """What is wrong with a file (None: nothing), checked once however many versions share it."""
        if self.files.get(digest) == size:
            return None
        whole = self.listed.get((digest, ""))
        if whole is not None:
            found = int(whole.get("size") or 0)
            problem = None if found == size else f"object {digest} has {found} bytes, not {size}"
        elif (digest, CHUNKS_SUFFIX) in self.listed:
            problem = self.chunked(digest, size)
        else:
            problem = f"object {digest} is missing"
        if problem is None:
            self.files[digest] = size
        return problem

    def chunked(self, digest: Digest, size: int) -> str | None:
        got = self.bucket.get(object_key(digest) + CHUNKS_SUFFIX, MAX_CHUNK_INDEX_SIZE)
        if got is None:
            return f"the chunk index of {digest} is missing"
        chunks = decode_chunk_index(got[0], digest)  # CorruptObjectError: it cannot be read
        if sum(n for _, n in chunks) != size:
            return f"the chunks of {digest} add up to {sum(n for _, n in chunks)} bytes, not {size}"
        for chunk, length in chunks:
            info = self.listed.get((chunk, ""))
            if info is None and (chunk, PACK_SUFFIX) in self.listed:
                problem = check_packed(self.bucket, self.listed, chunk)  # its chain, to a base that is there
                if problem is not None:
                    return problem
                continue
            if info is None:
                return f"chunk {chunk} of {digest} is missing"
            if int(info.get("size") or 0) != length:
                return f"chunk {chunk} of {digest} has {info.get('size')} bytes, not {length}"
        return None
