"""Reading the registry: versions, models, queries, history, files."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mreg.errors import InvalidTypeError
from mreg.operations import listing
from mreg.records.names import Digest, validate_name

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry, Manifest
    from mreg.records.refs import LogEntry
    from mreg.records.reports import ExportReport
    from mreg.records.views import (
        ModelSummary,
        ModelVersion,
        VersionEntry,
    )
    from mreg.storage.blobs import Segment
    from mreg.storage.threads import ProgressReport
    from mreg.store.store import Store


class Finding:
    """:class:`~mreg.registry.Registry` methods. Reading: versions, models, queries, history and files."""

    store: Store

    def resolve(self, ref: str) -> Digest:
        """The manifest digest a reference names (here first, then in the fallbacks).

        Raises:
            UnknownRefError: nothing has that name.
            AmbiguousRefError: a digest prefix matches several manifests.
            InvalidRefError: the reference is malformed.
            RemoteError: it is not here and a fallback failed.
        """
        return self.store.resolve(ref)

    def get(self, ref: str) -> ModelVersion:
        """A read-only view of the version ``ref`` names, with its tags and note."""
        return listing.version_view(self.store, ref)

    def manifest(self, digest: str) -> Manifest:
        """Read and validate a manifest by its digest (fetched from a fallback if needed)."""
        return self.store.manifest(digest)

    def manifests(self, digests: Iterable[str]) -> dict[Digest, Manifest]:
        """Many manifests at once, from the metadata index where it has them (queries over
        thousands of versions)."""
        return self.store.manifests(digests)

    def label(self, digest: str) -> str:
        """``name@version (sha256:abcd1234)`` for a manifest, or the bare digest if it is gone."""
        return listing.label(self.store, digest)

    def parent_labels(self, digests: Iterable[str]) -> dict[Digest, list[str]]:
        """The lineage parents of each of these versions, labelled as :meth:`label` does."""
        return listing.parent_labels(self.store, digests)

    def versions(self, name: str) -> list[VersionEntry]:
        """Every version of a model, highest precedence first (fallbacks' included)."""
        return listing.list_versions(self.store, validate_name(name))

    def models(self) -> list[ModelSummary]:
        """Every model with at least one version, sorted by name (fallbacks' included)."""
        return listing.list_models(self.store)

    def query(self, **conditions: Any) -> list[ModelVersion]:
        """Versions matching every condition, optionally ordered by a metric and limited
        (``sort=``, ``reverse=``, ``limit=``); see :func:`mreg.operations.query.select`."""
        import inspect  # start-up: only queries need it

        from mreg.operations.query import (
            select,  # start-up: only queries read many versions
        )

        try:
            inspect.signature(select).bind(self.store, **conditions)
        except TypeError as exc:
            raise InvalidTypeError(f"query: {exc}") from None
        return select(self.store, **conditions)

    def log(self, name: str, limit: int | None = None) -> list[LogEntry]:
        """The model's ref history, newest first; with ``limit``, only that many entries."""
        return listing.history(self.store, validate_name(name), limit)

    def path(self, ref: str, file: str | None = None, *, progress: ProgressReport | None = None) -> Path:
        """The absolute local path of a file with a registered file's exact bytes.

        ``file`` may be omitted when the version has exactly one file. The file is
        read-only and shared: copy it before modifying it. A file only a fallback has
        is fetched and cached here first; a file stored as chunks is assembled (and
        verified) once into ``.mreg/cache/``, which ``gc`` trims to ``cache.maxsize``.
        """
        return listing.local_path(self.store, ref, file, progress=progress)

    def export(self, ref: str, directory: str | os.PathLike[str], *, link: bool = True) -> ExportReport:
        """Write every file of a version into ``directory``, verified (see :mod:`mreg.operations.export`).

        Whole-file objects are hard-linked (read-only) where possible unless ``link`` is
        False; files already there with the same bytes are kept.

        Raises:
            ConflictError: a file exists there with other content (nothing is written).
        """
        from mreg.operations.export import (
            export,  # start-up: only export writes elsewhere
        )

        return export(self.store, ref, directory, link=link)

    def segments(self, entry: FileEntry, *, check: bool = True) -> list[Segment]:
        """The local blobs that hold a registered file's bytes (fetched if needed), in order."""
        return self.store.segments(entry, check=check)

    def file_entry(self, ref: str, file: str | None = None) -> FileEntry:
        """The manifest entry of one file of a version."""
        return listing.file_entry(self.store, ref, file)
