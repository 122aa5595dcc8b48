"""Commands for regulated teams: sign, approve, verify, audit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mreg.cli.app import Session, fail, pass_session
from mreg.cli.errors import ExitCode
from mreg.cli.output import echo, echo_json, echo_table
from mreg.text import plural, short

if TYPE_CHECKING:
    from mreg.records.audit import SignatureStatus, SignResult

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
key_option = click.option("--key", metavar="PATH", help="The SSH key to sign with (default: user.signingkey).")


@click.command()
@click.argument("ref")
@click.option("-m", "--message", "meaning", help="What the signature means (default: 'registered these exact weights').")
@key_option
@json_option
@pass_session
def sign(session: Session, ref: str, meaning: str | None, key: str | None, as_json: bool) -> None:
    """Sign the registration of REF's version: its model, version and manifest digest.

    The signature is an SSH signature (what 'ssh-keygen -Y sign' makes) over a short
    statement; anyone can check it with 'ssh-keygen -Y verify' (docs/audit.md). The
    last line printed is the signature object's digest.
    """
    _print_signed([session.registry.sign(ref, key=key, meaning=meaning)], as_json)


@click.command()
@click.argument("ref")
@click.option("--for", "tag", required=True, metavar="TAG", help="The tag the approval is for, e.g. production.")
@click.option("-m", "--message", "meaning", required=True, help="What the approval means (kept with the signature).")
@click.option("--revoke", is_flag=True, help="Withdraw your approval of REF for TAG (a new signed record; nothing is deleted).")
@key_option
@json_option
@pass_session
def approve(session: Session, ref: str, tag: str, meaning: str, revoke: bool, key: str | None, as_json: bool) -> None:
    """Sign an approval of REF's version for TAG: who, when, and what it means.

    A tag protected with 'mreg config protect.TAG.approvals N' moves only to a version
    with N such approvals from distinct allowed signers.
    """
    _print_signed(session.registry.approve(ref, tag, meaning, key=key, revoke=revoke), as_json)


def _print_signed(results: list[SignResult], as_json: bool) -> None:
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    for r in results:
        what = {"registration": "signed the registration of", "approval": f"approved for {r.tag}", "revocation": f"revoked the approval for {r.tag} of"}
        echo(f"{what.get(r.kind, r.kind)} {r.name}@{r.version} ({short(r.digest)}) as {r.principal} at {r.time}: {r.meaning}", err=True)
        click.echo(r.signature)


@click.command()
@click.argument("ref")
@json_option
@pass_session
def verify(session: Session, ref: str, as_json: bool) -> None:
    """Check REF's version: its signatures and approvals against the trust root, the
    protected tags that point at it, and its model's history chain.

    Exits 0 only when everything checked is valid; otherwise names each failure.
    """
    report = session.registry.verify(ref)
    if as_json:
        echo_json(report.to_dict())
    else:
        echo(f"{report.name}@{report.version}  {report.digest}")
        echo(f"trust:      {report.trust or 'none configured'}")
        for status in report.signatures:
            echo(_describe(status))
        for result in report.approvals:
            counted = f"{len(result.counted)} of {result.required}" + (f" ({', '.join(result.counted)})" if result.counted else "")
            state = "met" if not result.problems else "NOT met"
            echo(f"approvals:  {result.tag}: {counted}: {state}" + ("" if result.points_here else " (the tag points elsewhere)"))
        echo(f"history:    {'intact' if report.history_intact else 'BROKEN'}")
        for failure in report.failures:
            echo(f"problem: {failure}")
    if not report.ok:
        fail(f"verify found {plural(len(report.failures), 'problem')}: {report.failures[0]}", ExitCode.FAILURE)


def _describe(status: SignatureStatus) -> str:
    what = status.kind + (f" for {status.tag}" if status.tag and status.kind != "revocation" else "")
    revoked = f", revoked by {short(status.revoked_by)}" if status.revoked_by else ""
    return f"signature:  {what} by {status.principal} at {status.time}: {status.status}{revoked} ({status.meaning}); {status.reason}"


@click.command()
@click.argument("name")
@click.option("--since", metavar="DATE", help="Only entries from this date or time on (ISO 8601, e.g. 2026-03-01).")
@json_option
@pass_session
def audit(session: Session, name: str, since: str | None, as_json: bool) -> None:
    """Print a model's complete trail, oldest first: every registration, removal,
    promotion, note, signature and approval, with who, when, what it meant and whether
    its signature holds. Exits non-zero when the history chain is broken."""
    report = session.registry.audit(name, since=since)
    if as_json:
        echo_json(report.to_dict())
    else:
        rows = []
        for e in report.events:
            signed = f"{e.signer}: {e.signature}" if e.signer else ("unreadable" if e.signature else "")
            rows.append((e.time, e.action, e.subject, e.author, e.detail, signed, f"via {e.via}" if e.via else ""))
        echo_table(rows, ("TIME", "ACTION", "SUBJECT", "BY", "DETAIL", "SIGNED", "FROM"))
        for problem in report.history:
            echo(f"problem: {problem}")
    if not report.history_intact:
        fail(f"the history of '{name}' is not intact: {report.history[0]}", ExitCode.FAILURE)
