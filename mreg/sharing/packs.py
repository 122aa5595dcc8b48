"""Packed objects from another store: fetched as they are, their bases first, each verified.

A source that stores a chunk packed has ``objects/ab/cdef....pack`` and no raw blob.
The record is fetched as it is (half the bytes of a full fine-tune's chunk) and kept
packed here: the sender chose its encoding, and a store that packs nothing still
reads it. Before it is stored the record must decode to bytes whose SHA-256 is its
name; a delta needs its base for that, which is taken from this store when it has
it, else fetched the same way first (raw or packed, verified, stored), so no record
ever lands here before its base. A record is read bounded by its raw size plus its
header, a chain at most :data:`~mreg.storage.packed.MAX_CHAIN` deep and never in a
loop: a hostile store gets one RemoteError, and nothing of what failed is kept.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from mreg.errors import CorruptObjectError, MregError, ObjectNotFoundError, RemoteError
from mreg.records.codec import sha256_digest
from mreg.records.names import Digest
from mreg.storage import pack_codec, pack_writer
from mreg.storage.layout import PACK_SUFFIX, object_key
from mreg.storage.packed import MAX_CHAIN, blob_bytes

if TYPE_CHECKING:
    from mreg.sharing.sources import Source
    from mreg.storage.objects import ObjectStore

CACHE_BYTES = 256 << 20
"""Decoded chunks a transfer keeps for the records that are deltas against them (a chain
is then decoded once, not once per record on it)."""


class PackFetcher:
    """Fetches blobs a source may store packed into ``store``, bases first, verified."""

    def __init__(self, source: Source, store: ObjectStore) -> None:
        self.source, self.store = source, store
        self.objects_dir = str(store.objects_dir)
        self._received = 0  # bytes fetched (records and raw bases), by any thread
        self._lock = threading.Lock()
        self._decoded: OrderedDict[Digest, Any] = OrderedDict()  # the most recent last
        self._cached = 0

    def local(self, digest: Digest, size: int) -> Any | None:
        """A blob's bytes if this store has it (decoded if packed, and then kept a while), else None."""
        with self._lock:
            if digest in self._decoded:
                self._decoded.move_to_end(digest)
                return self._decoded[digest]
        try:
            data = blob_bytes(self.objects_dir, digest, size)
        except ObjectNotFoundError:
            return None
        except MregError as exc:
            raise RemoteError(f"the base {digest} stored here cannot be read ({exc}); run 'mreg fsck'") from None
        if not isinstance(data, (bytes, mmap.mmap)):
            self._keep(digest, data)
        return data

    def _keep(self, digest: Digest, data: Any) -> None:
        with self._lock:
            if digest in self._decoded or len(data) > CACHE_BYTES:
                return
            self._decoded[digest] = data
            self._cached += len(data)
            while self._cached > CACHE_BYTES:
                _, dropped = self._decoded.popitem(last=False)
                self._cached -= len(dropped)

    def take_received(self) -> int:
        """The bytes fetched since the last call."""
        with self._lock:
            received, self._received = self._received, 0
        return received

    def record(self, digest: Digest, size: int) -> bytes | None:
        """The source's record of a blob of ``size`` bytes, read bounded; None when it has none."""
        record = self.source.read_limited(object_key(digest) + PACK_SUFFIX, size + pack_codec.HEADER_MAX)
        self._count(record)
        return record

    def _count(self, data: bytes | None) -> None:
        if data is not None:
            with self._lock:
                self._received += len(data)

    def fetch_packed(self, digest: Digest, size: int, record: bytes | None = None, trail: tuple[Digest, ...] = ()) -> Any:
        """Store the source's record of ``digest`` here once it decodes to ``digest`` (its base
        first); return the decoded bytes.

        Raises:
            RemoteError: the source has no such record, or it (or a base) does not decode
                to its name; nothing of it is kept.
        """
        where = f"{self.source.location}/{object_key(digest)}{PACK_SUFFIX}"
        if record is None:
            record = self.record(digest, size)
            if record is None:
                raise RemoteError(f"{self.source.location}: object {digest} is missing there")
        try:
            header = pack_codec.read_header(record, digest=digest)
            base = None
            if header.base is not None:
                if header.base in trail or header.base == digest or len(trail) >= MAX_CHAIN:
                    raise RemoteError(f"{where}: its chain of deltas loops or is longer than {MAX_CHAIN}; refused")
                base = self.blob(Digest(header.base), size, (*trail, digest))
            out = pack_codec.scratch(size)
            pack_codec.decode_into(record, out, base=base, base_digest=header.base, digest=digest)
        except CorruptObjectError as exc:
            raise RemoteError(f"{where}: {exc.message}; refused") from None
        if sha256_digest(out) != digest:
            raise RemoteError(f"{where}: it decodes to bytes that do not match its digest; refused")
        pack_writer.install_record(self.store, digest, record)
        self._keep(digest, out)
        return out

    def blob(self, digest: Digest, size: int, trail: tuple[Digest, ...] = ()) -> Any:
        """A blob's ``size`` bytes: this store's, else fetched (raw or packed), verified and stored."""
        found = self.local(digest, size)
        if found is not None:
            return found
        raw = self.source.read_limited(object_key(digest), size)
        self._count(raw)
        if raw is None:
            return self.fetch_packed(digest, size, None, trail)
        if len(raw) != size or sha256_digest(raw) != digest:
            raise RemoteError(f"{self.source.location}: object {digest} does not match its digest there; not cached")
        pack_writer.install_raw(self.store, digest, [raw])
        return raw
