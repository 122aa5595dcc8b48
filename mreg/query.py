"""Queries over versions: by family, framework, metric thresholds and metadata.

:func:`select` is three steps with seams between them: :func:`candidates` (what is
read), :func:`matcher` (what matches), :func:`ordering` and a slice (which come
first, and how many).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from .errors import InvalidInputError, printable
from .names import parse_condition, validate_key
from .notes import annotator
from .objects import Manifest
from .views import ModelVersion

if TYPE_CHECKING:
    from .registry import Registry

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

Condition = tuple[str, str, float]


def select(
    registry: Registry,
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
    match = matcher(family=family, framework=framework, metrics=metrics, properties=properties)
    order = ordering(sort, reverse=reverse)
    if limit is not None and limit < 0:
        raise InvalidInputError(f"invalid limit {limit}: give 0 or more")
    found = [view for view in candidates(registry, name, latest_only=latest_only) if match(view)]
    return order(found)[:limit]


def candidates(registry: Registry, name: str | None, *, latest_only: bool) -> Iterator[ModelVersion]:
    """The versions a query looks at, with their notes: by model name, highest version first.

    One model's include its versions only fallbacks have, as ``mreg ls NAME`` lists them.
    Manifests come in one batch per model from the metadata index.
    """
    if name is not None:
        table, with_note = registry.refs.read(name), annotator(registry, name)
        entries = registry.versions(name)
        if latest_only:
            entries = [entry for entry in entries if entry.digest == registry.resolve(name)]
        manifests = registry.manifests(entry.digest for entry in entries)
        for entry in entries:
            view = ModelVersion.of(entry.digest, manifests[entry.digest], table)
            yield with_note(view._replace(source=entry.source, tags=view.tags or entry.tags))
        return
    for model in registry.refs.names():
        table, with_note = registry.refs.read(model), annotator(registry, model)
        versions = [table.latest] if latest_only and table.latest else list(reversed(table.versions))
        manifests = registry.manifests(table.versions[version] for version in versions)
        for version in versions:
            digest = table.versions[version]
            yield with_note(ModelVersion.of(digest, manifests[digest], table))


def matcher(
    *,
    family: str | None = None,
    framework: str | None = None,
    metrics: Iterable[str | Condition] = (),
    properties: Mapping[str, Any] | None = None,
) -> Callable[[ModelVersion], bool]:
    """A predicate on versions; validates every condition up front."""
    conditions = [parse_condition(c) if isinstance(c, str) else c for c in metrics]
    wanted = {key: str(value) for key, value in (properties or {}).items()}
    framework_match = _framework_matcher(framework) if framework else None

    def match(view: ModelVersion) -> bool:
        manifest = view.manifest
        if family is not None and manifest.family != family:
            return False
        if framework_match is not None and not framework_match(manifest):
            return False
        values = view.all_metrics
        for key, op, threshold in conditions:
            value = values.get(key)
            if value is None or not _OPERATORS[op](value, threshold):
                return False
        return all(_as_text(manifest.properties.get(key)) == value for key, value in wanted.items())

    return match


def ordering(sort: str | None, *, reverse: bool = False) -> Callable[[list[ModelVersion]], list[ModelVersion]]:
    """Put versions in order of a metric (highest first; ``reverse``: lowest first).

    Versions without the metric come last either way; ties keep their listing order.
    Without ``sort`` the listing order stays.
    """
    if sort is None:
        if reverse:
            raise InvalidInputError("--reverse needs --sort METRIC")
        return list
    validate_key(sort, "metric name")
    sign = 1.0 if reverse else -1.0

    def order(views: list[ModelVersion]) -> list[ModelVersion]:
        def key(view: ModelVersion) -> tuple[bool, float]:
            value = view.all_metrics.get(sort)
            return (value is None, sign * value if value is not None else 0.0)

        return sorted(views, key=key)

    return order


def _framework_matcher(spec: str) -> Callable[[Manifest], bool]:
    """``pytorch`` or ``pytorch>=2.4``: name, then an optional PEP 440 specifier set."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    cut = next((i for i, c in enumerate(spec) if c in "<>=!~"), len(spec))
    name, text = spec[:cut].strip(), spec[cut:].strip()
    try:
        specifiers = SpecifierSet(text)
    except InvalidSpecifier:
        raise InvalidInputError(
            f"invalid framework filter '{printable(spec)}': expected NAME or NAME followed by a "
            "version specifier, e.g. 'pytorch>=2.4'"
        ) from None

    def match(manifest: Manifest) -> bool:
        framework = manifest.framework
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
