"""Commands that compare and measure: diff, du."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from mreg.cli.app import Session, pass_session
from mreg.cli.output import compact, echo_json, echo_table
from mreg.text import human_size, safe, short

if TYPE_CHECKING:
    from mreg.records.diffs import FileChange, TensorChange, VersionDiff

MAX_TENSOR_LINES = 20


@click.command()
@click.argument("old_ref", metavar="REF")
@click.argument("new_ref", metavar="REF")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_session
def diff(session: Session, old_ref: str, new_ref: str, as_json: bool) -> None:
    """Show what changed between two versions: metadata, metrics, files and tensors.

    Without torch installed, tensors are compared by their bytes (no max |diff|).
    """
    try:
        from mreg.pytorch.compare import (
            compare_weight_files,  # imports torch, for weight files
        )

        compare: Any = compare_weight_files
    except ImportError:
        compare = True  # without torch: tensors compared by their bytes
    result = session.registry.diff(old_ref, new_ref, compare_tensors=compare)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo("\n".join(safe(line) for line in describe_diff(result)))


def describe_diff(result: VersionDiff) -> list[str]:
    """The lines of ``mreg diff``."""
    lines = [f"{result.old} ({short(result.old_digest)}) -> {result.new} ({short(result.new_digest)})"]
    if result.fields:
        lines.append("metadata:")
        lines += [f"  {f.field}: {_value(f.old)} -> {_value(f.new)}" for f in result.fields]
    if result.metrics:
        lines.append("metrics:")
        for m in result.metrics:
            delta = f"  ({m.delta:+g})" if m.delta is not None else ""
            lines.append(f"  {m.name}: {_value(m.old)} -> {_value(m.new)}{delta}")
    lines.append("files:")
    for change in result.files:
        lines += _describe_file(change)
    return lines


def _describe_file(change: FileChange) -> list[str]:
    old_size = human_size(change.old.size) if change.old else "-"
    new_size = human_size(change.new.size) if change.new else "-"
    moved = change.old is not None and change.new is not None and change.old.path != change.new.path
    name = f"{change.old.path} -> {change.new.path}" if moved else change.path  # type: ignore[union-attr]
    lines = [f"  {change.status:<9} {name}  {old_size} -> {new_size}"]
    tensors = change.tensors
    if tensors is None:
        return lines
    lines.append(
        f"    tensors: {len(tensors.changed)} changed, {len(tensors.added)} added, {len(tensors.removed)} removed; "
        f"{tensors.unchanged} unchanged ({human_size(tensors.unchanged_bytes)})"
    )
    rows = [("changed", c.old.name, f"{_spec(c.old)} -> {_spec(c.new)}", _change_detail(c)) for c in tensors.changed]
    rows += [("added", t.name, _spec(t), "") for t in tensors.added]
    rows += [("removed", t.name, _spec(t), "") for t in tensors.removed]
    for row in rows[:MAX_TENSOR_LINES]:
        lines.append("    " + "  ".join(cell for cell in row if cell))
    if len(rows) > MAX_TENSOR_LINES:
        lines.append(f"    ... and {len(rows) - MAX_TENSOR_LINES} more (see --json)")
    return lines


def _spec(tensor: Any) -> str:
    return f"{tensor.dtype}{list(tensor.shape)}"


def _change_detail(change: TensorChange) -> str:
    if change.kind != "values":
        return f"({change.kind})"
    parts = []
    if change.max_abs_diff is not None:
        parts.append(f"max |diff| {change.max_abs_diff:.4g}" if isinstance(change.max_abs_diff, float) else f"max |diff| {change.max_abs_diff}")
    if change.nonfinite_changed:
        parts.append(f"{change.nonfinite_changed} NaN/inf position(s) changed")
    return ", ".join(parts) or "(values)"


def _value(value: Any) -> str:
    return "-" if value is None else compact(value)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_session
def du(session: Session, as_json: bool) -> None:
    """Show registered (logical) bytes against stored bytes, per model and in total."""
    report = session.registry.disk_usage()
    if as_json:
        echo_json(report.to_dict())
        return
    rows = [
        (m.name, str(m.versions), human_size(m.logical), human_size(m.stored), f"{m.ratio:.2f}x") for m in report.models
    ]
    rows.append(("total", "", human_size(report.logical), human_size(report.stored), f"{report.ratio:.2f}x"))
    echo_table(rows, ("MODEL", "VERSIONS", "REGISTERED", "STORED", "DEDUP"))
    if report.packed_raw:
        click.echo(
            f"packed: {human_size(report.packed_raw)} of chunks stored in {human_size(report.packed_stored)} "
            f"({report.packed_stored / report.packed_raw:.2f}x): packing saved {human_size(report.packing_saved)}"
        )
    if report.unreachable or report.cache or report.bases:
        bases = f", {human_size(report.bases)} kept as bases of packed objects ('mreg pack' re-encodes them)" if report.bases else ""
        click.echo(
            f"also on disk: {human_size(report.unreachable)} unreachable ('mreg gc' removes it), "
            f"{human_size(report.cache)} of files assembled for 'mreg path'{bases}"
        )
