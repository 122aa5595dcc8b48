"""``info/models``: the list of models a static HTTP server publishes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import MregError
from mreg.storage.files import write_atomically

if TYPE_CHECKING:
    from mreg.registry import Registry


INFO_MODELS = "info/models"


def write_server_info(registry: Registry) -> None:
    """Write ``info/models``, the list a static HTTP server cannot compute by itself.

    Call it under the creation lock. The list is kept a superset of the models that
    have versions: a new model is listed before its first version is written
    (:func:`list_model`), a removed one is dropped after, so a kill in between
    leaves at most a name too many, which readers skip and fsck notes.
    """
    _write_model_list(registry, [name for name in registry.refs.names() if _listed(registry, name)])


def _listed(registry: Registry, name: str) -> bool:
    """Does ``info/models`` list the model? Those with versions, and any unreadable one (fsck's business)."""
    try:
        return bool(registry.refs.read(name).versions)
    except MregError:
        return True


def read_server_info(registry: Registry) -> list[str] | None:
    """The names ``info/models`` lists, or None when it is missing or unreadable."""
    try:
        return (registry.root / INFO_MODELS).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None


def list_model(registry: Registry, name: str) -> None:
    """Make sure ``info/models`` lists ``name`` (under the creation lock, before its first version)."""
    listed = read_server_info(registry)
    if listed is None:
        write_server_info(registry)
        listed = read_server_info(registry) or []
    if name not in listed:
        _write_model_list(registry, sorted({*listed, name}))


def _write_model_list(registry: Registry, names: list[str]) -> None:
    target = registry.root / INFO_MODELS
    target.parent.mkdir(exist_ok=True)
    write_atomically(target, "".join(f"{name}\n" for name in names).encode("utf-8"))
