"""Formatting for the terminal: sizes, tables, JSON documents and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from mreg.text import _CONTROLS, _JSON_CONTROLS, human_size, safe, short

if TYPE_CHECKING:
    from mreg.records.refs import LogEntry
    from mreg.records.views import ModelVersion
    from mreg.registry import Registry

PROGRESS_THRESHOLD = 32 << 20  # show a bar only for transfers at least this big


_CONTROLS.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def echo(text: object = "", *, err: bool = False) -> None:
    """``click.echo`` of one line made :func:`safe`."""
    click.echo(safe(text), err=err)


def echo_json(document: Any) -> None:
    """Print one JSON document on stdout (C1 controls escaped too, which JSON allows)."""
    import json  # start-up: only --json needs it

    click.echo(json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False).translate(_JSON_CONTROLS))


def echo_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    """Print left-aligned columns separated by two spaces."""
    cells = [[safe(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)
    click.echo("\n".join(lines))  # one write: a line each costs more than the query at 10,000 rows


def format_metrics(metrics: dict[str, float] | Any) -> str:
    """``{"acc": 0.9}`` -> ``acc=0.9``."""
    return "  ".join(f"{key}={value:g}" for key, value in metrics.items())


def describe_version(view: ModelVersion, *, parents: Sequence[str]) -> list[str]:
    """The lines of ``mreg show``; ``parents`` are the lineage parents, labelled."""
    m = view.manifest
    lines = [f"{m.name}@{m.version}  {view.digest}"]
    if view.tags:
        lines.append(f"tags:         {', '.join(view.tags)}")
    fields = [
        ("family", m.family),
        ("framework", str(m.framework) if m.framework else None),
        ("architecture", m.architecture),
        ("input shape", "x".join(str(d) for d in m.input_shape) if m.input_shape else None),
        ("metrics", format_metrics(m.metrics) if m.metrics else None),
        ("weights", describe_tensors(m.properties)),
    ]
    lines += [f"{label + ':':<13} {value}" for label, value in fields if value]
    lines.append("files:")
    lines += [f"  {f.path}  {human_size(f.size)}  {f.digest}" for f in m.files]
    lineage = m.lineage
    lines.append("lineage:")
    lines.append(f"  created:    {lineage.created} by {lineage.author}")
    for dataset in lineage.datasets:
        where = dataset.digest or dataset.uri
        lines.append(f"  dataset:    {dataset.name}" + (f" ({where})" if where else ""))
    lines += [f"  parent:     {parent}" for parent in parents]
    if lineage.message:
        lines.append(f"  message:    {lineage.message}")
    card = view.card
    shown = TENSOR_SUMMARY if describe_tensors(m.properties) else ()
    hidden = {*shown, "card"} if card is not None else set(shown)  # the card comes last
    properties = sorted((key, value) for key, value in m.properties.items() if key not in hidden)
    if properties:
        lines.append("metadata:")
        lines += [f"  {key}: {compact(value)}" for key, value in properties]
    if card is not None and card.lines():
        lines.append("card:")
        lines += [f"  {line}" for line in card.lines()]
    return [safe(line) for line in lines]


TENSOR_SUMMARY = ("parameters", "weights")
"""The properties in which mreg records the weight files' tensors (:func:`mreg.formats.weights.summarize`)."""


def describe_tensors(properties: Any) -> str | None:
    """The ``weights:`` line of ``mreg show``: the recorded tensor summary, or None if there is none.

    The recorded ``parameters`` counts the elements of every tensor in the files,
    buffers (batch-norm statistics, counters) included, as the Hugging Face Hub counts
    safetensors files: the files do not say which tensors are buffers. So it is shown
    as what it is, tensor elements; torchvision's count of ResNet-18's parameters is
    a little lower.
    """
    elements, weights = properties.get("parameters"), properties.get("weights")
    if not isinstance(elements, int) or not isinstance(weights, dict):
        return None
    tensors, size, dtypes = weights.get("tensors"), weights.get("bytes"), weights.get("dtypes")
    if not isinstance(tensors, int) or not isinstance(size, int) or not isinstance(dtypes, dict):
        return None
    kinds = ", ".join(f"{dtype} x{count}" for dtype, count in sorted(dtypes.items()))
    return f"{tensors:,} tensors, {elements:,} elements (parameters and buffers), {human_size(size)}" + (f"; {kinds}" if kinds else "")


def describe_log_entry(entry: LogEntry) -> str:
    """One line of ``mreg log``."""
    kind, _, name = entry.ref.partition("/")
    if kind == "versions":
        action = f"add {name}  {short(entry.new)}" if entry.new else f"remove {name}  (was {short(entry.old)})"
    elif kind == "tags":
        action = f"tag {name} -> {entry.new}" if entry.new else f"untag {name}"
        action += f"  (was {entry.old})" if entry.old else ""
    elif kind == "notes":
        action = f"note {name}  {short(entry.new)}" if entry.new else f"remove note {name}"
        action += f"  (was {short(entry.old)})" if entry.old else ""
    elif kind in ("signatures", "removed"):  # a signature filed; a tombstone left by a removal
        action = f"{'sign' if kind == 'signatures' else 'tombstone'} {name}  {short(entry.new or entry.old)}"
    else:
        action = f"latest -> {entry.new or 'nothing'}" + (f"  (was {entry.old})" if entry.old else "")
    message = f'  "{entry.message}"' if entry.message and kind == "versions" else ""
    return safe(f"{entry.time}  {entry.author}  {action}{message}")


def echo_warnings(registry: Registry) -> None:
    """Tell the user about fallback stores that failed while a command succeeded anyway."""
    for warning in registry.warnings:
        echo(f"mreg: warning: {' '.join(warning.split())}", err=True)


def compact(value: Any) -> str:
    """A metadata value on one line: text as it is, anything else as JSON."""
    import json  # start-up: only JSON output and metadata values need it

    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class ProgressBar:
    """A byte progress bar on stderr, shown only on a terminal and for big transfers.

    Pass the instance as a ``progress(done, total)`` callback; use it as a context
    manager so the bar is closed.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
                return
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=False)
            self._bar.__enter__()
        self._bar.update(done - self._shown)
        self._shown = done

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
