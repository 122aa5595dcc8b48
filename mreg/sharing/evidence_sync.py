"""Signatures in push, pull and clone: checked before anything is copied, stored before the refs.

A signature travels with the version it signs: the source's ref table files it
(``signature MANIFEST OBJECT``); each one the destination lacks is read bounded,
checked against its digest, decoded, and its statement parsed and bound to the version
it is filed under (same model, version and manifest digest), then checked by the
receiving side (``check``: the signature verifies). Any failure refuses the whole
transfer before anything is copied. The objects land before the refs that name them;
signatures are only ever added, so nothing here can conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from mreg.errors import MregError, RemoteError
from mreg.records.codec import sha256_digest
from mreg.records.evidence import MAX_SIGNATURE_OBJECT, SignedStatement
from mreg.storage.layout import object_key
from mreg.storage.threads import in_parallel

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.records.refs import RefTable
    from mreg.sharing.sources import Source
    from mreg.signing.statement import Statement

Check = Callable[[SignedStatement, "Statement"], None]
"""The receiver's check of a signature that arrives (raises SignatureError)."""


class SignatureHome(Protocol):
    """Where a transfer stores signature objects (the ref tables file them)."""

    def signature_bytes(self, digest: Digest) -> bytes | None:
        """A signature object's bytes there (verified), or None when it lacks it."""

    def add_signature_object(self, data: bytes) -> None:
        """Store a signature object (create-only)."""


class SignatureSync:
    """The signatures a transfer brings along (see the module docstring)."""

    def __init__(
        self, source: Source, home: SignatureHome, tables: Mapping[str, RefTable], ours: Mapping[str, RefTable], check: Check | None
    ) -> None:
        self.source, self.home, self.check = source, home, check
        self.tables, self.ours = tables, ours
        self.new = {name: sorted(table.signatures - ours[name].signatures) for name, table in tables.items()}
        self._objects: dict[Digest, tuple[bytes, SignedStatement, Statement]] = {}

    def problems(self) -> list[str]:
        """Read and check every signature the destination lacks; what is wrong with them."""
        wanted = [(name, target, digest) for name, pairs in self.new.items() for target, digest in pairs]
        errors: dict[Digest, str] = {}

        def fetch(item: tuple[str, Digest, Digest]) -> None:
            try:
                self._fetch(*item)
            except MregError as exc:
                errors[item[2]] = exc.message

        in_parallel(fetch, wanted, getattr(self.source, "readers", 1))
        return [errors[digest] for _, _, digest in wanted if digest in errors]

    def for_target(self, name: str, target: Digest) -> list[tuple[Digest, SignedStatement]]:
        """Every signature of a manifest once the transfer is done: the destination's and the incoming ones."""
        found = []
        for digest in sorted({d for t, d in self.ours[name].signatures | frozenset(self.new.get(name, ())) if t == target}):
            if digest in self._objects:
                found.append((digest, self._objects[digest][1]))
                continue
            data = self.home.signature_bytes(digest)
            if data is not None:
                found.append((digest, SignedStatement.decode(data, digest)))
        return found

    def copy(self) -> tuple[int, int]:
        """Store the new signature objects the destination lacks (before the refs that file
        them); return (objects, bytes) copied."""
        objects = size = 0
        for digest, (data, _, _) in sorted(self._objects.items()):
            if self.home.signature_bytes(digest) is None:
                self.home.add_signature_object(data)
                objects, size = objects + 1, size + len(data)
        return objects, size

    def _fetch(self, name: str, target: Digest, digest: Digest) -> None:
        """Read one incoming signature object and check it is what its place says it is."""
        where = self.source.location
        data = self.source.read_limited(object_key(digest), MAX_SIGNATURE_OBJECT)
        if data is None:
            raise RemoteError(f"{where} lacks signature object {digest}, which the refs of '{name}' name")
        if sha256_digest(data) != digest:
            raise RemoteError(f"{where}: signature object {digest} does not match its digest; refused")
        from mreg.signing.statement import Statement  # start-up: a transfer without signatures never parses one

        try:
            signed = SignedStatement.decode(data, digest)
            statement = Statement.parse(signed.statement)
        except MregError as exc:
            raise RemoteError(f"{where}: signature object {digest[:15]} is malformed ({exc.message}); refused") from None
        version = self.tables[name].version_of(target)
        if (statement.model, statement.version, statement.manifest) != (name, version, target):
            raise RemoteError(
                f"{where}: signature {digest[:15]} is filed under {name}@{version} ({target[:15]}) but signs "
                f"{statement.model}@{statement.version} ({statement.manifest[:15]}); refused"
            )
        if self.check is not None:
            try:
                self.check(signed, statement)
            except MregError as exc:
                what = f"the {statement.kind} signature of {name}@{version} by {statement.principal}"
                raise RemoteError(f"{where}: {what} does not verify ({exc.message}); refused") from None
        self._objects[digest] = (data, signed, statement)
