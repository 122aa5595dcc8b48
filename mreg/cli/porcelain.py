"""User-facing commands: init, add, tag, rm, show, ls, log."""

from __future__ import annotations

from typing import Any

import click

from ..errors import MregError
from ..names import parse_assignment, parse_number
from ..registry import Registry
from .app import Session, init_path, pass_session
from .output import (
    ProgressBar,
    describe_log_entry,
    describe_version,
    echo_json,
    echo_warnings,
    echo_table,
    format_metrics,
    short,
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@pass_session
def init(session: Session, directory: str | None) -> None:
    """Create an empty registry in DIRECTORY/.mreg (default: here)."""
    path = init_path(session, directory)
    existed = (path / ".mreg" / "config").is_file()
    registry = Registry.init(path)
    click.echo(f"{'Reinitialized existing' if existed else 'Initialized empty'} mreg registry in {registry.root}")


@click.command()
@click.argument("spec", metavar="NAME@VERSION")
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="PATH...")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), help="Pick the next version after the highest one.")
@click.option("--family", help="Model family, e.g. resnet.")
@click.option("--framework", help="Framework and version, e.g. 'pytorch 2.13.0'.")
@click.option("--architecture", help="Architecture, e.g. resnet18.")
@click.option("--input-shape", help="Input shape, e.g. 1,3,224,224 (-1 for a dynamic dimension).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME=NUMBER", help="A metric (repeatable).")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME[@DIGEST|@URI]", help="A dataset (repeatable).")
@click.option("--parent", "parents", multiple=True, metavar="REF", help="A version this one derives from (repeatable).")
@click.option("--meta", "properties", multiple=True, metavar="KEY=VALUE", help="Free metadata (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Point this tag at the new version (repeatable).")
@click.option("-m", "--message", default="", help="Why this version exists.")
@pass_session
def add(session: Session, spec: str, paths: tuple[str, ...], bump: Any, metrics: tuple[str, ...], properties: tuple[str, ...], **options: Any) -> None:
    """Register files as a new version: NAME@VERSION PATH... (or NAME PATH... --bump PART).

    A directory adds its files recursively. Re-adding an existing version with the
    same files and metadata does nothing; with anything different it fails. The last
    line printed is the version's manifest digest.
    """
    registry = session.registry
    metric_values = {}
    for text in metrics:
        key, value = parse_assignment(text, "metric")
        metric_values[key] = parse_number(value, f"metric '{key}'")
    meta = dict(parse_assignment(text, "metadata") for text in properties)  # weight files describe themselves
    with ProgressBar("storing") as progress:
        result = registry.add(
            spec, list(paths), bump=bump, metrics=metric_values, properties=meta, progress=progress, **options
        )
    state = "added" if result.created else "already registered with identical content:"
    click.echo(f"{state} {result.name}@{result.version}", err=True)
    click.echo(result.digest)


@click.command()
@click.argument("ref_or_name", metavar="REF")
@click.argument("tag")
@click.option("-d", "--delete", is_flag=True, help="Remove TAG from the model named REF.")
@pass_session
def tag(session: Session, ref_or_name: str, tag: str, delete: bool) -> None:
    """Point TAG of a model at REF's version (creating or moving it); -d removes it."""
    registry = session.registry
    if delete:
        change = registry.untag(ref_or_name, tag)
        click.echo(f"removed tag {change.name}@{change.tag} (was {change.old})")
        return
    change = registry.tag(ref_or_name, tag)
    moved = f" (was {change.old})" if change.old and change.old != change.new else ""
    click.echo(f"{change.name}@{change.tag} -> {change.new}{moved}")


@click.command()
@click.argument("spec", metavar="NAME@VERSION")
@click.option("-m", "--message", default="", help="Why it is removed (kept in the log).")
@pass_session
def rm(session: Session, spec: str, message: str) -> None:
    """Remove a version; its tags go too and latest is recomputed.

    Its objects stay until 'mreg gc'.
    """
    digest = session.registry.remove(spec, message=message)
    click.echo(f"removed {spec} ({digest}); 'mreg gc' reclaims its objects")


