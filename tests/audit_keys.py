"""SSH keys and allowed signers files for the audit tests, made by OpenSSH's ssh-keygen,
and the third-party check: ``ssh-keygen -Y verify`` of what mreg signed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mreg.records.audit import SignatureStatus

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH), the third-party check, is not installed")

PRINCIPALS = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com"}


def make_key(path: Path, *options: str) -> Path:
    """A new ed25519 key pair at ``path`` and ``path.pub`` (mode 600)."""
    done = subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", path.name, "-t", "ed25519", *options, "-f", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return path


def public_line(key: Path) -> str:
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def allowed_signers(path: Path, keys: dict[str, Path], *names: str, options: str = "") -> Path:
    """An allowed signers file listing ``names`` (alice, bob...) with their keys."""
    lines = [f"{PRINCIPALS[name]} {options + ' ' if options else ''}{public_line(keys[name])}" for name in names]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """alice, bob and carol's keys (carol is in no allowed signers file unless a test puts her there)."""
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_key(directory / name) for name in PRINCIPALS}


def ssh_keygen_verifies(status: SignatureStatus, signers: Path, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    """Check one of mreg's signatures with OpenSSH alone: the statement on standard input,
    the signature in a file, the allowed signers file, at the statement's time."""
    from mreg.signing.statement import Statement

    statement = Statement.parse(status.text.encode("utf-8"))
    signature = tmp / f"{status.digest[7:19]}.sig"
    signature.write_text(status.armor)
    return subprocess.run(statement.ssh_keygen_verify(str(signers), str(signature)), input=status.text.encode("utf-8"), capture_output=True, timeout=60)
