"""Where ``mreg export`` may write: every target checked before a byte is written.

An export refuses, with the directory untouched:

- a destination inside a repository's own directory (``.git``, ``.mreg``, ``.hg``,
  ``.svn``), and any file whose path would enter one or name one, however spelt
  (:func:`mreg.records.paths.protected_segment`): a version's files come from whoever
  registered them, and a file written there is a git hook or a registry entry;
- a version holding both ``f`` and ``f/g`` (no directory tree holds both), and on a
  file system that folds case, two paths that differ only in case;
- a target that exists as a directory or with other bytes, a parent that is a file,
  and a symbolic link that leads outside the destination or into a repository's
  directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import ConflictError
from mreg.records.paths import path_clashes, protected_segment
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry
    from mreg.store.store import Store


class ExportPlan(NamedTuple):
    """What an export will write, and what is already there with the same bytes."""

    to_write: list[tuple[FileEntry, Path]]
    unchanged: list[str]  # paths in the version


def plan_export(store: Store, root: Path, files: tuple[FileEntry, ...]) -> ExportPlan:
    """Check every target of an export into ``root`` (see the module docstring).

    Raises:
        ConflictError: naming the first target that cannot be written; nothing is written.
    """
    inside = protected_segment("/".join(root.resolve().parts[1:]))
    if inside is not None:
        raise ConflictError(f"refusing to export into {root}: it is inside a '{printable(inside)}' directory, which belongs to a repository")
    paths = [entry.path for entry in files]
    for path in paths:
        segment = protected_segment(path)
        if segment is not None:
            raise ConflictError(
                f"refusing to export '{printable(path)}': '{printable(segment)}' names a repository's own directory, "
                "and a file written there would change that repository (nothing was written)"
            )
    clashes = path_clashes(paths)
    if clashes:
        file, path = clashes[0]
        raise ConflictError(f"cannot export both '{printable(file)}' and '{printable(path)}': one file would have to be a directory (nothing was written)")
    _refuse_case_twins(root, paths)
    to_write: list[tuple[FileEntry, Path]] = []
    unchanged: list[str] = []
    for entry in files:
        target = _target(root, entry)
        if existing(store, target, entry):
            unchanged.append(entry.path)
        else:
            to_write.append((entry, target))
    return ExportPlan(to_write, unchanged)


def _target(root: Path, entry: FileEntry) -> Path:
    """Where a file goes; never outside ``root`` nor into a repository's directory, even
    through a symbolic link in it."""
    target = root.joinpath(*entry.path.split("/"))
    real_root, real_parent = root.resolve(), target.parent.resolve()
    if not real_parent.is_relative_to(real_root):
        raise ConflictError(f"cannot export '{printable(entry.path)}': a symbolic link in {root} leads outside it")
    if protected_segment("/".join(real_parent.relative_to(real_root).parts)) is not None:
        raise ConflictError(f"cannot export '{printable(entry.path)}': a symbolic link in {root} leads into a repository's directory")
    return target


def existing(store: Store, target: Path, entry: FileEntry) -> bool:
    """True when ``target`` already holds the file's bytes; False when it is free;
    ConflictError when it holds something else (or a parent is a file)."""
    try:
        status = target.lstat()
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise ConflictError(f"refusing to export {entry.path}: a parent of {target} is a file") from None
    different = f"refusing to overwrite {target}: it exists with other content (export into an empty directory)"
    if not target.is_file() or target.is_symlink() or status.st_size != entry.size:
        raise ConflictError(different)
    blob = store.objects.object_path(entry.digest)
    if blob.exists() and os.path.samefile(blob, target):
        return True
    if store.objects.hash_file(target)[0] != entry.digest:
        raise ConflictError(different)
    return True


def _refuse_case_twins(root: Path, paths: list[str]) -> None:
    """On a file system that folds case, ``Model.bin`` and ``model.bin`` (or ``A/x`` and
    ``a/y``'s directories) are one name: refuse before the second overwrites the first."""
    spellings: dict[str, str] = {}
    twins = None
    for path in paths:
        parts = path.split("/")
        for end in range(1, len(parts) + 1):
            name = "/".join(parts[:end])
            seen = spellings.setdefault(name.casefold(), name)
            if seen != name:
                twins = twins or (seen, name)
    if twins is not None and folds_case(root):
        raise ConflictError(
            f"cannot export both '{printable(twins[0])}' and '{printable(twins[1])}' into {root}: "
            "its file system does not tell them apart (nothing was written)"
        )


def folds_case(directory: Path) -> bool:
    """True when the file system of ``directory`` (or of its nearest existing parent)
    finds a name in another case: macOS and Windows by default."""
    for candidate in (directory, *directory.parents):
        if not candidate.exists():
            continue
        other = candidate.with_name(candidate.name.swapcase())
        if other.name != candidate.name:
            return other.exists() and os.path.samefile(other, candidate)
    return False
