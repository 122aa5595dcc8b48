"""Queries over versions: by family, framework, metric thresholds and metadata."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .errors import InvalidInputError, printable
from .names import parse_condition
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
) -> list[ModelVersion]:
    """Versions that match every condition given, by model name then highest version first.

    Args:
        name: only this model.
        family: the model family, exactly.
        framework: a framework name, optionally with a PEP 440 version specifier,
            e.g. ``"pytorch>=2.4"``.
        metrics: thresholds such as ``"acc>=0.9"`` (a version without that metric
            does not match).
        properties: free metadata that must be equal (compared as text).
        latest_only: consider only each model's ``latest`` version.
    """
    match = matcher(family=family, framework=framework, metrics=metrics, properties=properties)
    names = [name] if name is not None else registry.refs.names()
    tables = [registry.refs.read(model) for model in names]
    candidates = [
        (table, table.versions[version])
        for table in tables
        for version in ([table.latest] if latest_only and table.latest else reversed(table.versions))
    ]
    manifests = registry.manifests(digest for _, digest in candidates)  # one batch, from the index
    found = []
    for table, digest in candidates:
        manifest = manifests[digest]
        if match(manifest):
            found.append(ModelVersion.of(digest, manifest, table))
    return found


def matcher(
    *,
    family: str | None = None,
    framework: str | None = None,
    metrics: Iterable[str | Condition] = (),
    properties: Mapping[str, Any] | None = None,
) -> Callable[[Manifest], bool]:
    """A predicate on manifests; validates every condition up front."""
    conditions = [parse_condition(c) if isinstance(c, str) else c for c in metrics]
    wanted = {key: str(value) for key, value in (properties or {}).items()}
    framework_match = _framework_matcher(framework) if framework else None

    def match(manifest: Manifest) -> bool:
        if family is not None and manifest.family != family:
            return False
        if framework_match is not None and not framework_match(manifest):
            return False
        for key, op, threshold in conditions:
            value = manifest.metrics.get(key)
            if value is None or not _OPERATORS[op](value, threshold):
                return False
        return all(_as_text(manifest.properties.get(key)) == value for key, value in wanted.items())

    return match


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
