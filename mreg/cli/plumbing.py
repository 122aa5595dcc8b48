"""Plumbing for scripts: resolve, path, export, cat-file, hash-object, fsck, gc, pack."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mreg.cli.app import Session, fail, pass_session
from mreg.cli.errors import ExitCode
from mreg.cli.output import ProgressBar, echo, echo_json, echo_warnings
from mreg.records.names import parse_seconds
from mreg.registry import fsck_bucket, gc_bucket
from mreg.text import human_size, plural

if TYPE_CHECKING:
    from mreg.records.packing import PackReport

MAX_GRACE_HOURS = 100 * 365 * 24.0  # a century: timedelta's range is far beyond it


@click.command()
@click.argument("ref")
@pass_session
def resolve(session: Session, ref: str) -> None:
    """Print the manifest digest REF names."""
    click.echo(session.registry.resolve(ref))
    echo_warnings(session.registry)


@click.command()
@click.argument("ref")
@click.argument("file", required=False)
@pass_session
def path(session: Session, ref: str, file: str | None) -> None:
    """Print the absolute local path of a registered file (read-only: copy before editing)."""
    with ProgressBar("fetching") as progress:
        found = session.registry.path(ref, file, progress=progress)
    click.echo(str(found))
    echo_warnings(session.registry)


@click.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--copy", is_flag=True, help="Write writable copies instead of read-only hard links.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_session
def export(session: Session, ref: str, directory: str, copy: bool, as_json: bool) -> None:
    """Write every file of REF's version into DIRECTORY, verified.

    Whole files are hard-linked to the store's read-only objects where the file
    system allows (they cost no space; editing one in place fails: use --copy for
    files you mean to change). Files already there with the same bytes are kept;
    any other existing file stops the export before anything is written.
    """
    report = session.registry.export(ref, directory, link=not copy)
    if as_json:
        echo_json(report.to_dict())
    else:
        counts = f"{len(report.linked)} linked, {len(report.copied)} copied, {len(report.unchanged)} already there"
        click.echo(f"exported {report.name}@{report.version} to {report.directory} ({counts})")
    echo_warnings(session.registry)


@click.command(name="cat-file")
@click.argument("digest")
@click.option("-t", "mode", flag_value="type", help="Print the object's type (manifest or blob).")
@click.option("-s", "mode", flag_value="size", help="Print the object's size in bytes.")
@click.option("-p", "mode", flag_value="print", help="Print the contents (manifests as JSON).")
@pass_session
def cat_file(session: Session, digest: str, mode: str | None) -> None:
    """Show an object by DIGEST (a unique prefix of 8 or more hex digits will do)."""
    if mode is None:
        raise click.UsageError("give one of -t, -s or -p")
    registry = session.registry
    digest = registry.find_object(digest)
    kind = registry.object_type(digest)
    if mode == "type":
        click.echo(kind)
    elif mode == "size":
        click.echo(registry.object_size(digest))
    elif kind == "manifest":
        echo_json(registry.manifest(digest).to_dict())
    else:
        out = sys.stdout.buffer
        for block in registry.object_bytes(digest):
            out.write(block)
        out.flush()


@click.command(name="hash-object")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-w", "write", is_flag=True, help="Also store the file as an object.")
@pass_session
def hash_object(session: Session, file: Path, write: bool) -> None:
    """Print a file's digest (what sha256sum prints, with a sha256: prefix)."""
    click.echo(session.registry.hash_object(file, write=write))


@click.command()
@click.argument("bucket", required=False, metavar="[BUCKET]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--repair", is_flag=True,
    help="Restore damaged or missing objects from the fallbacks and remotes (verified), and rewrite "
    "derived state (info/models) that differs from the refs.",
)
@pass_session
def fsck(session: Session, bucket: str | None, as_json: bool, repair: bool) -> None:
    """Verify every object, manifest and ref; exit non-zero naming each problem.

    With BUCKET (an s3://, gs:// or az:// URL, or a remote's name) fsck checks that
    registry instead, changing nothing: every ref's manifest and every file and chunk
    it needs are there, with their sizes.
    """
    if bucket is not None:
        if repair:
            raise click.UsageError("--repair applies to a registry on disk; fsck of a BUCKET changes nothing")
        report = fsck_bucket(bucket, registry=session.registry_if_any)
    else:
        report = session.registry.fsck(repair=repair)
    if as_json:
        echo_json(report.to_dict())
    else:
        for problem in report.problems:
            echo(f"problem: {problem}")
        for note in report.notes:
            echo(f"note: {note}")
        click.echo(
            f"checked {plural(report.objects, 'object')}, {plural(report.models, 'model')}, {plural(report.versions, 'version')}: "
            + ("ok" if report.ok else f"{len(report.problems)} problem(s)")
        )
    if not report.ok:
        fail(f"fsck found {len(report.problems)} problem(s)", ExitCode.FAILURE)


