"""User-facing commands: init, add, tag, rm, show, ls, log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from mreg.cli.app import Session, init_path, pass_session
from mreg.cli.output import (
    ProgressBar,
    describe_log_entry,
    describe_version,
    echo_json,
    echo_table,
    echo_warnings,
    format_metrics,
)
from mreg.errors import NotFoundError
from mreg.records.names import parse_assignment, parse_number
from mreg.registry import Registry
from mreg.text import short

if TYPE_CHECKING:
    from mreg.records.views import ModelVersion

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
@click.option(
    "--inherit/--no-inherit", default=True, show_default=True,
    help="With --bump: start from the highest version's family, framework, architecture, input shape and "
    "--meta values (not its metrics, datasets or message) and record it as the parent.",
)
@click.option("--family", help="Model family, e.g. resnet.")
@click.option("--framework", help="Framework and version, e.g. 'pytorch 2.13.0'.")
@click.option("--architecture", help="Architecture, e.g. resnet18.")
@click.option("--input-shape", help="Input shape, e.g. 1,3,224,224 (-1 for a dynamic dimension).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME=NUMBER", help="A metric (repeatable).")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME[@DIGEST|@URI]", help="A dataset (repeatable).")
@click.option("--parent", "parents", multiple=True, metavar="REF", help="A version this one derives from (repeatable).")
@click.option("--meta", "properties", multiple=True, metavar="KEY=VALUE", help="Free metadata (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Point this tag at the new version (repeatable).")
@click.option("--card", "card_file", type=click.File("rb"), metavar="FILE.json", help="The model card: a JSON object of its fields.")
@click.option("-m", "--message", default="", help="Why this version exists.")
@click.option("--sign", is_flag=True, help="Sign the registration with your SSH key (see 'mreg sign').")
@click.option("--key", metavar="PATH", help="With --sign: the key (default: user.signingkey).")
@pass_session
def add(
    session: Session, spec: str, paths: tuple[str, ...], bump: Any, metrics: tuple[str, ...], properties: tuple[str, ...], card_file: Any, **options: Any
) -> None:
    """Register files as a new version: NAME@VERSION PATH... (or NAME PATH... --bump PART).

    A directory adds its files recursively. A MONAI bundle directory (NAME BUNDLE_DIR
    takes the bundle's own version) is checked, and its metadata fills in what is not
    given: version, message, framework, input shape, metrics, model card. Re-adding an existing version with the same files
    and metadata does nothing; with anything different it fails. The last line
    printed is the version's manifest digest.
    """
    registry = session.registry
    metric_values = {}
    for text in metrics:
        key, value = parse_assignment(text, "metric")
        metric_values[key] = parse_number(value, f"metric '{key}'")
    meta = dict(parse_assignment(text, "metadata") for text in properties)  # weight files describe themselves
    card = None
    if card_file is not None:
        from mreg.records.card_field import card_from_json  # start-up: only add --card reads a card
        from mreg.records.limits import MAX_CARD_SIZE  # start-up: as card_from_json

        card = card_from_json(card_file.read(MAX_CARD_SIZE + 1), card_file.name)
    with ProgressBar("storing") as progress:
        result = registry.add(
            spec, list(paths), bump=bump, metrics=metric_values, properties=meta, progress=progress, card=card, **options
        )
    state = "added" if result.created else "already registered with identical content:"
    click.echo(f"{state} {result.name}@{result.version}", err=True)
    click.echo(result.digest)


@click.command()
@click.argument("ref_or_name", metavar="REF")
@click.argument("tag")
@click.option("-d", "--delete", is_flag=True, help="Remove TAG from the model named REF.")
@click.option("--sign", is_flag=True, help="Sign the move with your SSH key.")
@click.option("--key", metavar="PATH", help="With --sign: the key (default: user.signingkey).")
@pass_session
def tag(session: Session, ref_or_name: str, tag: str, delete: bool, sign: bool, key: str | None) -> None:
    """Point TAG of a model at REF's version (creating or moving it); -d removes it.

    A tag protected with 'mreg config protect.TAG.approvals N' moves only to a version
    approved for it by N distinct allowed signers ('mreg approve').
    """
    registry = session.registry
    if delete:
        change = registry.untag(ref_or_name, tag)
        click.echo(f"removed tag {change.name}@{change.tag} (was {change.old})")
        return
    change = registry.tag(ref_or_name, tag, sign=sign, key=key)
    moved = f" (was {change.old})" if change.old and change.old != change.new else ""
    click.echo(f"{change.name}@{change.tag} -> {change.new}{moved}")


@click.command()
@click.argument("spec", metavar="NAME@VERSION")
@click.option("-m", "--message", default="", help="Why it is removed (kept in the log).")
@pass_session
def rm(session: Session, spec: str, message: str) -> None:
    """Remove a version; its tags go too and latest is recomputed.

    A tombstone stays: the version number never names other bytes again. Its objects
    stay until 'mreg gc'.
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
        lines = describe_version(view, parents=[registry.label(p) for p in view.lineage.parents])
        if view.deprecated:
            lines.insert(1, f"DEPRECATED:   {view.deprecated}")
        click.echo("\n".join(lines + _describe_note(view)))
    echo_warnings(registry)


def _describe_note(view: ModelVersion) -> list[str]:
    """The note section of ``mreg show`` (evaluation metrics apart from registered ones)."""
    note = view.note
    if note is None:
        return []
    lines = [f"notes:        by {note.author} at {note.time}"]
    if note.metrics:
        lines.append(f"  evaluation: {format_metrics(note.metrics)}")
    if note.deprecated:
        lines.append(f"  deprecated: {note.deprecated}")
    lines += [f"  {line}" for line in note.message.splitlines()]
    return lines


@click.command()
@click.argument("ref")
@click.option("-m", "--message", help="The note's text (replaces the text noted before).")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=NUMBER", help="An evaluation metric (repeatable; adds to the noted ones).")
@click.option("--deprecate", metavar="REASON", help="Mark the version deprecated: show, ls and load_model report it.")
@click.option("--undeprecate", is_flag=True, help="Withdraw a deprecation.")
@click.option("--remove", is_flag=True, help="Remove the whole note.")
@pass_session
def note(session: Session, ref: str, message: str | None, metrics: tuple[str, ...], deprecate: str | None, undeprecate: bool, remove: bool) -> None:
    """Add to or change the note on REF's version, as git notes do; without options, show it.

    Versions never change; notes hold what is learnt later (evaluation results,
    review comments, deprecations). Each change is kept in 'mreg log NAME', and
    notes travel with push, pull and clone.
    """
    registry = session.registry
    if message is None and not (metrics or deprecate or undeprecate or remove):
        view = registry.get(ref)
        if view.note is None:
            raise NotFoundError(f"{view.name}@{view.version} has no note")
        click.echo("\n".join(_describe_note(view)))
        return
    values = {}
    for text in metrics:
        key, value = parse_assignment(text, "metric")
        values[key] = parse_number(value, f"metric '{key}'")
    change = registry.note(ref, message=message, metrics=values, deprecated=deprecate, undeprecate=undeprecate, remove=remove)
    where = f"{change.name}@{change.version}"
    if change.new is None:
        click.echo(f"removed the note on {where} (was {short(change.old)})")
    elif change.new == change.old:
        click.echo(f"the note on {where} already says that")
    else:
        click.echo(f"noted {where}: {change.new}")


@click.command(name="ls")
@click.argument("name", required=False)
@click.option("--family", help="Only this model family.")
@click.option("--framework", help="Only this framework, e.g. 'pytorch' or 'pytorch>=2.4'.")
@click.option("--metric", "metrics", multiple=True, metavar="COND", help="A threshold such as 'acc>=0.9' (repeatable; noted metrics count).")
@click.option("--meta", "properties", multiple=True, metavar="KEY=VALUE", help="Free metadata to match (repeatable).")
@click.option("--sort", metavar="METRIC", help="Order by this metric, highest first (versions without it last).")
@click.option("--reverse", is_flag=True, help="With --sort: lowest first (e.g. a loss).")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="Show at most N lines.")
@json_option
@pass_session
def list_models(session: Session, name: str | None, as_json: bool, properties: tuple[str, ...], **filters: Any) -> None:
    """List models with their latest version, or NAME's versions (highest first) with their metrics.

    With filters, only what matches: for models, their latest version must match.
    Metrics noted after registration ('mreg note --metric') are shown with a '*',
    count for filters and --sort, and win over a registered value of the same name.
    For the best version by a metric: mreg ls NAME --sort acc --limit 1.
    """
    registry = session.registry
    meta = dict(parse_assignment(text, "metadata") for text in properties)
    selective = meta or any(value is not None and value is not False and value != () for value in filters.values())
    if name is None and not selective:
        _list_models(registry, as_json)
    else:
        views = registry.query(name=name, latest_only=name is None, properties=meta, **filters)
        _list_versions(views, as_json, named=name is not None)
    echo_warnings(registry)


