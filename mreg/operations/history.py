"""A model's history as evidence: its hash chain read and replayed (``fsck``, ``verify``).

The checks themselves are :func:`mreg.records.replay.check_history`'s; this module
reads what they need from the store: the log, the head in ``_refs``, the refs, the
notes and the signature index, each read once, none through a link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import MregError
from mreg.records.chain import Chain, parse_chain, table_head
from mreg.records.replay import HistoryReport, check_history
from mreg.storage.refs import LOG_FILE, TABLE_FILE

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.records.reports import FsckReport
    from mreg.store.store import Store


def read_chain(store: Store, name: str) -> Chain:
    """A model's log, read as a chain."""
    return parse_chain(store.refs.read_file(name, LOG_FILE) or b"", f"log of '{name}'")


def model_history(store: Store, name: str) -> HistoryReport:
    """Check one model's history: is its chain intact, and does it explain the model's state?

    Raises:
        MregError: a file of the model cannot be read at all.
    """
    refs = (store.refs.read_file(name, TABLE_FILE) or b"").decode("ascii", errors="replace")
    return check_history(read_chain(store, name), table_head(refs), store.refs.read(name), store.refs.read_notes(name))


def check(store: Store, name: str, report: FsckReport) -> None:
    """fsck's part: add what is wrong with a model's history to ``report``."""
    try:
        history = model_history(store, name)
    except MregError as exc:
        report.problems.append(f"model '{name}': its history cannot be read: {exc}")
        return
    report.problems += [f"model '{name}': {problem}" for problem in history.problems]
    report.notes += [f"model '{name}': {note}" for note in history.notes]


def signature_objects(store: Store, name: str, report: FsckReport | None = None) -> set[Digest]:
    """The signature objects a model's ref table keeps alive (gc); with ``report`` (fsck),
    each one missing, or not a signature object, is a problem."""
    from mreg.records.evidence import SignedStatement  # start-up: only fsck and gc need it

    found = set()
    for _, digest in sorted(store.refs.read_signatures(name)):
        if not store.objects.contains(digest):
            if report is not None:
                report.problems.append(f"model '{name}': signature object {digest} is missing")
            continue
        found.add(digest)
        if report is not None:
            try:
                SignedStatement.decode(store.objects.read_bytes(digest), digest)
            except MregError as exc:
                report.problems.append(f"model '{name}': {exc}")
    return found
