"""Other registries and the health of this one: push, pull, clone, diff, du, fsck, gc, pack."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mreg.operations.diff import TensorComparer
    from mreg.records.diffs import VersionDiff
    from mreg.records.packing import PackReport
    from mreg.records.reports import FsckReport, GcReport, UsageReport
    from mreg.records.transfer_report import TransferReport
    from mreg.registry import Registry
    from mreg.storage.threads import ProgressReport
    from mreg.store.store import Store


class Sharing:
    """:class:`~mreg.registry.Registry` methods. Other registries, comparisons and upkeep: push, pull, clone, diff, du, fsck, gc, pack."""

    store: Store

    def diff(self, old: str, new: str, *, compare_tensors: TensorComparer | bool | None = None) -> VersionDiff:
        """What changed between two versions.

        ``compare_tensors`` compares weight files tensor by tensor: True by their bytes
        (no torch), or a comparer (``mreg.pytorch.diff`` passes torch's); None or False
        compares files by digest only.
        """
        from mreg.operations.diff import (
            diff_versions,  # start-up: only `mreg diff` compares
        )

        return diff_versions(self.store, old, new, compare_tensors=compare_tensors)

    def disk_usage(self) -> UsageReport:
        """Registered (logical) bytes against stored bytes, per model and in total."""
        from mreg.operations.usage import (
            disk_usage,  # start-up: only `mreg du` measures
        )

        return disk_usage(self.store)

    def pull(
        self,
        source: str,
        names: Sequence[str] = (),
        *,
        force: bool = False,
        progress: ProgressReport | None = None,
        require_signed: bool | None = None,
    ) -> TransferReport:
        """Copy models from another registry (a path, an http(s) URL, a bucket URL or a remote name).

        What arrives is checked against this registry's trust root and policy: a protected
        tag moves only with its approvals; ``require_signed`` (default: the config's
        ``pull.requiresigned``) refuses versions without a valid registration signature;
        a source whose history rewrites what was pulled from it before is refused.
        """
        from mreg.operations.remotes import (
            pull,  # start-up: only transfers load the sources
        )

        return pull(self.store, source, names, force=force, progress=progress, require_signed=require_signed)

    def push(
        self, destination: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
    ) -> TransferReport:
        """Copy models into another registry: a path, a bucket URL (s3://, gs://, az://) or a remote name."""
        from mreg.operations.remotes import (
            push,  # start-up: only transfers load the sources
        )

        return push(self.store, destination, names, force=force, progress=progress)

    def pack(self, *, all: bool = False, dry_run: bool = False, progress: ProgressReport | None = None) -> PackReport:
        """Re-encode the cold chunks of every model as packed records (lossless: deltas
        against the same tensor of the next version, or alone), keeping each chunk's
        name; the newest version of each model and tagged ones stay raw unless ``all``.
        ``dry_run`` changes nothing and estimates the saving from samples. See
        :mod:`mreg.operations.packing` and docs/packs.md."""
        from mreg.operations.packing import (
            pack,  # start-up: only `mreg pack` plans packs
        )

        return pack(self.store, include_hot=all, dry_run=dry_run, progress=progress)

    def fsck(self, *, repair: bool = False, bucket: str | None = None) -> FsckReport:
        """Verify every object, manifest and ref; ``repair`` rewrites derived state
        (``info/models``). With ``bucket`` (a URL or a remote's name), check that
        registry instead, changing nothing. See :mod:`mreg.operations.maintenance`."""
        if bucket is not None:
            from mreg.operations.remotes import check_bucket  # start-up: only bucket commands load obstore

            return check_bucket(self.store, bucket)
        from mreg.operations.maintenance import (
            fsck,  # start-up: only fsck reads every object
        )

        return fsck(self.store, repair=repair)

    def gc(self, *, dry_run: bool = False, bucket: str | None = None, grace: timedelta | None = None, pack: bool = False) -> GcReport:
        """Delete unreachable objects and stale temporary files. With ``bucket`` (a URL or a
        remote's name), sweep that registry instead, sparing objects younger than ``grace``.
        With ``pack``, then pack the cold chunks (:meth:`pack`); the report's ``packed`` says how."""
        if pack:
            from mreg.operations.packing import collect_and_pack  # start-up: only `gc --pack` plans packs

            collected, packed = collect_and_pack(self.store, dry_run=dry_run)
            collected.packed = packed
            return collected
        if bucket is not None:
            from mreg.operations.remotes import collect_bucket  # start-up: only bucket commands load obstore

            return collect_bucket(self.store, bucket, grace=grace, dry_run=dry_run)
        from mreg.operations.maintenance import (
            gc,  # start-up: only gc reads every object
        )

        return gc(self.store, dry_run=dry_run)


def fsck_bucket(location: str, *, registry: Registry | None = None) -> FsckReport:
    """Check a registry in a bucket (a URL, or a remote's name in ``registry``), changing nothing."""
    from mreg.operations.remotes import (
        check_bucket,  # start-up: only bucket commands load obstore
    )

    return check_bucket(registry.store if registry is not None else None, location)


def gc_bucket(location: str, *, registry: Registry | None = None, grace: timedelta | None = None, dry_run: bool = False) -> GcReport:
    """Sweep a registry in a bucket (a URL, or a remote's name in ``registry``): objects no
    ref leads to that are older than ``grace`` (default 24 hours) go."""
    from mreg.operations.remotes import (
        collect_bucket,  # start-up: only bucket commands load obstore
    )

    return collect_bucket(registry.store if registry is not None else None, location, grace=grace, dry_run=dry_run)
