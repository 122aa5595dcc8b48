"""Queries over versions: by family, framework, metric thresholds and metadata.

:func:`select` is three steps with seams between them: :func:`candidates` (what is
read), :func:`matcher` (what matches), :func:`ordering` and a slice (which come
first, and how many). Candidates are the metadata index's rows with their notes:
they are matched and ordered without rebuilding a manifest, and only the versions
returned become full :class:`ModelVersion` views.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    NamedTuple,
    Protocol,
)

from mreg.errors import InvalidInputError
from mreg.operations.listing import list_versions, tags_by_version
from mreg.operations.notes import note_finder
from mreg.records.manifest import Framework
from mreg.records.names import Digest, parse_condition, validate_key, validate_name
from mreg.records.views import ModelVersion, VersionEntry, version_tags
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.notes import Note
    from mreg.records.refs import RefTable
    from mreg.storage.index import ManifestRow
    from mreg.store.store import Store

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

Condition = tuple[str, str, float]


class Facts(Protocol):
    """What conditions look at: a :class:`ModelVersion` or a :class:`Candidate`."""

    @property
    def family(self) -> str | None: ...
    @property
    def framework(self) -> Framework | None: ...
    @property
    def properties(self) -> Mapping[str, Any]: ...
    @property
    def all_metrics(self) -> Mapping[str, float]: ...


class Candidate(NamedTuple):
    """A version a query looks at, before any manifest is rebuilt: its index row, its
    tags, where it comes from and its note."""

    digest: Digest
    row: ManifestRow
    tags: tuple[str, ...]
    source: str | None
    note: Note | None

    @property
    def family(self) -> str | None:
        return self.row.family

    @property
    def framework(self) -> Framework | None:
        framework = self.row.framework
        return Framework(*framework) if framework is not None else None

    @property
    def properties(self) -> Mapping[str, Any]:
        return self.row.properties

    @property
    def all_metrics(self) -> Mapping[str, float]:
        """Registration metrics, overridden by noted ones of the same name."""
        return self.row.metrics if self.note is None else {**self.row.metrics, **self.note.metrics}

    def view(self) -> ModelVersion:
        """The full view: the manifest rebuilt from the row."""
        return ModelVersion(self.digest, self.row.manifest(), self.tags, self.note, self.source)


def select(
    store: Store,
    *,
    name: str | None = None,
    family: str | None = None,
    framework: str | None = None,
    metrics: Iterable[str | Condition] = (),
    properties: Mapping[str, Any] | None = None,
    latest_only: bool = False,
    sort: str | None = None,
    reverse: bool = False,
    limit: int | None = None,
) -> list[ModelVersion]:
    """Versions that match every condition given.

    Without ``sort``: by model name, then highest version first. Metrics are those
    recorded at registration and those noted since (a noted value wins).

    Args:
        name: only this model (its versions in the fallbacks too).
        family: the model family, exactly.
        framework: a framework name, optionally with a PEP 440 version specifier,
            e.g. ``"pytorch>=2.4"``.
        metrics: thresholds such as ``"acc>=0.9"`` (a version without that metric
            does not match).
        properties: free metadata that must be equal (compared as text).
        latest_only: consider only each model's ``latest`` version.
        sort: a metric: highest first (versions without it come last).
        reverse: with ``sort``, lowest first (e.g. a loss).
        limit: at most this many versions.

    Raises:
        InvalidInputError: a condition, the sort metric or the limit is invalid.
    """
    conditions = [parse_condition(c) if isinstance(c, str) else c for c in metrics]
    match = matcher(family=family, framework=framework, metrics=conditions, properties=properties)
    order = ordering(sort, reverse=reverse)
    if limit is not None and limit < 0:
        raise InvalidInputError(f"invalid limit {limit}: give 0 or more")
    from mreg.storage.index import (
        without_gc,  # start-up: sqlite3, only commands that read many versions
    )

    with without_gc():
        if name is not None and not (latest_only or framework or properties) and (conditions or family is not None or sort):
            found = _from_columns(store, validate_name(name), family, conditions, match, sort, -1.0 if not reverse else 1.0, limit)
            if found is not None:
                return found
        chosen = order([candidate for candidate in candidates(store, name, latest_only=latest_only) if match(candidate)])
        return [candidate.view() for candidate in chosen[:limit]]


def _from_columns(
    store: Store,
    name: str,
    family: str | None,
    conditions: list[Condition],
    match: Callable[[Facts], bool],
    sort: str | None,
    sign: float,
    limit: int | None,
) -> list[ModelVersion] | None:
    """One model's query answered by SQL over the index's plain columns (family, registered
    metrics), rebuilding only the rows returned.

    Versions the index lacks rows for, and noted ones (a noted metric wins), are matched
    on their rows here. Every row returned is sealed and matched again: if one
    disagrees with the columns that chose it, the index is damaged and the answer is
    None (the caller then matches every row itself; fsck reports the row).
    """
    table = store.refs.read(name)
    entries, tags = list_versions(store, name, local=table), _tagger(table)
    index, notes = store.index, store.refs.read_notes(name)
    present = index.named(name)
    loose = store.manifest_rows(e.digest for e in entries if e.digest not in present or e.digest in notes)
    chosen: dict[Digest, ManifestRow | None] | None = {}
    values: dict[Digest, float | None] | None = {}
    if sort is None:
        chosen = index.rows_where(name, family, conditions)
    else:
        values = index.values_where(name, family, conditions, sort)
    if chosen is None or values is None:
        return None  # the index failed between two statements: match every row instead
    kept: list[tuple[VersionEntry, Candidate | None]] = []
    for entry in entries:
        digest = entry.digest
        row = loose.get(digest)
        if row is not None:
            note = store.note(notes[digest]) if digest in notes else None
            candidate = Candidate(digest, row, tags(digest, row) or entry.tags, entry.source, note)
            if match(candidate):
                kept.append((entry, candidate))
        elif digest in chosen or digest in values:
            kept.append((entry, None))
    if sort is not None:
        kept.sort(key=lambda item: _rank(item[1].all_metrics.get(sort) if item[1] else values[item[0].digest], sign))
        kept = kept[:limit]
        chosen = dict(index.rows(entry.digest for entry, candidate in kept if candidate is None))

    def agrees(entry: VersionEntry, row: ManifestRow) -> bool:
        return row.name == name and (sort is None or row.metrics.get(sort) == values.get(entry.digest))

    return _checked_views(kept[:limit], chosen, agrees, match, tags)


def _checked_views(
    kept: list[tuple[VersionEntry, Candidate | None]],
    chosen: Mapping[Digest, ManifestRow | None],
    agrees: Callable[[VersionEntry, ManifestRow], bool],
    match: Callable[[Facts], bool],
    tags: Callable[[Digest, ManifestRow], tuple[str, ...]],
) -> list[ModelVersion] | None:
    """The views of the versions kept. One the plain columns chose (no candidate yet)
    must have a sealed row that ``agrees`` with the columns and matches: if not, the
    index is damaged and the answer is None."""
    found = []
    for entry, candidate in kept:
        if candidate is None:
            row = chosen.get(entry.digest)
            if row is None or not agrees(entry, row):
                return None
            candidate = Candidate(entry.digest, row, tags(entry.digest, row) or entry.tags, entry.source, None)
            if not match(candidate):
                return None
        found.append(candidate.view())
    return found


def candidates(store: Store, name: str | None, *, latest_only: bool) -> Iterator[Candidate]:
    """The versions a query looks at, with their notes: by model name, highest version first.

    One model's include its versions only fallbacks have, as ``mreg ls NAME`` lists them.
    Every row comes in one batch from the metadata index.
    """
    if name is not None:
        table, note = store.refs.read(validate_name(name)), note_finder(store, name)
        tags, entries = _tagger(table), list_versions(store, name, local=table)
        if latest_only:
            entries = [entry for entry in entries if entry.digest == store.resolve(name)]
        rows = store.manifest_rows(entry.digest for entry in entries)
        for entry in entries:
            row = rows[entry.digest]
            yield Candidate(entry.digest, row, tags(entry.digest, row) or entry.tags, entry.source, note(entry.digest))
        return
    listed = []
    for model in store.refs.names():
        table = store.refs.read(model)
        versions = [table.latest] if latest_only and table.latest else list(table.versions)[::-1]
        listed.append((_tagger(table), note_finder(store, model), [table.versions[version] for version in versions]))
    rows = store.manifest_rows(digest for _, _, digests in listed for digest in digests)
    for tags, note, digests in listed:
        for digest in digests:
            yield Candidate(digest, rows[digest], tags(digest, rows[digest]), None, note(digest))


def _tagger(table: RefTable) -> Callable[[Digest, ManifestRow], tuple[str, ...]]:
    """A function giving the tags a model's refs give a version (as :meth:`ModelVersion.of`
    does), with the table's tags inverted once."""
    by_version = tags_by_version(table)

    def tags(digest: Digest, row: ManifestRow) -> tuple[str, ...]:
        return version_tags(table, row.version, digest, lambda version: by_version.get(version, ()))

    return tags


