"""File paths of a version as they meet a real directory tree: clashes and protected names.

:func:`mreg.records.names.validate_file_path` decides what a recorded path may look
like; this module what a set of paths may hold once written out (``mreg export``):
no file that another path needs as a directory, no segment that names a
repository's own directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mreg.errors import InvalidInputError
from mreg.text import printable

_REPOSITORY_DIRS = frozenset({".git", ".mreg", ".hg", ".svn"})
_SHORT_NAME = re.compile(r"(git|mreg|hg|svn)~[0-9]+", re.ASCII)  # NTFS 8.3 names of the above
# Code points HFS+ ignores in names (git's is_hfs_dotgit): ".g\u200cit" is ".git" there.
_IGNORABLE = dict.fromkeys([*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])

def protected_segment(path: str) -> str | None:
    """The first segment of a '/'-separated path that names a repository's own directory
    (``.git``, ``.mreg``, ``.hg``, ``.svn``), or None.

    A file written under such a name changes that repository: a git hook, a registry
    entry, a ``.git`` file that moves the repository elsewhere. Names are compared as
    the file systems that fold them do, as git compares them (``.GIT``, ``.git.``, the
    8.3 name ``GIT~1``, ``.g\\u200cit`` on HFS+ all name ``.git`` somewhere).
    """
    for segment in path.split("/"):
        folded = segment.translate(_IGNORABLE).casefold().rstrip(". ")
        if folded in _REPOSITORY_DIRS or _SHORT_NAME.fullmatch(folded):
            return segment
    return None


def path_clashes(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs ``(file, path)`` where ``path`` needs ``file`` to be a directory (``f`` and ``f/g``).

    No directory tree holds both, so such files can never all be written out.
    """
    files = set(paths)
    clashes = []
    for path in sorted(files):
        parts = path.split("/")
        above = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in files), None)
        if above is not None:
            clashes.append((above, path))
    return clashes


def refuse_path_clashes(paths: Iterable[str]) -> None:
    """InvalidInputError naming the first file another path needs as a directory (see :func:`path_clashes`)."""
    clashes = path_clashes(paths)
    if clashes:
        file, path = clashes[0]
        raise InvalidInputError(
            f"'{printable(file)}' cannot be both a file and the directory of '{printable(path)}': "
            "rename one of them (a version's files must fit in one directory tree)"
        )
