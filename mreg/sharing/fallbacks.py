"""Fallback stores: where a registry looks for what it does not have.

A registry may name other registries to fall back on (``fallback.url`` in its
config, and ``MREG_FALLBACK`` for one process). A reference resolves here first,
then in each fallback in order; an object missing here is fetched from the first
fallback that has it, verified against its digest, and cached here atomically.
Fallbacks are never written to. A fallback that fails (unreachable, a bad object)
is skipped for the next one, and named in the error if none succeeds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from mreg.errors import (
    MregError,
    ObjectNotFoundError,
    RemoteError,
    UnknownRefError,
)
from mreg.records.codec import sha256_digest
from mreg.records.limits import MAX_MANIFEST_SIZE
from mreg.records.manifest import Manifest
from mreg.records.names import Digest, Ref, parse_seconds
from mreg.sharing.fetching import WORKERS, fetch_all
from mreg.sharing.locations import open_source, split_locations
from mreg.sharing.sources import DEFAULT_HTTP_TIMEOUT, Source
from mreg.storage.layout import object_key

if TYPE_CHECKING:
    from mreg.records.refs import RefTable
    from mreg.storage.config import Config
    from mreg.storage.objects import ObjectStore

Advance = Callable[[int], None]
T = TypeVar("T")


def _relative_to(project: Path, location: str) -> str:
    if re.match(r"(https?|s3|gs|az)://", location) or Path(location).expanduser().is_absolute():
        return location
    return os.path.normpath(project / location)


MAX_HTTP_TIMEOUT = 3600.0
"""The longest ``http.timeout``: an hour per request (beyond, a socket's deadline overflows)."""


def http_timeout(config: Config) -> float:
    """``http.timeout`` of the config: seconds, above 0 and at most ``MAX_HTTP_TIMEOUT`` (default 30).

    Raises:
        InvalidInputError: it is not such a number (``inf``, ``nan``, ``1e12``, ``0``, words).
    """
    text = config.get("http.timeout")
    if text is None:
        return DEFAULT_HTTP_TIMEOUT
    return parse_seconds(text, "http.timeout in the config", maximum=MAX_HTTP_TIMEOUT, positive=True)


def fetch_object(
    source: Source, digest: Digest, store: ObjectStore, advance: Advance | None = None, *, size: int | None = None
) -> int | None:
    """Copy a stored file (a blob, or an index and its chunks) from ``source``, verified,
    as :func:`mreg.fetching.fetch_all` fetches a transfer's files.

    ``size`` is the file's size when a manifest declares it: no more is read, and
    the fetched file must have exactly that size. Without it the object must be
    small (a manifest: at most ``MAX_MANIFEST_SIZE`` bytes). Returns the number of
    bytes copied (chunks already here are not), or None when ``source`` does not
    have the object.

    Raises:
        RemoteError: the source failed, or sent bytes that do not match the digest,
            the declared size or a valid chunk index; then nothing is kept under
            that digest.
    """
    fetched = fetch_all(source, store, {digest: size}, WORKERS, advance)
    return None if fetched.missing else fetched.bytes


def fetch_manifest(source: Source, digest: Digest, check: Callable[[Manifest], None] | None = None) -> tuple[bytes, Manifest] | None:
    """A manifest's bytes from ``source``, verified, decoded and checked, before anything is stored.

    Returns None when ``source`` does not have it as a blob.
    """
    data = source.read_limited(object_key(digest), MAX_MANIFEST_SIZE)
    if data is None:
        return None
    if sha256_digest(data) != digest:
        raise RemoteError(f"{source.location}: object {digest} does not match its digest there; not cached")
    try:
        manifest = Manifest.decode(data, digest)
        if check is not None:
            check(manifest)
    except MregError as exc:
        raise RemoteError(f"{source.location}: {exc.message}; not cached") from None
    return data, manifest


class Fallbacks:
    """The ordered fallback stores of a registry, opened on first use."""

    def __init__(self, locations: list[str], *, timeout: float = DEFAULT_HTTP_TIMEOUT, config: Config | None = None) -> None:
        self.locations = locations
        self.timeout = timeout
        self.config = config  # a bucket's endpoint and region, from the remote that names it
        self.warnings: list[str] = []  # failures worth telling the user about
        self._sources: list[Source] | None = None

    @classmethod
    def configured(cls, config: Config, project: Path) -> Fallbacks:
        """``MREG_FALLBACK``'s stores, then the config's ``fallback.url`` ones, in order.

        A relative path in the config is relative to ``project``, the directory that
        holds ``.mreg``; one in ``MREG_FALLBACK`` to the current directory.
        """
        configured = [_relative_to(project, url) for url in config.get_all("fallback.url")]
        locations = split_locations(os.environ.get("MREG_FALLBACK", "")) + configured
        return cls(locations, timeout=http_timeout(config), config=config)

    def __bool__(self) -> bool:
        return bool(self.locations)

    def sources(self) -> list[Source]:
        """The fallbacks that could be opened (the others are noted in ``warnings``)."""
        if self._sources is None:
            self._sources = []
            for location in self.locations:
                try:
                    self._sources.append(open_source(location, timeout=self.timeout, config=self.config))
                except RemoteError as exc:
                    self.warnings.append(f"fallback skipped: {exc.message}")
        return self._sources

    def lookup(self, ref: Ref, resolve: Callable[[Ref, RefTable], T]) -> tuple[T, RefTable, str] | None:
        """The first fallback's answer for a named reference (what ``resolve`` finds in its
        refs, the refs, and the fallback's location), or None.

        Raises:
            RemoteError: no fallback resolved it and at least one failed.
        """
        sources = self.sources()
        failures = list(self.warnings)  # fallbacks that could not even be opened
        for source in sources:
            try:
                table = source.table(ref.name)
                if table is not None:
                    return resolve(ref, table), table, source.location
            except UnknownRefError:
                continue
            except MregError as exc:
                failures.append(str(exc))
        if failures:
            raise RemoteError(f"'{ref}' is not in this registry, and " + "; ".join(failures))
        return None

    def fetch(self, digest: Digest, store: ObjectStore, advance: Advance | None = None, *, size: int | None = None) -> None:
        """Fetch an object into ``store`` from the first fallback that has it (see :func:`fetch_object`)."""
        sources = self.sources()
        failures = list(self.warnings)
        for source in sources:
            try:
                if fetch_object(source, digest, store, advance, size=size) is not None:
                    return
            except MregError as exc:
                failures.append(str(exc))
        self._not_found(digest, sources, failures)

    def fetch_manifest(self, digest: Digest, store: ObjectStore, check: Callable[[Manifest], None] | None = None) -> Manifest:
        """A manifest from the first fallback that has it, checked, then cached in ``store``.

        A manifest that fails ``check`` (or decoding) is not kept.
        """
        sources = self.sources()
        failures = list(self.warnings)
        for source in sources:
            try:
                found = fetch_manifest(source, digest, check)
            except MregError as exc:
                failures.append(str(exc))
                continue
            if found is not None:
                store.add_bytes(found[0])
                return found[1]
        self._not_found(digest, sources, failures)

    def _not_found(self, digest: Digest, sources: list[Source], failures: list[str]) -> NoReturn:
        if failures:
            raise RemoteError(f"cannot fetch {digest}: " + "; ".join(failures))
        tried = ", ".join(source.location for source in sources) or "no fallback is configured"
        raise ObjectNotFoundError(digest, f"not here, nor in {tried}")

    def tables(self, name: str) -> Iterator[tuple[Source, RefTable]]:
        """Each fallback's refs for a model, where it has the model."""
        for source in self.sources():
            try:
                table = source.table(name)
            except MregError as exc:
                self.warnings.append(str(exc))
                continue
            if table is not None and table.versions:
                yield source, table

    def model_names(self) -> Iterator[tuple[Source, list[str]]]:
        """Each fallback with the models it has."""
        for source in self.sources():
            try:
                yield source, source.model_names()
            except MregError as exc:
                self.warnings.append(str(exc))