@click.command()
@click.argument("bucket", required=False, metavar="[BUCKET]")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--grace", metavar="HOURS", help="With a BUCKET: spare objects younger than this (default 24; at most 100 years).")
@click.option("--pack", "then_pack", is_flag=True, help="Then pack the cold chunks, as 'mreg pack' does.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_session
def gc(session: Session, bucket: str | None, dry_run: bool, grace: str | None, then_pack: bool, as_json: bool) -> None:
    """Delete objects no ref leads to, and temporary files left by interrupted writes.

    With BUCKET (an s3://, gs:// or az:// URL, or a remote's name) gc sweeps that
    registry instead, sparing objects younger than the grace period.

    Also trims .mreg/cache/ (files assembled by 'mreg path'): copies nothing refers
    to go, then the least recently used until it fits in cache.maxsize (default 1G;
    set it with 'mreg config cache.maxsize 512M').
    """
    if grace is not None and bucket is None:
        raise click.UsageError("--grace applies to a BUCKET; a registry on disk has no grace period (gc takes its lock)")
    if then_pack and bucket is not None:
        raise click.UsageError("--pack applies to a registry on disk: pack it, then push the packed objects to the BUCKET")
    if bucket is not None:
        hours = timedelta(hours=parse_seconds(grace, "--grace", maximum=MAX_GRACE_HOURS, unit="hours")) if grace is not None else None
        report = gc_bucket(bucket, registry=session.registry_if_any, grace=hours, dry_run=dry_run)
    else:
        report = session.registry.gc(dry_run=dry_run, pack=then_pack)
    if as_json:
        echo_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(report.objects)} unreachable object(s) ({human_size(report.bytes)}), "
        f"{human_size(report.cache)} of cached copies and {report.temp_files} temporary file(s)"
    )
    if report.packed is not None:
        echo_pack(report.packed)


@click.command()
@click.option("--all", "include_hot", is_flag=True, help="Pack the newest and the tagged versions too (they stay raw by default).")
@click.option("--dry-run", is_flag=True, help="Change nothing; estimate the saving from samples of each chunk.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_session
def pack(session: Session, include_hot: bool, dry_run: bool, as_json: bool) -> None:
    """Store cold tensor chunks packed: losslessly compressed, as deltas against the same
    tensor of the next version or alone, about half their size for full fine-tunes.

    Every chunk keeps its name (the SHA-256 of its raw bytes) and is verified by decoding
    before its raw form goes. The newest version of each model and tagged versions stay
    raw, memory-mapped at load, unless --all; a hot chunk found packed is unpacked. A
    chain of deltas decodes in at most pack.depth steps (default 10). See docs/packs.md.
    """
    with ProgressBar("packing") as progress:
        report = session.registry.pack(all=include_hot, dry_run=dry_run, progress=progress)
    if as_json:
        echo_json(report.to_dict())
    else:
        echo_pack(report)
    if report.problems:
        fail(f"{plural(len(report.problems), 'chunk')} could not be packed (see above)", ExitCode.FAILURE)


def echo_pack(report: PackReport) -> None:
    """The lines of ``mreg pack`` (and of ``gc --pack``)."""
    verb = "would pack" if report.dry_run else "packed"
    click.echo(
        f"{verb} {plural(report.packed, 'chunk')} ({report.deltas} as deltas, {report.standalone} alone): "
        f"{human_size(report.raw_bytes)} -> {human_size(report.packed_bytes)}{' (estimated)' if report.dry_run else ''} "
        f"({report.ratio:.2f}x); {report.left_raw} left raw, {report.unpacked} unpacked, {report.kept} already packed"
    )
    gained = "would free" if report.dry_run else "freed"
    click.echo(f"{gained} {human_size(max(report.freed, 0))}; the longest chain decodes in {plural(report.deepest, 'step')}")
    for problem in report.problems:
        echo(f"problem: {problem}")
