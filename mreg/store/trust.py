"""Whose registry it is: a registry found by walking up must belong to the user.

A user who forgot ``mreg init`` runs ``mreg add`` in ``/tmp/work``; mreg walks up
and finds ``/tmp/.mreg``, which another user created. Using it would write the
user's models where that user can read and replace them, and follow that user's
``fallback.url`` for every read. This is git's CVE-2022-24765, and mreg answers it
as git's ``safe.directory`` does: a registry found by walking up from the current
directory is used only if the user owns its ``.mreg`` directory and its config.

Root owns nothing by this rule but what root owns: under ``sudo`` the user who ran
sudo (``SUDO_UID``) counts as the owner, as git does, so ``sudo mreg gc`` works in
one's own registry and root never silently adopts another user's.

A registry someone else owns can be trusted by the user, never by itself (a
registry's own config cannot vouch for it): ``MREG_SAFE_DIRECTORIES`` (paths
separated by ``os.pathsep``) or ``directory`` lines in the ``[safe]`` section of the
user's ``$XDG_CONFIG_HOME/mreg/config`` (``~/.config/mreg/config``) name the
directories that hold trusted registries; ``*`` trusts every one. A registry named
explicitly (``--registry``, ``MREG_DIR``, ``Registry.open(path)``) is not checked:
naming it is trusting it, as git trusts ``GIT_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mreg.errors import MregError, UntrustedRegistryError

SAFE_DIRECTORIES = "MREG_SAFE_DIRECTORIES"
SAFE_KEY = "safe.directory"


def refuse_foreign(registry: Path, *, found_from: Path) -> None:
    """Refuse a registry (its ``.mreg`` directory) found by walking up from ``found_from``
    that another user owns, unless the user trusts it.

    Raises:
        UntrustedRegistryError: naming the directory, its owner and how to trust it.
    """
    owner = foreign_owner(registry)
    if owner is None or trusted(registry):
        return
    project = registry.parent
    raise UntrustedRegistryError(
        f"refusing the registry in {project}: it belongs to {owner_name(owner)}, not to you, and was found by "
        f"walking up from {found_from}; another user's registry would receive your models and choose where "
        f"your reads come from. If you trust it, set {SAFE_DIRECTORIES}={project} or add "
        f"'directory = {project}' under [safe] in {user_config_path()}, or name it with {{path}}; "
        "otherwise run 'mreg init' here for a registry of your own",
        options=("path",),
    )


def foreign_owner(registry: Path) -> int | None:
    """The uid of another user who owns the registry's directory or its config, or None
    when the user owns both (or the platform has no owners to compare)."""
    if not hasattr(os, "geteuid"):
        return None  # Windows: no uid to compare
    statuses = [registry.lstat(), registry.stat(), (registry / "config").stat()]
    return next((status.st_uid for status in statuses if not owned_by_user(status.st_uid)), None)


def owned_by_user(uid: int) -> bool:
    """True when ``uid`` is this user: the effective uid, or for root under sudo, the
    user who ran sudo (git's rule: root trusts root's own and ``SUDO_UID``'s)."""
    euid = os.geteuid()
    if uid == euid:
        return True
    if euid == 0:
        sudo_uid = os.environ.get("SUDO_UID", "")
        return sudo_uid.isascii() and sudo_uid.isdigit() and int(sudo_uid) == uid
    return False


def trusted(registry: Path) -> bool:
    """True when the user named the registry's directory (or ``*``) as safe."""
    named = [entry for entry in os.environ.get(SAFE_DIRECTORIES, "").split(os.pathsep) if entry]
    named += _configured()
    if "*" in named:
        return True
    places = {registry.resolve(), registry.parent.resolve()}
    return any(Path(entry).expanduser().resolve() in places for entry in named if Path(entry).expanduser().is_absolute())


def user_config_path() -> Path:
    """The user's own mreg config: ``$XDG_CONFIG_HOME/mreg/config``, else ``~/.config/mreg/config``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mreg" / "config"


def _configured() -> list[str]:
    from mreg.storage.config import Config  # start-up: read only when a registry is someone else's

    try:
        return Config.load(user_config_path()).get_all(SAFE_KEY)
    except (OSError, MregError):
        return []  # an unreadable user config trusts nothing


def owner_name(uid: int) -> str:
    """``alice (uid 1001)``, or the uid alone where the system has no name for it."""
    import pwd  # start-up: only the error message names the owner

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
