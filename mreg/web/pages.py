"""What each page shows, as plain data: the JSON twin of a page is exactly this.

Each builder reads a model's ref table once and works from that snapshot, so a page
is consistent even while another process adds or tags (``_refs`` is replaced by one
rename, and manifests never change).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from mreg.errors import InvalidInputError, InvalidRefError, MregError
from mreg.operations.listing import tags_by_version
from mreg.records.names import validate_name
from mreg.web.numbers import difference
from mreg.web.params import page_number
from mreg.web.snippets import snippets

if TYPE_CHECKING:
    from mreg.records.manifest import Manifest
    from mreg.records.notes import Note
    from mreg.records.refs import LogEntry
    from mreg.storage.index import ManifestRow
    from mreg.web.reader import ReadOnlyRegistry

PAGE_SIZE = 100  # rows per page: long tables are paged, charts always show every version
LOG_SHOWN = 200  # the newest log entries a model page shows
VERSION_SORTS = ("version", "created")
METRIC_SORT_PREFIX = "metric:"


class Point(NamedTuple):
    """One version's value of a metric, for a chart."""

    version: str
    value: float


def models_page(registry: ReadOnlyRegistry, *, query: str = "", family: str = "", page: str = "1") -> dict[str, Any]:
    """Every model (filtered by a name substring and a family), with the families to filter by."""
    summaries = registry.models()
    needle = query.strip().lower()
    matching = [s for s in summaries if needle in s.name.lower() and (not family or s.family == family)]
    shown, pagination = paginate(matching, page)
    return {
        "models": [s.to_dict() for s in shown],
        "pagination": pagination,
        "total": len(summaries),
        "families": sorted({s.family for s in summaries if s.family}),
        "filter": {"q": query, "family": family},
    }


def model_page(
    registry: ReadOnlyRegistry, name: str, *, sort: str = "version", order: str = "desc", page: str = "1"
) -> dict[str, Any]:
    """A model's versions with their metrics (one page of them), every metric's series
    across versions, its tags, and its tag history."""
    table = registry.existing_table(validate_name(name))  # one snapshot: _refs is replaced by rename
    notes = registry.refs.read_notes(name)
    manifests = registry.manifest_rows(table.versions.values(), skip_unreadable=True)
    tags_of = tags_by_version(table)
    rows = []
    for rank, (version, digest) in enumerate(table.versions.items()):  # ascending precedence
        tags = tags_of.get(version, [])
        row = _version_row(manifests.get(digest), version, digest, ["latest", *tags] if version == table.latest else tags)
        if digest in notes:
            row = _with_note(row, registry.store.note(notes[digest]))
        rows.append({**row, "rank": rank})
    rows.reverse()
    metrics = sorted({key for row in rows for key in row["metrics"]})
    sort, order = _checked_sort(sort, order, metrics)
    entries, _ = registry.refs.log(name)
    latest = next((row for row in rows if row["version"] == table.latest), rows[0])
    shown, pagination = paginate(_sorted_rows(rows, sort, order), page)
    return {
        "name": name,
        "latest": table.latest,
        "family": latest["family"],
        "tags": dict(sorted(table.tags.items())),
        "metrics": metrics,
        "sort": {"key": sort, "order": order},
        "versions": shown,
        "pagination": pagination,
        "series": _series(rows[::-1], metrics),
        "tag_history": [e.to_dict() for e in reversed(entries) if _is_tag_change(e)][:LOG_SHOWN],
        "log": [e.to_dict() for e in reversed(entries)][:LOG_SHOWN],
        "log_size": len(entries),
    }


