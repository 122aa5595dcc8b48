"""Signing through ``ssh-keygen -Y sign``, for keys mreg cannot use itself.

A passphrase-protected key needs its passphrase, and a key held by ssh-agent needs
the agent: ssh-keygen does both, so mreg runs it as git does for
``gpg.format=ssh``: the message in a file of a private temporary directory,
``ssh-keygen -Y sign -n NAMESPACE -f KEY FILE``, the signature read from
``FILE.sig``. Its standard input is empty, so the passphrase is asked on the
terminal (``/dev/tty``) or through ``SSH_ASKPASS``, never read from a pipe, and the
run is bounded in time.
"""

from __future__ import annotations

from pathlib import Path

from mreg.errors import SigningKeyError
from mreg.signing.files import read_small_file
from mreg.text import printable

DEFAULT_TIMEOUT = 120.0
"""Seconds ssh-keygen may take, a person typing a passphrase included."""
MAX_SIGNATURE_FILE = 64 << 10


def sign_with_ssh_keygen(message: bytes, key_path: Path, namespace: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The armored SSHSIG signature that ``ssh-keygen -Y sign`` makes of ``message``.

    Args:
        message: the bytes to sign.
        key_path: a private key file (perhaps protected by a passphrase), or a public
            key whose private half ssh-agent holds.
        namespace: the signature's namespace (already checked by the caller).
        timeout: seconds before ssh-keygen is stopped.

    Returns:
        The armored signature, as ssh-keygen wrote it (the caller verifies it).

    Raises:
        SigningKeyError: ssh-keygen is missing, fails, or does not finish in time.
    """
    import shutil  # only this rare path needs them: keep importing mreg.signing quick
    import subprocess
    import tempfile

    shown = printable(str(key_path), 200)
    program = shutil.which("ssh-keygen")
    if program is None:
        raise SigningKeyError(
            f"signing with {shown} needs ssh-keygen (the key has a passphrase or is held by ssh-agent), "
            "and ssh-keygen is not installed: install OpenSSH's client"
        )
    with tempfile.TemporaryDirectory(prefix="mreg-sign-") as directory:
        target = Path(directory) / "message"
        target.write_bytes(message)
        # Absolute paths: a key named "-x" must not read as an option.
        command = [program, "-Y", "sign", "-n", namespace, "-f", str(key_path.absolute()), str(target)]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SigningKeyError(
                f"ssh-keygen did not sign with {shown} within {timeout:g} s; if it waited for a passphrase, "
                "run mreg from a terminal, set SSH_ASKPASS, or add the key to ssh-agent"
            ) from None
        except OSError as exc:
            raise SigningKeyError(f"cannot run ssh-keygen: {exc.strerror}") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines() or ["no message"]
            raise SigningKeyError(f"ssh-keygen could not sign with {shown}: {printable(lines[-1], 200)}")
        data, _ = read_small_file(target.with_name("message.sig"), MAX_SIGNATURE_FILE, "ssh-keygen's signature", SigningKeyError)
    return data.decode("ascii", errors="replace")
