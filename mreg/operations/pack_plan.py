"""What ``mreg pack`` does to each chunk: which to pack, against which bases, and how deep.

Only the chunks of files stored as chunks (tensors, and the glue between them) are
packed; manifests, notes, indexes and whole small files never are. A chunk is *hot*
when the newest version of its model (``latest`` and the highest precedence), or a
tagged one, lists it: hot chunks stay raw, memory-mapped at load, unless ``--all``.

**Bases.** A cold chunk is tried against the chunk that holds the same tensor (same
name, dtype and shape; glue: same place and size in the same file) in the version
that *succeeds* its own in the model, then in its lineage parents' versions, and
alone: the smallest record wins (:func:`mreg.storage.pack_codec.encode_best`).
Successors, not predecessors, as git's reverse deltas: the newest version is raw, the
one before it decodes in one step against it, and older ones in more; when a new
version arrives only its predecessor is packed, and no record is rewritten.

**Depth.** A raw blob is depth 0, a standalone record 1, a delta one more than its
base. A base is used only if the delta stays within ``pack.depth`` (default 10), and
never if its chain leads back to the chunk (chunks are shared between versions and
models, so a loop could otherwise form). As new versions push old chains deeper, a
record that would pass the limit is re-encoded alone (a keyframe). A record whose
base no version lists any more (after ``mreg rm``) is re-encoded against today's.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import MregError, ObjectNotFoundError
from mreg.formats.containers import DTYPES, FormatError, header_length, is_safetensors_name, parse_safetensors
from mreg.operations.maintenance import local_manifest
from mreg.records.names import Digest
from mreg.storage.blobs import SegmentReader
from mreg.storage.pack_layout import CorruptPackError, PackHeader, read_header
from mreg.storage.packed import MAX_CHAIN

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry
    from mreg.store.store import Store

MIN_PACK_SIZE = 4 << 10  # smaller chunks save too little to be worth a record

Key = tuple[object, ...]
"""What identifies a chunk's content across versions: a tensor's name, dtype and shape, or a place in a file."""


class FileChunk(NamedTuple):
    key: Key
    digest: Digest
    size: int
    itemsize: int | None  # None: the file's layout does not say (the encoder guesses)


@dataclass
class Chunk:
    """One chunk some version lists, as it is stored now and as it is to be."""

    digest: Digest
    size: int
    itemsize: int | None
    hot: bool = False
    raw: bool = True  # stored raw now
    record: PackHeader | None = None  # its record's header, when stored packed (too)
    candidates: list[Digest] = field(default_factory=list)  # bases to try, best first
    action: str = ""  # "encode", "keep", "unpack", "" (stays as it is)
    bases: list[Digest] = field(default_factory=list)  # the candidates an "encode" may use


@dataclass
class Plan:
    chunks: dict[Digest, Chunk] = field(default_factory=dict)  # newest versions' chunks first
    live: set[Digest] = field(default_factory=set)  # every chunk a version lists
    problems: list[str] = field(default_factory=list)

    def depth(self, digest: Digest, memo: dict[Digest, int], trail: frozenset[Digest] = frozenset()) -> int:
        """Decode steps a read of ``digest`` will take once the plan is carried out (at most:
        an "encode" may end up standalone, or raw)."""
        if digest in memo:
            return memo[digest]
        chunk = self.chunks.get(digest)
        if digest in trail or len(trail) > MAX_CHAIN:
            return MAX_CHAIN + 1  # a loop: never within a limit
        if chunk is None or chunk.action == "unpack" or (chunk.action == "" and chunk.record is None):
            found = 0
        elif chunk.action == "encode":
            found = 1 + max((self.depth(base, memo, trail | {digest}) for base in chunk.bases), default=0)
        elif chunk.record is not None and chunk.record.base is not None:
            found = 1 + self.depth(Digest(chunk.record.base), memo, trail | {digest})
        else:
            found = 1
        memo[digest] = found
        return found

    def reaches(self, start: Digest, target: Digest) -> bool:
        """Does decoding ``start`` (once planned) go through ``target``?"""
        stack, seen = [start], set()
        while stack:
            digest = stack.pop()
            if digest == target:
                return True
            if digest in seen:
                continue
            seen.add(digest)
            chunk = self.chunks.get(digest)
            if chunk is None:
                continue
            if chunk.action == "encode":
                stack += chunk.bases
            elif chunk.action == "keep" and chunk.record is not None and chunk.record.base is not None:
                stack.append(Digest(chunk.record.base))
        return False


def make_plan(store: Store, *, include_hot: bool, limit: int) -> Plan:
    """Every chunk's fate: see the module's docstring."""
    plan = Plan()
    keys, parents, order = _versions(store, plan, include_hot)
    for place in order:  # newest first: a successor is decided before the versions it helps
        model, position = place
        related = [keys.get((model, position + 1)), *(keys.get(parent) for parent in parents.get(place, ()))]
        for key, digest in keys[place].items():
            chunk = plan.chunks[digest]
            for other in related:
                base = other.get(key) if other else None
                if base is not None and base != digest and base not in chunk.candidates and plan.chunks[base].size == chunk.size:
                    chunk.candidates.append(base)
    for chunk in plan.chunks.values():
        _decide(plan, chunk, limit)
    _keyframes(plan, limit)
    return plan


def _versions(store: Store, plan: Plan, include_hot: bool) -> tuple[dict[tuple[str, int], dict[Key, Digest]], dict[tuple[str, int], list], list]:
    """Each version's chunks by key, its lineage parents' places, and the places newest first."""
    keys: dict[tuple[str, int], dict[Key, Digest]] = {}
    lineage: dict[tuple[str, int], tuple[Digest, ...]] = {}
    place_of: dict[Digest, tuple[str, int]] = {}
    described: dict[Digest, list[FileChunk]] = {}
    order = []
    for name in store.refs.names():
        try:
            table = store.refs.read(name)
        except MregError as exc:
            plan.problems.append(f"model '{name}' is skipped: {exc}")
            continue
        hot = {table.latest, table.highest, *table.tags.values()}
        for position, (version, digest) in reversed(list(enumerate(table.versions.items()))):
            place = (name, position)
            place_of[digest] = place
            try:
                manifest = local_manifest(store, digest)
            except ObjectNotFoundError:
                continue  # only a fallback has it: nothing of it is stored here to pack
            except MregError as exc:
                plan.problems.append(f"{name}@{version} is skipped: {exc}")
                continue
            order.append(place)
            lineage[place] = manifest.lineage.parents
            keys[place] = {}
            for entry in manifest.files:
                for item in _described(store, entry, described, plan):
                    plan.live.add(item.digest)
                    if item.size < MIN_PACK_SIZE:
                        continue
                    chunk = plan.chunks.setdefault(item.digest, Chunk(item.digest, item.size, item.itemsize))
                    chunk.hot = chunk.hot or (version in hot and not include_hot)
                    keys[place][item.key] = item.digest
    parents = {place: [place_of[p] for p in found if p in place_of] for place, found in lineage.items()}
    for whole in [digest for digest, chunks in described.items() if not chunks]:
        plan.chunks.pop(whole, None)  # a chunk that is also a file stored whole stays raw: paths link to it
    for chunk in plan.chunks.values():
        _look(store, chunk, plan)
    return keys, parents, order


def _described(store: Store, entry: FileEntry, described: dict[Digest, list[FileChunk]], plan: Plan) -> list[FileChunk]:
    """The chunks of a stored file with their keys (none for a file stored whole), described once."""
    if entry.digest not in described:
        try:
            described[entry.digest] = list(file_chunks(store, entry)) if store.objects.is_chunked(entry.digest) else []
        except MregError as exc:
            plan.problems.append(f"file {entry.digest} is skipped: {exc}")
            described[entry.digest] = []
    return described[entry.digest]


def file_chunks(store: Store, entry: FileEntry) -> Iterator[FileChunk]:
    """A chunked file's chunks, each with its key and element size from the file's layout."""
    chunks = store.objects.chunks(entry.digest)
    tensors = _tensors(store, entry) if is_safetensors_name(entry.path) else None
    start = 0
    for digest, size in chunks:
        end = start + size
        if tensors is None:
            yield FileChunk(("at", entry.path, start, size), digest, size, None)
        elif (start, end) in tensors:
            name, code, shape = tensors[(start, end)]
            yield FileChunk(("tensor", name, code, shape), digest, size, max(1, DTYPES[code][0] // 8))
        else:
            yield FileChunk(("glue", entry.path, start, size), digest, size, _glue_itemsize(tensors, start, end))
        start = end


def _tensors(store: Store, entry: FileEntry) -> dict[tuple[int, int], tuple[str, str, tuple[int, ...]]] | None:
    """Each tensor of a stored safetensors file by its span, from the file's header; None if unreadable."""
    with io.BufferedReader(SegmentReader(store.objects.segments(entry.digest))) as stream:
        try:
            prefix = stream.read(8)
            layout = parse_safetensors(prefix + stream.read(header_length(prefix)), entry.size)
        except FormatError:
            return None
    return {(t.start, t.end): (t.name, t.dtype, t.shape) for t in layout.tensors}