def paginate(items: list, page: str) -> tuple[list, dict[str, int]]:
    """One page of ``items`` (``page`` counts from 1, as given in a URL) and where it is."""
    pages = max(1, -(-len(items) // PAGE_SIZE))
    number = page_number(page)  # ASCII digits only: int() would take other scripts' digits
    if number > pages:
        raise InvalidInputError(f"no page {number}: pages go from 1 to {pages}")
    start = (number - 1) * PAGE_SIZE
    return items[start : start + PAGE_SIZE], {"page": number, "pages": pages, "size": PAGE_SIZE, "rows": len(items)}


def _series(ascending: list[dict[str, Any]], metrics: list[str]) -> dict[str, list[Point]]:
    """Each metric's values across versions (rows lowest version first)."""
    return {
        metric: [Point(row["version"], row["metrics"][metric]) for row in ascending if metric in row["metrics"]]
        for metric in metrics
    }


def version_page(
    registry: ReadOnlyRegistry, ref: str, *, base_url: str, children: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Everything about one version, and snippets that fetch and load it.

    ``children`` is a :func:`children_index` the caller already built, if any.
    """
    view = registry.get(ref)
    children = children_index(registry) if children is None else children
    manifest = view.manifest
    properties = dict(manifest.properties)
    data = view.to_dict()
    data.update(
        ref=f"{view.name}@{view.version}",
        framework=str(manifest.framework) if manifest.framework else None,
        weights=properties.get("weights"),
        parameters=properties.get("parameters"),
        total_size=sum(f.size for f in manifest.files),
        parents=[_link(registry, parent) for parent in manifest.lineage.parents],
        children=[_link(registry, child) for child in children.get(view.digest, [])],
        snippets=snippets(manifest, base_url),  # what works for the files it holds
    )
    return data


def compare_page(registry: ReadOnlyRegistry, old: str, new: str) -> dict[str, Any]:
    """Two versions side by side and what changed, tensors included when torch is installed."""
    if not old or not new:
        raise InvalidRefError("compare needs two references: /compare?a=NAME@VERSION&b=NAME@VERSION")
    sides = [registry.get(old), registry.get(new)]
    note = None
    try:
        from mreg.pytorch.compare import (
            diff as diff_with_tensors,  # imports torch: only this page needs it
        )

        result = diff_with_tensors(registry, old, new)
    except (ImportError, MregError) as exc:
        note = f"tensors not compared: {exc}"
        result = registry.diff(old, new)
    names = sorted({key for side in sides for key in side.metrics})
    return {
        **result.to_dict(),
        "sides": [_side(side) for side in sides],
        "all_metrics": [_metric_row(name, sides[0].metrics.get(name), sides[1].metrics.get(name)) for name in names],
        "note": note,
    }


def children_index(registry: ReadOnlyRegistry) -> dict[str, list[str]]:
    """For every parent digest, the registered versions whose lineage names it."""
    index: dict[str, list[str]] = {}
    candidates = [digest for _, _, digest in registry.version_digests()]
    rows = registry.manifest_rows(candidates, skip_unreadable=True)
    for candidate in candidates:
        row = rows.get(candidate)
        for parent in row.parents if row is not None else ():
            index.setdefault(parent, []).append(candidate)
    return index


# ---------------------------------------------------------------- helpers


def label_of(registry: ReadOnlyRegistry, digest: str) -> tuple[str, str | None]:
    """``name@version`` and its reference for a manifest, or a short digest and None if it is gone."""
    manifest = manifest_or_none(registry, digest)
    if manifest is None:
        return digest[:15], None
    return f"{manifest.name}@{manifest.version}", digest


def _link(registry: ReadOnlyRegistry, digest: str) -> dict[str, Any]:
    label, ref = label_of(registry, digest)
    return {"digest": digest, "label": label, "ref": ref}


def manifest_or_none(registry: ReadOnlyRegistry, digest: str) -> Manifest | None:
    try:
        return registry.manifest(digest)
    except MregError:  # removed and collected, or damaged: fsck reports it, the page goes on
        return None


def _version_row(manifest: ManifestRow | None, version: str, digest: str, tags: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "version": version, "digest": digest, "tags": tags, "missing": manifest is None, "noted": [], "deprecated": None
    }
    if manifest is None:
        return {**row, "metrics": {}, "family": None, "created": "", "author": "", "message": "", "size": 0}
    return {
        **row,
        "metrics": dict(manifest.metrics),
        "family": manifest.family,
        "created": manifest.created,
        "author": manifest.author,
        "message": manifest.message,
        "size": manifest.total_size,
    }


def _with_note(row: dict[str, Any], note: Note) -> dict[str, Any]:
    """A version's row with what its note adds: evaluation metrics (a noted value wins,
    being the newer measurement, as in ``mreg ls``) and a deprecation."""
    return {**row, "metrics": {**row["metrics"], **note.metrics}, "noted": sorted(note.metrics), "deprecated": note.deprecated}


def _checked_sort(sort: str, order: str, metrics: Iterable[str]) -> tuple[str, str]:
    valid = (*VERSION_SORTS, *(METRIC_SORT_PREFIX + m for m in metrics))
    if sort not in valid:
        raise InvalidInputError(f"cannot sort by '{sort[:60]}': use one of {', '.join(valid)}")
    if order not in ("asc", "desc"):
        raise InvalidInputError("order is 'asc' or 'desc'")
    return sort, order


def _sorted_rows(rows: list[dict[str, Any]], sort: str, order: str) -> list[dict[str, Any]]:
    """Rows come highest version first; versions without the metric always go last."""
    descending = order == "desc"
    if sort == "version":
        return rows if descending else rows[::-1]
    if sort == "created":
        return sorted(rows, key=lambda row: row["created"], reverse=descending)
    metric = sort.removeprefix(METRIC_SORT_PREFIX)
    present = [row for row in rows if metric in row["metrics"]]
    absent = [row for row in rows if metric not in row["metrics"]]
    return sorted(present, key=lambda row: row["metrics"][metric], reverse=descending) + absent


def _is_tag_change(entry: LogEntry) -> bool:
    return entry.ref.startswith("tags/") or entry.ref == "latest"


def _side(view: Any) -> dict[str, Any]:
    return {
        "ref": f"{view.name}@{view.version}",
        "digest": view.digest,
        "tags": list(view.tags),
        "created": view.lineage.created,
        "author": view.lineage.author,
        "message": view.lineage.message,
    }


def _metric_row(name: str, old: float | None, new: float | None) -> dict[str, Any]:
    return {"name": name, "old": old, "new": new, "delta": difference(old, new)}  # None when it overflows
