"""Commands that involve other registries: config, pull, push, clone, update-server-info."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mreg.cli.app import Session, fail, init_path, pass_session
from mreg.cli.errors import ExitCode
from mreg.cli.output import ProgressBar, echo_json
from mreg.registry import Registry
from mreg.text import human_size

if TYPE_CHECKING:
    from mreg.records.transfer_report import TransferReport

force_option = click.option("-f", "--force", is_flag=True, help="Move tags that point elsewhere on the other side.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.command(name="config")
@click.argument("key", required=False)
@click.argument("value", required=False)
@click.option("--add", "mode", flag_value="add", help="Add a value to a key that can repeat (fallback.url).")
@click.option("--unset", "mode", flag_value="unset", help="Remove every value of KEY.")
@click.option("--get-all", "mode", flag_value="get-all", help="Print every value of KEY, in order.")
@click.option("-l", "--list", "mode", flag_value="list", help="Print every key and value.")
@pass_session
def config(session: Session, key: str | None, value: str | None, mode: str | None) -> None:
    """Read or change the registry's config (.mreg/config), as 'git config' does.

    \b
      mreg config fallback.url                  print the last value
      mreg config --add fallback.url /mnt/team  add a fallback store (tried in order)
      mreg config remote.team.url /mnt/team     set a value (a remote for push/pull)
      mreg config remote.s3.url s3://bucket/reg a remote in a bucket; with it:
      mreg config remote.s3.endpoint URL        an S3-compatible endpoint (MinIO, R2)
      mreg config remote.s3.region eu-west-1    its region (secrets: environment only)
      mreg config --unset fallback.url          remove every value
    """
    registry = session.registry
    if mode == "list":
        for entry in registry.config.entries:
            click.echo(f"{entry.name}={entry.value}")
        return
    if key is None:
        raise click.UsageError("give a KEY (or --list)")
    if mode == "unset":
        registry.set_config(key, None)
    elif value is not None:
        registry.set_config(key, value, add=mode == "add")
    else:
        values = registry.config.get_all(key)
        if not values:
            fail(f"no value for '{key}'", ExitCode.FAILURE)
        for shown in values if mode == "get-all" else values[-1:]:
            click.echo(shown)


@click.command()
@click.argument("source", metavar="SOURCE")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@force_option
@click.option(
    "--require-signed/--no-require-signed", default=None,
    help="Refuse versions without a valid registration signature by an allowed signer (default: pull.requiresigned).",
)
@json_option
@pass_session
def pull(session: Session, source: str, names: tuple[str, ...], force: bool, require_signed: bool | None, as_json: bool) -> None:
    """Copy models (all, or NAMEs) from another registry: a path, an http(s) URL, a bucket
    (s3://, gs://, az://) or a remote name.

    Only the objects this registry lacks are copied, and each is verified against its
    digest. A version that differs on the two sides stops the pull before anything is
    copied. What arrives is checked against this registry's trust root and policy
    (protected tags, signed versions), and the source's history must only have grown
    since the last pull.
    """
    with ProgressBar("pulling") as progress:
        report = session.registry.pull(source, names, force=force, progress=progress, require_signed=require_signed)
    _print_report(report, as_json)


@click.command()
@click.argument("destination", metavar="DESTINATION")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@force_option
@json_option
@pass_session
def push(session: Session, destination: str, names: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Copy models (all, or NAMEs) into another registry: a path, a bucket (s3://, gs://,
    az://) or a remote name.

    Only what the destination lacks is copied, verified as it is read; refs change
    last, by compare-and-swap, so a push killed midway leaves nothing behind that
    a later push, pull or clone trips over.
    """
    with ProgressBar("pushing") as progress:
        report = session.registry.push(destination, names, force=force, progress=progress)
    _print_report(report, as_json)


@click.command()
@click.argument("source", metavar="SOURCE")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@json_option
@pass_session
def clone(session: Session, source: str, directory: str | None, as_json: bool) -> None:
    """Create a registry in DIRECTORY (default: here) with every model of SOURCE, as remote 'origin'."""
    with ProgressBar("cloning") as progress:
        registry, report = Registry.clone(source, init_path(session, directory), progress=progress)
    click.echo(f"cloned {source} into {registry.root}", err=True)
    _print_report(report, as_json)


@click.command(name="update-server-info")
@pass_session
def update_server_info(session: Session) -> None:
    """Rewrite .mreg/info/models, the list of models a static HTTP server publishes.

    mreg keeps it current itself; run this after copying a store by other means.
    """
    session.registry.update_server_info()


def _print_report(report: TransferReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.to_dict())
        return
    for version in report.versions:
        click.echo(f"new version {version}")
    for tag in report.tags:
        click.echo(f"tag {tag}")
    for noted in report.notes:
        click.echo(f"note on {noted}")
    for signed in report.signatures:
        click.echo(f"signature on {signed}")
    if not (report.objects or report.versions or report.tags or report.notes or report.signatures):
        click.echo(f"{report.destination} is up to date with {report.source}")
    else:
        click.echo(f"{report.objects} object(s) copied ({human_size(report.bytes)}) from {report.source} to {report.destination}")
