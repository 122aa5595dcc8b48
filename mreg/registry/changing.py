"""Registering versions and moving refs: add, tag, note, remove, the config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mreg.operations import tagging
from mreg.records.refs import UNSET

if TYPE_CHECKING:
    from mreg.operations.inputs import FileSource
    from mreg.records.card_field import CardInput
    from mreg.records.manifest import Dataset, Framework
    from mreg.records.names import Digest
    from mreg.records.notes import NoteChange
    from mreg.records.versions import Bump
    from mreg.records.views import (
        AddResult,
        TagChange,
    )
    from mreg.storage.config import Config
    from mreg.storage.threads import ProgressReport
    from mreg.store.store import Store


class Changing:
    """:class:`~mreg.registry.Registry` methods. Writing: versions, tags, notes, removals and the config."""

    store: Store

    def add(
        self,
        spec: str,
        files: Sequence[FileSource],
        *,
        bump: Bump | None = None,
        family: str | None = None,
        framework: str | Framework | None = None,
        architecture: str | None = None,
        input_shape: str | Sequence[int] | None = None,
        metrics: Mapping[str, float] | None = None,
        properties: Mapping[str, Any] | None = None,
        datasets: Iterable[str | Dataset] = (),
        parents: Iterable[str] = (),
        message: str = "",
        tags: Iterable[str] = (),
        author: str | None = None,
        progress: ProgressReport | None = None,
        card: CardInput | None = None,
        inherit: bool = True,
        sign: bool = False,
        key: str | None = None,
    ) -> AddResult:
        """Register files as a new version of a model.

        Args:
            spec: ``NAME@VERSION``, or ``NAME`` together with ``bump``.
            files: files, directories (added recursively) or :class:`Blob` objects.
            bump: ``"major"``, ``"minor"`` or ``"patch"``: the next version after the
                highest existing one, which (unless ``inherit`` is False, or ``parents``
                are given) becomes its parent and lends it what it does not say itself:
                family, framework, architecture, input shape and properties (never
                metrics, datasets or the message).
            parents: references or digests of the versions this one derives from.
            tags: tags to point at the new version.
            progress: called as ``progress(done, total)`` while bytes are stored.
            card: the version's :class:`~mreg.records.card.ModelCard` (or its fields as
                a dict), stored under the metadata key ``card``.
            sign: sign the registration with an SSH key (``key``, else ``user.signingkey``),
                in the change that registers the version (see :meth:`sign`).

        A single directory holding a MONAI bundle (``configs/metadata.json``) is read
        and checked first, and its metadata fills in whatever is not given here:
        version, message, framework, architecture, input shape, metrics, metadata
        and the model card (see docs/monai.md).

        Returns:
            The new version's digest; ``created`` is False when an identical version
            already existed (re-adding is a no-op).

        Raises:
            VersionConflictError: the version exists with other files or metadata, or was
                removed: a version number never names other bytes (the same content restores it).
            InvalidInputError: a name, version, tag or metadata value is invalid.
            InputFileError: a file is missing or unreadable.
        """
        from mreg.operations.inputs import (
            version_details,  # start-up: only writers read weight files
        )
        from mreg.operations.register import register  # start-up: as version_details

        details = version_details(
            family=family,
            framework=framework,
            architecture=architecture,
            input_shape=input_shape,
            metrics=metrics,
            properties=properties,
            datasets=datasets,
            message=message,
            card=card,
        )
        return register(
            self.store, spec, files, bump=bump, details=details, parents=parents, tags=tags, author=author, progress=progress,
            inherit=inherit, sign=sign, key=key,
        )

    def tag(self, ref: str, tag: str, *, expected: str | None = UNSET, sign: bool = False, key: str | None = None) -> TagChange:
        """Point ``tag`` at the version ``ref`` names, creating or moving it.

        With ``expected`` the move is a compare-and-swap: it happens only if the tag
        currently points at that version (None: only if the tag does not exist). A tag
        protected by ``protect.TAG.approvals`` moves only to a version with that many
        approvals from distinct allowed signers. ``sign`` signs the move (``key``, else
        ``user.signingkey``).

        Raises:
            RefChangedError: the tag did not point where ``expected`` said.
            ProtectedTagError: the tag is protected and the version lacks what it needs
                (the message says exactly what).
        """
        return tagging.tag(self.store, ref, tag, expected=expected, sign=sign, key=key)

    def untag(self, name: str, tag: str, *, expected: str | None = UNSET) -> TagChange:
        """Remove a tag from a model (with ``expected``, only if it points there)."""
        return tagging.untag(self.store, name, tag, expected=expected)

    def note(
        self,
        ref: str,
        *,
        message: str | None = None,
        metrics: Mapping[str, float] | None = None,
        deprecated: str | None = None,
        undeprecate: bool = False,
        remove: bool = False,
        expected: Digest | None = UNSET,
    ) -> NoteChange:
        """Add to or change the note on the version ``ref`` names (see :mod:`mreg.operations.notes`).

        ``message`` replaces the note's text, ``metrics`` add to its evaluation metrics,
        ``deprecated`` gives a reason to stop using the version (``undeprecate`` withdraws
        it), ``remove`` drops the whole note. With ``expected`` (a note digest, None for
        no note) the change is a compare-and-swap. The note is ``get(ref).note``.

        Raises:
            RefChangedError: the note was not ``expected``.
            NotFoundError: ``remove`` without a note.
        """
        from mreg.operations.notes import (  # start-up: only `mreg note` writes notes
            NoteEdit,
            annotate,
        )

        return annotate(self.store, ref, NoteEdit(message, metrics, deprecated, undeprecate, remove), expected=expected)

    def remove(self, spec: str, *, message: str = "") -> Digest:
        """Remove ``NAME@VERSION``: its tags go too and ``latest`` is recomputed.

        A tombstone stays: the version number never names other bytes (adding the same
        content again restores it). Its objects stay until :meth:`gc`. Returns the
        removed manifest's digest.
        """
        return tagging.remove(self.store, spec, message=message)

    @property
    def config(self) -> Config:
        """The registry's config (read once per Registry object)."""
        return self.store.config

    def set_config(self, key: str, value: str | None, *, add: bool = False) -> None:
        """Change the config as ``mreg config`` does: set a key, ``add`` a repeated value,
        or unset every value (``value`` None)."""
        self.store.set_config(key, value, add=add)