@click.command()
@click.argument("ref")
@json_option
@pass_session
def show(session: Session, ref: str, as_json: bool) -> None:
    """Show one version: digest, files, metadata, lineage and tags."""
    registry = session.registry
    view = registry.get(ref)
    if as_json:
        echo_json(view.to_dict())
    else:
        click.echo("\n".join(describe_version(view, parents=[registry.label(p) for p in view.lineage.parents])))
    echo_warnings(registry)


@click.command(name="ls")
@click.argument("name", required=False)
@click.option("--family", help="Only this model family.")
@click.option("--framework", help="Only this framework, e.g. 'pytorch' or 'pytorch>=2.4'.")
@click.option("--metric", "metrics", multiple=True, metavar="COND", help="A threshold such as 'acc>=0.9' (repeatable).")
@click.option("--meta", "properties", multiple=True, metavar="KEY=VALUE", help="Free metadata to match (repeatable).")
@json_option
@pass_session
def list_models(session: Session, name: str | None, as_json: bool, properties: tuple[str, ...], **filters: Any) -> None:
    """List models with their latest version, or NAME's versions (highest first).

    With filters, only what matches: for models, their latest version must match.
    """
    registry = session.registry
    _list(registry, name, as_json, dict(parse_assignment(text, "metadata") for text in properties), filters)
    echo_warnings(registry)


def _list(registry: Registry, name: str | None, as_json: bool, meta: dict[str, str], filters: dict[str, Any]) -> None:
    if any(filters.values()) or meta:
        views = registry.query(name=name, latest_only=name is None, properties=meta, **filters)
        if as_json:
            echo_json([v.to_dict() for v in views])
        else:
            rows = [(f"{v.name}@{v.version}", short(v.digest), format_metrics(v.metrics)) for v in views]
            echo_table(rows, ("VERSION", "DIGEST", "METRICS"))
        return
    if name is None:
        models = registry.models()
        if as_json:
            echo_json([m.to_dict() for m in models])
        else:
            rows = [(m.name, m.latest, str(m.versions), m.family or "-", _tag_list(m.tags), m.source) for m in models]
            echo_table(*_with_sources(rows, ("NAME", "LATEST", "VERSIONS", "FAMILY", "TAGS")))
        return
    entries = registry.versions(name)
    if as_json:
        echo_json([e.to_dict() for e in entries])
    else:
        rows = [(e.version, short(e.digest), ", ".join(e.tags), e.source) for e in entries]
        echo_table(*_with_sources(rows, ("VERSION", "DIGEST", "TAGS")))


def _with_sources(rows: list[tuple], headers: tuple[str, ...]) -> tuple[list[tuple], tuple[str, ...]]:
    """Add a FROM column naming the fallback of each row, only when some row has one."""
    if any(row[-1] for row in rows):
        return [(*row[:-1], row[-1] or "") for row in rows], (*headers, "FROM")
    return [row[:-1] for row in rows], headers


def _tag_list(tags: Any) -> str:
    return ", ".join(f"{tag}={version}" for tag, version in sorted(tags.items()))


@click.command()
@click.argument("name")
@click.option("-n", "--max-count", type=click.IntRange(min=0), help="Show only the newest N entries.")
@json_option
@pass_session
def log(session: Session, name: str, as_json: bool, max_count: int | None) -> None:
    """Show a model's history, newest first: versions added and removed, tags moved.

    Lineage parents of added versions are shown beneath them.
    """
    registry = session.registry
    entries = registry.log(name, max_count)
    if as_json:
        echo_json([{**e.to_dict(), "parents": _parents(registry, e.new) if _is_add(e.ref, e.new) else []} for e in entries])
        return
    for entry in entries:
        click.echo(describe_log_entry(entry))
        if _is_add(entry.ref, entry.new):
            for parent in _parents(registry, entry.new):
                click.echo(f"    parent: {parent}")


def _is_add(ref: str, new: str | None) -> bool:
    return ref.startswith("versions/") and new is not None


def _parents(registry: Registry, digest: str | None) -> list[str]:
    """The lineage parents of an added version, labelled with their names where known."""
    try:
        parents = registry.manifest(digest or "").lineage.parents
    except MregError:
        return []  # removed and collected: the log outlives objects
    return [registry.label(parent) for parent in parents]
