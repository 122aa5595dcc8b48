"""What changed between two versions: metadata, metrics, lineage, files and tensors.

This module compares manifests and knows nothing of torch. Tensor differences
inside weight files come from a comparer passed in by the caller;
:func:`mreg.pytorch.diff` passes the PyTorch adapter's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mreg.formats.containers import is_weights_name
from mreg.records.diffs import (
    FieldChange,
    FileChange,
    MetricChange,
    TensorDiff,
    VersionDiff,
)
from mreg.records.manifest import FileEntry, Manifest

if TYPE_CHECKING:
    from mreg.store.store import Store


TensorComparer = Callable[["Store", FileEntry, FileEntry], TensorDiff]
"""Compares two stored weight files tensor by tensor."""


def diff_versions(store: Store, old_ref: str, new_ref: str, *, compare_tensors: TensorComparer | bool | None = None) -> VersionDiff:
    """Compare two versions; with ``compare_tensors``, weight files tensor by tensor (True:
    by their bytes, without torch)."""
    if compare_tensors is True:
        from mreg.operations.raw_compare import (
            compare_raw,  # start-up: only a tensor diff reads weight files
        )

        compare_tensors = compare_raw
    old_digest, new_digest = store.resolve(old_ref), store.resolve(new_ref)
    old, new = store.manifest(old_digest), store.manifest(new_digest)
    return VersionDiff(
        old=f"{old.name}@{old.version}",
        new=f"{new.name}@{new.version}",
        old_digest=old_digest,
        new_digest=new_digest,
        fields=tuple(_field_changes(old, new)),
        metrics=tuple(
            MetricChange(name, old.metrics.get(name), new.metrics.get(name))
            for name in sorted(old.metrics.keys() | new.metrics.keys())
            if old.metrics.get(name) != new.metrics.get(name)
        ),
        files=tuple(_file_changes(store, old, new, compare_tensors or None)),
    )


def _field_changes(old: Manifest, new: Manifest) -> list[FieldChange]:
    before, after = _comparable(old), _comparable(new)
    return [
        FieldChange(key, before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def _comparable(manifest: Manifest) -> dict[str, Any]:
    data = manifest.to_dict()
    flat = {key: data[key] for key in ("family", "framework", "architecture", "input_shape")}
    flat.update({f"lineage.{key}": value for key, value in data["lineage"].items()})
    flat.update({f"metadata.{key}": value for key, value in data["properties"].items()})
    return flat


def _file_changes(store: Store, old: Manifest, new: Manifest, compare: TensorComparer | None) -> list[FileChange]:
    before = {f.path: f for f in old.files}
    after = {f.path: f for f in new.files}
    renamed = _renamed_weights(before, after)
    if renamed is not None:
        del before[renamed[0].path], after[renamed[1].path]
    changes = [
        _file_change(store, before.get(path), after.get(path), compare)
        for path in sorted(before.keys() | after.keys())
    ]
    if renamed is not None:
        changes.append(_file_change(store, *renamed, compare))
    return changes


def _file_change(store: Store, old: FileEntry | None, new: FileEntry | None, compare: TensorComparer | None) -> FileChange:
    if old is None or new is None:
        present = old or new
        assert present is not None
        return FileChange(present.path, "added" if old is None else "removed", old, new)
    if old.digest == new.digest:
        return FileChange(new.path, "unchanged" if old.path == new.path else "renamed", old, new)
    if compare is None or not (is_weights_name(old.path) and is_weights_name(new.path)):
        return FileChange(new.path, "changed", old, new)
    return FileChange(new.path, "changed", old, new, compare(store, old, new))


def _renamed_weights(before: dict[str, FileEntry], after: dict[str, FileEntry]) -> tuple[FileEntry, FileEntry] | None:
    """When each side has exactly one weight file, under different paths, pair them."""
    old = [f for f in before.values() if is_weights_name(f.path)]
    new = [f for f in after.values() if is_weights_name(f.path)]
    if len(old) == 1 and len(new) == 1 and old[0].path != new[0].path:
        return old[0], new[0]
    return None