def _list_models(registry: Registry, as_json: bool) -> None:
    models = registry.models()
    if as_json:
        echo_json([m.to_dict() for m in models])
    else:
        rows = [(m.name, m.latest, str(m.versions), m.family or "-", _tag_list(m.tags), m.source) for m in models]
        echo_table(*_with_sources(rows, ("NAME", "LATEST", "VERSIONS", "FAMILY", "TAGS")))


def _list_versions(views: list[ModelVersion], as_json: bool, *, named: bool) -> None:
    """Versions with a column per metric; a noted metric is marked with '*'."""
    if as_json:
        echo_json([v.to_entry_dict() if named else v.to_dict() for v in views])
        return
    keys = sorted({key for view in views for key in view.all_metrics})
    deprecated = any(view.deprecated for view in views)
    rows = []
    for view in views:
        tags = ", ".join(view.tags)  # latest included, as show and the web list it
        label = view.version if named else f"{view.name}@{view.version}"
        cells = [label, short(view.digest), tags, *(_metric_cell(view, key) for key in keys)]
        if deprecated:
            cells.append(view.deprecated or "")
        rows.append((*cells, view.source))
    headers = ("VERSION", "DIGEST", "TAGS", *keys, *(["DEPRECATED"] if deprecated else []))
    echo_table(*_with_sources(rows, headers))
    if any(view.evaluation for view in views):
        click.echo("* noted after registration (mreg note --metric)")


def _metric_cell(view: ModelVersion, key: str) -> str:
    if key in view.evaluation:
        return f"{view.evaluation[key]:g}*"
    value = view.metrics.get(key)
    return "-" if value is None else f"{value:g}"


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
    parents = registry.parent_labels(e.new for e in entries if e.new is not None and _is_add(e.ref, e.new))
    if as_json:
        echo_json([{**e.to_dict(), "parents": parents.get(e.new, []) if _is_add(e.ref, e.new) else []} for e in entries])  # type: ignore[call-overload]
        return
    lines = []
    for entry in entries:
        lines.append(describe_log_entry(entry))
        if _is_add(entry.ref, entry.new):
            lines += [f"    parent: {parent}" for parent in parents.get(entry.new, [])]  # type: ignore[call-overload]
    if lines:
        click.echo("\n".join(lines))


def _is_add(ref: str, new: str | None) -> bool:
    return ref.startswith("versions/") and new is not None
