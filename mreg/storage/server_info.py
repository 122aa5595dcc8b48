"""``info/models``: the list of models a static HTTP server publishes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import MregError
from mreg.storage.files import write_atomically

if TYPE_CHECKING:
    from mreg.storage.refs import RefStore


INFO_MODELS = "info/models"


def write_server_info(refs: RefStore) -> None:
    """Write ``info/models``, the list a static HTTP server cannot compute by itself.

    Call it under the creation lock. The list is kept a superset of the models that
    have versions: a new model is listed before its first version is written
    (:func:`list_model`), a removed one is dropped after, so a kill in between
    leaves at most a name too many, which readers skip and fsck notes.
    """
    _write_model_list(refs, [name for name in refs.names() if _listed(refs, name)])


def _listed(refs: RefStore, name: str) -> bool:
    """Does ``info/models`` list the model? Those with versions, and any unreadable one (fsck's business)."""
    try:
        return bool(refs.read(name).versions)
    except MregError:
        return True


def read_server_info(refs: RefStore) -> list[str] | None:
    """The names ``info/models`` lists, or None when it is missing or unreadable."""
    try:
        return (refs.root / INFO_MODELS).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None


def list_model(refs: RefStore, name: str) -> None:
    """Make sure ``info/models`` lists ``name`` (under the creation lock, before its first version)."""
    listed = read_server_info(refs)
    if listed is None:
        write_server_info(refs)
        listed = read_server_info(refs) or []
    if name not in listed:
        _write_model_list(refs, sorted({*listed, name}))


def _write_model_list(refs: RefStore, names: list[str]) -> None:
    target = refs.root / INFO_MODELS
    target.parent.mkdir(exist_ok=True)
    write_atomically(target, "".join(f"{name}\n" for name in names).encode("utf-8"))