def _glue_itemsize(tensors: dict[tuple[int, int], tuple[str, str, tuple[int, ...]]], start: int, end: int) -> int:
    """The element size covering most of a glue chunk's bytes (1 for a header alone)."""
    weight: Counter[int] = Counter()
    for (first, last), (_, code, _) in tensors.items():
        overlap = min(end, last) - max(start, first)
        if overlap > 0:
            weight[max(1, DTYPES[code][0] // 8)] += overlap
    return weight.most_common(1)[0][0] if weight else 1


def _look(store: Store, chunk: Chunk, plan: Plan) -> None:
    """Note how a chunk is stored now: raw, packed (its record's header), or both."""
    objects = store.objects
    chunk.raw = objects.object_path(chunk.digest).is_file()
    try:
        with open(objects.pack_path(chunk.digest), "rb") as stream:
            chunk.record = read_header(stream.read(64), digest=chunk.digest)
        if chunk.record.size != chunk.size:
            raise CorruptPackError(chunk.digest, f"declares {chunk.record.size} bytes, but {chunk.size} are expected")
    except FileNotFoundError:
        chunk.record = None
    except CorruptPackError as exc:
        plan.problems.append(exc.message)
        chunk.record = None if chunk.raw else PackHeader(0, 1, chunk.size, None)  # left alone: fsck reports it


def _decide(plan: Plan, chunk: Chunk, limit: int) -> None:
    """Keep, encode or unpack one chunk (chunks come newest first)."""
    if chunk.hot:
        chunk.action = "unpack" if chunk.record is not None else ""
        return
    record = chunk.record
    if record is not None and (record.base is None or Digest(record.base) in plan.live):
        chunk.action = "keep"
        return
    chunk.action = "encode"
    memo: dict[Digest, int] = {}
    chunk.bases = [base for base in chunk.candidates if plan.depth(base, memo) < limit and not plan.reaches(base, chunk.digest)]


def _keyframes(plan: Plan, limit: int) -> None:
    """Re-encode alone the records whose chains now pass the limit (old chains grow deeper
    as new versions are packed in front of them): in each chain the first record past the
    limit, whose base is within it, then again, until none passes."""
    while True:
        memo: dict[Digest, int] = {}
        over = [chunk for chunk in plan.chunks.values() if chunk.action in ("keep", "encode") and plan.depth(chunk.digest, memo) > limit]
        if not over:
            return
        first = [chunk for chunk in over if _base_depth(plan, chunk, memo) <= limit]
        for chunk in first or over:  # none first: a loop (another store's records), broken everywhere
            chunk.action, chunk.bases = "encode", []


def _base_depth(plan: Plan, chunk: Chunk, memo: dict[Digest, int]) -> int:
    """The depth of the deepest base a chunk's record uses (0: none)."""
    if chunk.action == "encode":
        return max((plan.depth(base, memo) for base in chunk.bases), default=0)
    return plan.depth(Digest(chunk.record.base), memo) if chunk.record is not None and chunk.record.base is not None else 0
