"""Decoding many packed objects at once, each record once: their chains walked as a forest.

Reading one packed object decodes its whole chain; checking every version's chunks
that way would decode an old chain once per record on it. Here the records to read,
with the bases they lead to, form a forest whose roots are standalone records or
records against a raw blob: each tree is decoded from its root down, every record
against its base's bytes just decoded (a base is kept in memory only while another of
its dependents is still to come), and each result is checked against its name before
the caller sees it. fsck and a push to a bucket read packs this way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from mreg.errors import MregError
from mreg.records.codec import sha256_digest
from mreg.records.names import Digest
from mreg.storage import pack_codec
from mreg.storage.layout import PACK_SUFFIX
from mreg.storage.pack_layout import BASE_HEADER, CorruptPackError, PackHeader, read_header
from mreg.storage.packed import MAX_CHAIN, blob_bytes, blob_path
from mreg.storage.threads import in_parallel

Visit = Callable[[Digest, Any, bytes], None]
"""Told each wanted object's name, its decoded bytes (checked against the name) and its record."""


def decode_all(objects_dir: str, wanted: Iterable[Digest], visit: Visit, *, workers: int = 2) -> dict[Digest, str]:
    """Decode every packed object of ``wanted`` (others are ignored), calling ``visit`` with its
    bytes; returns the problem of each that could not be decoded, by name.

    The trees of the forest are decoded on ``workers`` threads; ``visit`` may be called
    from any of them.
    """
    problems: dict[Digest, str] = {}
    headers: dict[Digest, PackHeader] = {}
    wanted = [digest for digest in wanted if _record_path(objects_dir, digest) is not None]
    for digest in wanted:
        current: Digest | None = digest
        for _ in range(MAX_CHAIN + 1):
            if current is None or current in headers or current in problems or _record_path(objects_dir, current) is None:
                break
            try:
                headers[current] = _header(objects_dir, current)
            except MregError as exc:
                problems[current] = exc.message
                break
            base = headers[current].base
            current = Digest(base) if base is not None and _record_path(objects_dir, Digest(base)) is not None else None
    children: dict[Digest, list[Digest]] = {}
    roots = []
    for digest, header in headers.items():
        if header.base is not None and Digest(header.base) in headers:
            children.setdefault(Digest(header.base), []).append(digest)
        else:
            roots.append(digest)
    wanted_set = set(wanted)
    done: set[Digest] = set()

    def tree(root: Digest) -> None:
        header = headers[root]
        try:
            base = blob_bytes(objects_dir, Digest(header.base), header.size) if header.base is not None else None
        except MregError as exc:
            _fail(root, f"its base {header.base} cannot be read ({exc})")
            return
        stack: list[tuple[Digest, Any]] = [(root, base)]
        while stack:
            digest, base = stack.pop()
            done.add(digest)
            try:
                data, record = _decoded(objects_dir, digest, headers[digest], base)
            except MregError as exc:
                _fail(digest, exc.message.partition(": ")[2] or exc.message)
                continue
            if digest in wanted_set:
                visit(digest, data, record)
            stack += [(child, data) for child in children.get(digest, ())]

    def _fail(digest: Digest, problem: str) -> None:
        problems[digest] = problem
        todo = list(children.get(digest, ()))
        while todo:  # every record below it needs its bytes
            child = todo.pop()
            done.add(child)
            problems[child] = f"its base {digest} does not decode"
            todo += children.get(child, ())

    in_parallel(tree, sorted(roots, key=lambda root: -headers[root].size), workers)
    for digest in headers:  # in no tree: a loop of records
        if digest not in done and digest not in problems:
            problems[digest] = "its packed record is in a chain of deltas that loops"
    return {digest: problem for digest, problem in problems.items() if digest in wanted_set}


def _record_path(objects_dir: str, digest: Digest) -> str | None:
    """The record of a blob stored packed only (None: raw, or not here)."""
    path = blob_path(objects_dir, digest)
    return path + PACK_SUFFIX if not os.path.isfile(path) and os.path.isfile(path + PACK_SUFFIX) else None


def _header(objects_dir: str, digest: Digest) -> PackHeader:
    with open(blob_path(objects_dir, digest) + PACK_SUFFIX, "rb") as stream:
        return read_header(stream.read(BASE_HEADER), digest=digest)


def _decoded(objects_dir: str, digest: Digest, header: PackHeader, base: Any) -> tuple[Any, bytes]:
    """A record decoded against ``base`` (its base's bytes, already checked), checked against
    its name; and the record."""
    with open(blob_path(objects_dir, digest) + PACK_SUFFIX, "rb") as stream:
        record = stream.read(header.size + pack_codec.HEADER_MAX + 1)
    if len(record) > header.size + pack_codec.HEADER_MAX:
        raise CorruptPackError(digest, f"is larger than its {header.size} bytes allow")
    out = pack_codec.scratch(header.size)
    pack_codec.decode_into(record, out, base=base, base_digest=header.base, digest=digest)
    if sha256_digest(out) != digest:
        raise CorruptPackError(digest, "decodes to bytes that do not match its digest")
    return out, record
