"""Who writes and when: the author and time a store's logs record."""

from __future__ import annotations

import os
import time


def now_utc() -> str:
    """The current time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def current_author() -> str:
    """``MREG_AUTHOR``, else git's ``user.name``, else the login name."""
    import getpass  # start-up: only writers ask who they are
    import shutil  # start-up: only writers ask who they are
    import subprocess  # start-up: only writers ask who they are

    author = os.environ.get("MREG_AUTHOR", "").strip()
    if author:
        return author
    git = shutil.which("git")
    if git:
        try:
            result = subprocess.run(
                [git, "config", "user.name"], capture_output=True, text=True, timeout=5, check=False
            )
            if result.returncode == 0 and result.stdout.strip():
                return result.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