def _rank(value: float | None, sign: float) -> tuple[bool, float]:
    """The sort key of a metric's value: highest first with ``sign`` -1, lowest with 1; absent last."""
    return (value is None, sign * value if value is not None else 0.0)


def matcher(
    *,
    family: str | None = None,
    framework: str | None = None,
    metrics: Iterable[str | Condition] = (),
    properties: Mapping[str, Any] | None = None,
) -> Callable[[Facts], bool]:
    """A predicate on versions (views or candidates); validates every condition up front."""
    conditions = [parse_condition(c) if isinstance(c, str) else c for c in metrics]
    wanted = {key: str(value) for key, value in (properties or {}).items()}
    framework_match = _framework_matcher(framework) if framework else None

    def match(view: Facts) -> bool:
        if family is not None and view.family != family:
            return False
        if framework_match is not None and not framework_match(view.framework):
            return False
        if conditions:
            values = view.all_metrics
            for key, op, threshold in conditions:
                value = values.get(key)
                if value is None or not _OPERATORS[op](value, threshold):
                    return False
        return not wanted or all(_as_text(view.properties.get(key)) == value for key, value in wanted.items())

    return match


def ordering(sort: str | None, *, reverse: bool = False) -> Callable[[list[Any]], list[Any]]:
    """Put versions in order of a metric (highest first; ``reverse``: lowest first).

    Versions without the metric come last either way; ties keep their listing order.
    Without ``sort`` the listing order stays.
    """
    if sort is None:
        if reverse:
            raise InvalidInputError("{reverse} needs {sort} (a metric)", options={"reverse": "reverse=True", "sort": "sort="})
        return list
    validate_key(sort, "metric name")
    sign = 1.0 if reverse else -1.0

    def order(views: list[Facts]) -> list[Facts]:
        return sorted(views, key=lambda view: _rank(view.all_metrics.get(sort), sign))

    return order


def _framework_matcher(spec: str) -> Callable[[Framework | None], bool]:
    """``pytorch`` or ``pytorch>=2.4``: name, then an optional PEP 440 specifier set."""
    from packaging.specifiers import (  # start-up: only a framework filter needs packaging
        InvalidSpecifier,
        SpecifierSet,
    )
    from packaging.version import (  # start-up: only a framework filter needs packaging
        InvalidVersion,
        Version,
    )

    cut = next((i for i, c in enumerate(spec) if c in "<>=!~"), len(spec))
    name, text = spec[:cut].strip(), spec[cut:].strip()
    try:
        specifiers = SpecifierSet(text)
    except InvalidSpecifier:
        raise InvalidInputError(
            f"invalid framework filter '{printable(spec)}': expected NAME or NAME followed by a "
            "version specifier, e.g. 'pytorch>=2.4'"
        ) from None

    def match(framework: Framework | None) -> bool:
        if framework is None or framework.name != name:
            return False
        if not text:
            return True
        try:
            return Version(framework.version or "").public in specifiers
        except InvalidVersion:
            return False

    return match


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
