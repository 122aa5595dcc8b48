"""SSH signatures (mreg.signing), checked against OpenSSH's own ssh-keygen.

The third-party check: whatever mreg signs, ``ssh-keygen -Y verify`` (with an allowed
signers file) and ``ssh-keygen -Y check-novalidate`` accept; whatever ssh-keygen
signs, mreg verifies; and mreg's allowed signers decisions are those of ssh-keygen
on the same file, principal, namespace and time. Every failure is one clear
``MregError``. Keys are made by ssh-keygen in temporary directories.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mreg.errors import AllowedSignersError, MregError, SignatureError, SignerNotAllowedError, SigningKeyError, StatementError
from mreg.signing import allowed_signers, sshsig
from mreg.signing.attestation import verify_statement
from mreg.signing.statement import Statement
from mreg.signing.wire import mpint, string

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH), the third-party check, is not installed")
pytest.importorskip("cryptography", reason="mreg.signing needs the cryptography package (mreg[sign])")

MESSAGE = b"mreg-statement v1\nkind registration\n"
ALICE = "alice@example.com"
KEY_TYPES = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa-p256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa-p384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa-p521": ["-t", "ecdsa", "-b", "521"],
    "rsa": ["-t", "rsa", "-b", "2048"],
    "rsa-pem": ["-t", "rsa", "-b", "2048", "-m", "PEM"],
    "ecdsa-pkcs8": ["-t", "ecdsa", "-b", "256", "-m", "PKCS8"],
}
DIGEST = "sha256:" + "1c" * 32


def ssh_keygen(*args: str, data: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ssh-keygen (bounded in time)."""
    return subprocess.run(["ssh-keygen", *args], input=data, capture_output=True, timeout=60, env=env, check=False)


def make_key(path: Path, *options: str, passphrase: str = "") -> Path:
    """A new key pair at ``path`` and ``path.pub``."""
    done = ssh_keygen("-q", "-N", passphrase, "-C", "test key", "-f", str(path), *options)
    assert done.returncode == 0, done.stderr
    return path


def public_line(key: Path) -> str:
    """``TYPE BASE64`` of a key, from its ``.pub`` file."""
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def fingerprint(key: Path) -> str:
    """The fingerprint ``ssh-keygen -l`` prints for a key."""
    return ssh_keygen("-l", "-f", f"{key}.pub").stdout.decode().split()[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One unencrypted key of each kind, made once for the module (never modified)."""
    directory = tmp_path_factory.mktemp("keys")
    found = {name: make_key(directory / name, *options) for name, options in KEY_TYPES.items()}
    found["other"] = make_key(directory / "other", "-t", "ed25519")
    return found


def signers_file(directory: Path, *lines: str) -> Path:
    """An allowed signers file with ``lines``."""
    path = directory / "allowed_signers"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def ssh_verify(signers: Path, principal: str, signature: str, message: bytes, namespace: str = "mreg",
               at: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """``ssh-keygen -Y verify`` of ``signature`` (armored text) over ``message``."""
    sig = signers.parent / "message.sig"
    sig.write_text(signature)
    extra = [f"-Overify-time={at}"] if at else []
    return ssh_keygen("-Y", "verify", "-f", str(signers), "-I", principal, "-n", namespace, "-s", str(sig), *extra, data=message)


def ssh_sign(key: Path, message: bytes, namespace: str = "mreg", *options: str) -> str:
    """What ``ssh-keygen -Y sign`` writes for ``message``."""
    done = ssh_keygen("-Y", "sign", "-f", str(key), "-n", namespace, *options, data=message)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


# ------------------------------------------------------------- mreg signs, OpenSSH checks


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_ssh_keygen_verifies_what_mreg_signs(kind: str, keys: dict[str, Path], tmp_path: Path) -> None:
    """Each key type and file format: -Y verify, -Y check-novalidate and -Y find-principals accept it."""
    armored = sshsig.sign(MESSAGE, keys[kind])
    signers = signers_file(tmp_path, f"{ALICE} {public_line(keys[kind])}")
    done = ssh_verify(signers, ALICE, armored, MESSAGE)
    assert done.returncode == 0, done.stderr
    assert f'Good "mreg" signature for {ALICE}' in done.stdout.decode()
    novalidate = ssh_keygen("-Y", "check-novalidate", "-n", "mreg", "-s", str(tmp_path / "message.sig"), data=MESSAGE)
    assert novalidate.returncode == 0, novalidate.stderr
    found = ssh_keygen("-Y", "find-principals", "-f", str(signers), "-s", str(tmp_path / "message.sig"))
    assert found.stdout.decode().split() == [ALICE]
    assert ssh_verify(signers, ALICE, armored, MESSAGE + b"!").returncode != 0  # the check itself can fail


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_mreg_verifies_what_ssh_keygen_signs(kind: str, keys: dict[str, Path]) -> None:
    """The key returned is the signer's, with the fingerprint ssh-keygen -l prints."""
    key = sshsig.verify(MESSAGE, ssh_sign(keys[kind], MESSAGE))
    assert key.fingerprint == fingerprint(keys[kind])
    assert key.openssh == public_line(keys[kind])


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_deterministic_signatures_are_the_bytes_ssh_keygen_writes(kind: str, keys: dict[str, Path]) -> None:
    """ed25519 and RSA PKCS#1 v1.5 are deterministic: the armored texts are identical."""
    assert sshsig.sign(MESSAGE, keys[kind]) == ssh_sign(keys[kind], MESSAGE)


def test_a_sha256_signature_verifies(keys: dict[str, Path]) -> None:
    """ssh-keygen -O hashalg=sha256 makes a signature over SHA-256 of the message: accepted."""
    armored = ssh_sign(keys["ecdsa-p256"], MESSAGE, "mreg", "-O", "hashalg=sha256")
    assert sshsig.read(armored).hash_algorithm == "sha256"
    assert sshsig.verify(MESSAGE, armored).fingerprint == fingerprint(keys["ecdsa-p256"])


def test_a_signature_made_by_mreg_is_verified_before_it_is_returned(keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A signer that produced a bad signature (a hardware fault, a bug) is caught at signing."""
    from mreg.signing import algorithms

    real = algorithms.sign_raw
    monkeypatch.setattr("mreg.signing.keys.sign_raw", lambda key, data, what: real(key, data + b"x", what))
    with pytest.raises(SignatureError, match="does not match"):
        sshsig.sign(MESSAGE, keys["ed25519"])


# --------------------------------------------------- keys that need ssh-keygen: passphrase, agent


def askpass(directory: Path, passphrase: str, delay: float = 0) -> dict[str, str]:
    """An environment in which ssh-keygen reads its passphrase from a script (no terminal needed)."""
    script = directory / "askpass.sh"
    script.write_text(f"#!/bin/sh\nsleep {delay}\necho '{passphrase}'\n")
    script.chmod(0o700)
    return {"SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}


def test_a_passphrase_protected_key_signs_through_ssh_keygen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The passphrase comes from SSH_ASKPASS; the signature verifies in ssh-keygen and mreg."""
    key = make_key(tmp_path / "protected", "-t", "ed25519", passphrase="correct horse")
    for name, value in askpass(tmp_path, "correct horse").items():
        monkeypatch.setenv(name, value)
    armored = sshsig.sign(MESSAGE, key)
    assert sshsig.verify(MESSAGE, armored).fingerprint == fingerprint(key)
    assert ssh_verify(signers_file(tmp_path, f"{ALICE} {public_line(key)}"), ALICE, armored, MESSAGE).returncode == 0


def test_a_wrong_passphrase_is_ssh_keygens_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key(tmp_path / "protected", "-t", "ed25519", passphrase="correct horse")
    for name, value in askpass(tmp_path, "wrong").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SigningKeyError, match="ssh-keygen could not sign with .*protected.*incorrect passphrase"):
        sshsig.sign(MESSAGE, key)


def test_a_passphrase_that_never_comes_stops_at_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key(tmp_path / "protected", "-t", "ed25519", passphrase="correct horse")
    for name, value in askpass(tmp_path, "correct horse", delay=30).items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(SigningKeyError, match="did not sign with .* within 1 s"):
        sshsig.sign(MESSAGE, key, timeout=1)
    assert time.monotonic() - started < 10


def test_without_ssh_keygen_a_protected_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key(tmp_path / "protected", "-t", "ed25519", passphrase="correct horse")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SigningKeyError, match="needs ssh-keygen .* not installed"):
        sshsig.sign(MESSAGE, key)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An ssh-agent of our own on a socket in the test directory (stopped by its pid)."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent is not installed")
    socket = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        yield socket
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_a_key_held_by_ssh_agent_signs_through_its_public_key(agent: Path, tmp_path: Path) -> None:
    """Given only KEY.pub, ssh-keygen asks the agent; the private key file is gone."""
    key = make_key(tmp_path / "agentkey", "-t", "ed25519")
    added = subprocess.run(["ssh-add", str(key)], capture_output=True, timeout=30, check=False)
    assert added.returncode == 0, added.stderr
    key.unlink()
    armored = sshsig.sign(MESSAGE, f"{key}.pub")
    assert sshsig.verify(MESSAGE, armored).openssh == public_line(key)


# ------------------------------------------------------------------------ key file refusals


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_others_can_read_is_refused(mode: int, keys: dict[str, Path], tmp_path: Path) -> None:
    """As ssh refuses it: one line naming the file and chmod 600; no key bytes in it."""
    key = tmp_path / "id_test"
    shutil.copyfile(keys["ed25519"], key)
    key.chmod(mode)
    with pytest.raises(SigningKeyError) as caught:
        sshsig.sign(MESSAGE, key)
    message = str(caught.value)
    assert f"permissions {mode:04o} on signing key {key} are too open" in message and f"chmod 600 {key}" in message
    secret_lines = [line for line in key.read_text().splitlines() if not line.startswith("-----")]
    assert not any(line[:20] in message for line in secret_lines)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: None, "signing key .*missing does not exist"),
        (lambda p: p.mkdir(), "signing key .*missing is a directory"),
        (lambda p: os.mkfifo(p), "signing key .*missing is not a regular file"),
        (lambda p: p.write_text("hello\n"), "neither a private key .* nor the public key"),
        (lambda p: (p.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), p.chmod(0o600)),
         "is not a private key mreg can read"),
        (lambda p: p.write_bytes(b"x" * (65 << 10)), "more than the 65536 allowed"),
    ],
    ids=["missing", "directory", "fifo", "not-a-key", "damaged-key", "too-large"],
)
def test_key_files_that_cannot_sign_are_clear_errors(setup, expected: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "missing"
    setup(path)
    with pytest.raises(SigningKeyError, match=expected) as caught:
        sshsig.sign(MESSAGE, path)
    assert isinstance(caught.value, MregError) and "\n" not in str(caught.value)


@pytest.mark.filterwarnings("ignore:DSA is deprecated")  # cryptography warns of what the test checks
def test_keys_mreg_does_not_sign_with_are_named(tmp_path: Path) -> None:
    """A DSA key (SHA-1 only) loads in cryptography but is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa

    key = tmp_path / "dsa"
    private = dsa.generate_private_key(2048)
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    with pytest.raises(SigningKeyError, match="is a DSAPrivateKey; mreg signs with ed25519, ecdsa and rsa keys"):
        sshsig.sign(MESSAGE, key)


@pytest.mark.parametrize("namespace", ["", "-n", "a b", "x" * 65, "ns\n"])
def test_invalid_namespaces_are_refused(namespace: str, keys: dict[str, Path]) -> None:
    with pytest.raises(SignatureError, match="invalid signature namespace"):
        sshsig.sign(MESSAGE, keys["ed25519"], namespace)


# --------------------------------------------------------------------- signatures that fail


def test_a_changed_message_does_not_verify(keys: dict[str, Path]) -> None:
    armored = sshsig.sign(MESSAGE, keys["ecdsa-p384"])
    with pytest.raises(SignatureError, match="does not match: the message was changed, or ecdsa-sha2-nistp384 key SHA256:"):
        sshsig.verify(MESSAGE.replace(b"registration", b"approval"), armored)


def test_a_signature_for_another_namespace_is_refused(keys: dict[str, Path]) -> None:
    """A signature made for git (commits) never counts as an mreg signature, and back."""
    with pytest.raises(SignatureError, match="made for namespace 'git', not 'mreg'"):
        sshsig.verify(MESSAGE, ssh_sign(keys["ed25519"], MESSAGE, "git"))
    with pytest.raises(SignatureError, match="made for namespace 'mreg', not 'file'"):
        sshsig.verify(MESSAGE, sshsig.sign(MESSAGE, keys["ed25519"]), "file")


def test_a_signature_whose_key_was_swapped_does_not_verify(keys: dict[str, Path]) -> None:
    """Putting another key into the blob does not make that key the signer."""
    found = sshsig.read(sshsig.sign(MESSAGE, keys["ed25519"]))
    other = sshsig.verify(MESSAGE, sshsig.sign(MESSAGE, keys["other"]))
    forged = sshsig.Signature(other, found.namespace, found.hash_algorithm, found.signature).armor()
    with pytest.raises(SignatureError, match="does not match"):
        sshsig.verify(MESSAGE, forged)


def armor_of(blob: bytes) -> str:
    encoded = base64.b64encode(blob).decode()
    return f"{sshsig.BEGIN}\n{encoded}\n{sshsig.END}\n"


def blob_with(keys: dict[str, Path], **changes: bytes) -> bytes:
    """A valid signature's blob with some fields replaced (raw wire bytes)."""
    found = sshsig.read(sshsig.sign(MESSAGE, keys["ed25519"]))
    fields = {
        "magic": b"SSHSIG",
        "version": (1).to_bytes(4, "big"),
        "key": string(found.public_key.blob),
        "namespace": string(b"mreg"),
        "reserved": string(b""),
        "hash": string(b"sha512"),
        "signature": string(found.signature),
        "trailer": b"",
    }
    fields.update(changes)
    return b"".join(fields.values())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda a: a[: len(a) // 2], "has no '-----END SSH SIGNATURE-----' line"),
        (lambda a: a.replace("-----BEGIN SSH SIGNATURE-----", "-----BEGIN PGP SIGNATURE-----"), "does not start with"),
        (lambda a: a.replace("U1NIU0lH", "U1NIU0l*"), "is not base64"),
        (lambda a: a.replace("U1NIU0lH", "U1NIU0l"), "base64 is invalid"),
        (lambda a: a[:40] + "=" + a[41:], "base64"),
        (lambda a: a + "trailing words\n", "text follows its last line"),
        (lambda a: a.replace("\n", "\n\n", 2)[:-1] + "é", "not base64|text follows"),
        (lambda a: "x" * (17 << 10), "more than the 16384 allowed"),
        (lambda a: f"{sshsig.BEGIN}\n\n{sshsig.END}\n", "it is empty"),
    ],
    ids=["truncated", "wrong-header", "bad-character", "bad-length", "padding-inside", "trailing-text", "non-ascii",
         "too-long", "empty"],
)
def test_garbled_armor_is_refused(change, expected: str, keys: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    armored = change(sshsig.sign(MESSAGE, keys["ed25519"]))
    with pytest.raises(SignatureError, match=expected):
        sshsig.verify(MESSAGE, armored)


def test_one_blob_has_one_armor() -> None:
    """Base64 with stray bits in its last character decodes to the same bytes: refused, so
    that two texts never carry one signature."""
    assert sshsig.dearmor(f"{sshsig.BEGIN}\nYWJjZA==\n{sshsig.END}\n") == b"abcd"
    with pytest.raises(SignatureError, match="base64 is not in canonical form"):
        sshsig.dearmor(f"{sshsig.BEGIN}\nYWJjZB==\n{sshsig.END}\n")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"magic": b"SSHSIH"}, "does not start with SSHSIG"),
        ({"version": (2).to_bytes(4, "big")}, "has version 2; mreg reads version 1"),
        ({"version": (0).to_bytes(4, "big")}, "has version 0"),
        ({"key": b"\xff\xff\xff\xff"}, "claims 4294967295 bytes, more than the 8192 allowed"),
        ({"key": string(string(b"ssh-dss") + string(b"x"))}, "ssh-dss key: unsupported key type"),
        ({"key": string(string(b"ssh-ed25519-cert-v01@openssh.com"))}, "SSH certificates are not supported"),
        ({"key": string(string(b"ssh-ed25519") + string(b"short"))}, "an ed25519 key is not 32 bytes"),
        ({"key": string(string(b"ssh-rsa") + mpint(65537) + mpint(2**511 + 1))}, "RSA key of 512 bits; at least 1024"),
        ({"key": string(string(b"ssh-rsa") + string(b"\x00\x01") + mpint(2**1023 + 1))}, "needless leading zero"),
        ({"namespace": string(b"")}, "its namespace is empty"),
        ({"namespace": string(b"\xff")}, "its namespace is not UTF-8"),
        ({"reserved": string(b"tag")}, "reserved field is not empty"),
        ({"hash": string(b"sha1")}, "uses hash sha1; mreg accepts sha512, sha256"),
        ({"signature": string(string(b"ssh-ed25519") + string(b"\0" * 63))}, "ed25519 signature is not 64 bytes"),
        ({"signature": string(string(b"rsa-sha2-512") + string(b"\0" * 64))}, "uses rsa-sha2-512 but its key is ssh-ed25519"),
        ({"trailer": b"\0"}, "1 bytes follow its last field"),
    ],
    ids=["magic", "newer-version", "version-0", "huge-length", "dsa", "certificate", "short-key", "small-rsa",
         "non-minimal-integer", "empty-namespace", "binary-namespace", "reserved", "sha1", "short-signature",
         "algorithm-mismatch", "trailing-bytes"],
)
def test_malformed_blobs_are_refused(changes: dict[str, bytes], expected: str, keys: dict[str, Path]) -> None:
    with pytest.raises(SignatureError, match=expected) as caught:
        sshsig.verify(MESSAGE, armor_of(blob_with(keys, **changes)))
    assert "\n" not in str(caught.value)


def test_sha1_rsa_signatures_are_refused(keys: dict[str, Path]) -> None:
    """ssh-rsa (RSA with SHA-1) is refused as OpenSSH's SSHSIG refuses it."""
    found = sshsig.read(sshsig.sign(MESSAGE, keys["rsa"]))
    raw = found.signature[4 + len(b"rsa-sha2-512") :]
    legacy = string(b"ssh-rsa") + raw
    armored = sshsig.Signature(found.public_key, "mreg", "sha512", legacy).armor()
    with pytest.raises(SignatureError, match="uses ssh-rsa, not one of rsa-sha2-512, rsa-sha2-256"):
        sshsig.verify(MESSAGE, armored)


def test_an_ecdsa_point_off_its_curve_is_refused(keys: dict[str, Path]) -> None:
    found = sshsig.read(sshsig.sign(MESSAGE, keys["ecdsa-p256"]))
    blob = found.public_key.blob[:-1] + bytes([found.public_key.blob[-1] ^ 1])
    forged = sshsig.Signature(sshsig.public_key(blob, "key"), "mreg", "sha512", found.signature).armor()
    with pytest.raises(SignatureError, match="is not a valid key|does not match"):
        sshsig.verify(MESSAGE, forged)


def test_without_cryptography_verifying_says_what_to_install(keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    armored = sshsig.sign(MESSAGE, keys["ed25519"])
    monkeypatch.setitem(sys.modules, "cryptography.hazmat", None)  # as if it were not installed
    with pytest.raises(SignatureError, match="need the 'cryptography' package: pip install 'mreg\\[sign\\]'"):
        sshsig.verify(MESSAGE, armored)


def test_importing_the_signing_modules_does_not_import_cryptography() -> None:
    """`mreg show` must stay quick: cryptography loads only when something is signed or verified."""
    code = ("import sys; import mreg.signing.sshsig, mreg.signing.allowed_signers, mreg.signing.statement, "
            "mreg.signing.attestation, mreg.signing.keys; assert 'cryptography' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------- allowed signers


NOW = "20260301093000Z"
NOW_SECONDS = int(datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc).timestamp())


def decide(keys: dict[str, Path], tmp_path: Path, lines: list[str], principal: str, at: str = NOW) -> tuple[bool, bool, str]:
    """mreg's decision and ssh-keygen's on the same file, principal, namespace and time."""
    lines = [line.replace("KEY", public_line(keys["ed25519"])).replace("OTHER", public_line(keys["other"])) for line in lines]
    signers = signers_file(tmp_path, *lines)
    armored = sshsig.sign(MESSAGE, keys["ed25519"])
    key = sshsig.verify(MESSAGE, armored)
    moment = int(datetime.strptime(at, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc).timestamp())
    verdict = allowed_signers.load(signers).check(key, principal, "mreg", moment)
    theirs = ssh_verify(signers, principal, armored, MESSAGE, at=at).returncode == 0
    return verdict.allowed, theirs, verdict.reason


@pytest.mark.parametrize(
    ("lines", "principal", "at", "allowed"),
    [
        (["alice@example.com KEY"], ALICE, NOW, True),
        (["alice@example.com KEY"], "bob@example.com", NOW, False),
        (["ALICE@example.com KEY"], ALICE, NOW, False),
        (["*@example.com KEY"], ALICE, NOW, True),
        (["*@example.com KEY"], "alice@example.org", NOW, False),
        (["a?ice@example.com,carol@x KEY comment with spaces"], ALICE, NOW, True),
        (["*@example.com,!alice@example.com KEY"], ALICE, NOW, False),
        (['"alice@example.com" KEY'], ALICE, NOW, True),
        (["alice@example.com OTHER"], ALICE, NOW, False),
        (["alice@example.com OTHER", "alice@example.com KEY"], ALICE, NOW, True),
        (['alice@example.com namespaces="git" KEY'], ALICE, NOW, False),
        (['alice@example.com namespaces="git,mr*" KEY'], ALICE, NOW, True),
        (['alice@example.com NAMESPACES="mreg" KEY'], ALICE, NOW, True),
        (['alice@example.com namespaces="git" KEY', "alice@example.com KEY"], ALICE, NOW, True),
        (['alice@example.com valid-before="20250101Z" KEY'], ALICE, NOW, False),
        (['alice@example.com valid-before="20250101Z" KEY'], ALICE, "20250101000000Z", True),
        (['alice@example.com valid-before="20250101Z" KEY'], ALICE, "20250101000001Z", False),
        (['alice@example.com valid-after="202603010930Z" KEY'], ALICE, "20260301092959Z", False),
        (['alice@example.com valid-after="202603010930Z" KEY'], ALICE, NOW, True),
        (['alice@example.com valid-after="20260101Z",valid-before="20270101UTC" KEY'], ALICE, NOW, True),
        (["alice@example.com cert-authority KEY"], ALICE, NOW, False),
        (["  # a comment", "", "alice@example.com\tKEY"], ALICE, NOW, True),
    ],
)
def test_allowed_signers_decide_as_ssh_keygen_does(
    lines: list[str], principal: str, at: str, allowed: bool, keys: dict[str, Path], tmp_path: Path
) -> None:
    ours, theirs, reason = decide(keys, tmp_path, lines, principal, at)
    assert (ours, theirs) == (allowed, allowed), reason


def test_refusals_say_why_and_name_the_line(keys: dict[str, Path], tmp_path: Path) -> None:
    key = re.escape(f"ed25519 key {fingerprint(keys['ed25519'])}")
    expired = f"allowed_signers:1: ssh-{key} expired at 2025-01-01T00:00:00Z, and the signature is of 2026-03-01T09:30:00Z"
    cases = {
        ('alice@example.com valid-before="20250101Z" KEY',): expired,
        ('alice@example.com valid-after="20270101Z" KEY',): "allowed_signers:1: .* is valid only from 2027-01-01T00:00:00Z",
        ('alice@example.com namespaces="git" KEY',): "allowed_signers:1: .* may sign only in namespaces git, not 'mreg'",
        ("bob@example.com KEY",): "allows .* only for bob@example.com, not for 'alice@example.com'",
        ("alice@example.com OTHER",): "lists other keys for 'alice@example.com', not ssh-" + key,
        ("carol@example.com OTHER",): f"ssh-{key} is not in .*allowed_signers",
    }
    for lines, expected in cases.items():
        ours, _, reason = decide(keys, tmp_path, list(lines), ALICE)
        assert not ours and re.search(expected, reason), reason


def test_a_signer_not_allowed_is_an_mreg_error(keys: dict[str, Path], tmp_path: Path) -> None:
    signers = allowed_signers.load(signers_file(tmp_path, f"bob@example.com {public_line(keys['other'])}"))
    key = sshsig.verify(MESSAGE, sshsig.sign(MESSAGE, keys["ed25519"]))
    with pytest.raises(SignerNotAllowedError, match="signer not allowed: .* is not in"):
        signers.require(key, ALICE, "mreg", NOW_SECONDS)
    with pytest.raises(SignatureError, match="must carry its time zone"):
        signers.check(key, ALICE, "mreg", datetime(2026, 3, 1))


def test_find_principals_is_ssh_keygens(keys: dict[str, Path], tmp_path: Path) -> None:
    """The first entry for the key that is valid now, its principals as written; namespaces ignored."""
    signers = signers_file(
        tmp_path,
        f'old@example.com valid-before="20200101Z" {public_line(keys["ed25519"])}',
        f"bob@example.com {public_line(keys['other'])}",
        f'alice@example.com,*@ops.example.com namespaces="git" {public_line(keys["ed25519"])}',
        f"later@example.com {public_line(keys['ed25519'])}",
    )
    armored = sshsig.sign(MESSAGE, keys["ed25519"])
    (tmp_path / "s.sig").write_text(armored)
    theirs = ssh_keygen("-Y", "find-principals", "-f", str(signers), "-s", str(tmp_path / "s.sig")).stdout.decode().split()
    ours = allowed_signers.load(signers).find_principals(sshsig.verify(MESSAGE, armored))
    assert list(ours) == theirs == ["alice@example.com", "*@ops.example.com"]
    assert allowed_signers.load(signers).find_principals(sshsig.verify(MESSAGE, armored), NOW_SECONDS - 10**9) == ("old@example.com",)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("alice@example.com", "expected principals, options and a key type .*found nothing"),
        ("alice@example.com ssh-ed25519", "the ssh-ed25519 key is missing after its type"),
        ("alice@example.com ssh-ed25519 AAAA$$", "the key is not valid base64"),
        ("alice@example.com ssh-rsa KEYBASE64", "the key says ssh-rsa but its key is ssh-ed25519"),
        ("alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", "the key is malformed"),
        ("alice@example.com ssh-foo AAAA", "unknown key type 'ssh-foo' \\(mreg reads ssh-ed25519, "),
        ('alice@example.com nosuch="x" KEY', "unknown option or key type 'nosuch=\"x\"'"),
        ("alice@example.com valid-before=20250101Z KEY", 'must be in double quotes \\(valid-before="..."\\)'),
        ('alice@example.com valid-before="20250101" KEY', "has no time zone: write 20250101Z for UTC"),
        ('alice@example.com valid-before="20251301Z" KEY', "is not a valid date and time"),
        ('alice@example.com valid-before="2025-01-01" KEY', "is not a time: use YYYYMMDD"),
        ('alice@example.com valid-after="20260101Z",valid-before="20250101Z" KEY', "valid-before is not later than valid-after"),
        ('alice@example.com namespaces="a",namespaces="b" KEY', "option namespaces is given twice"),
        ('alice@example.com namespaces="a,,b" KEY', "invalid namespace pattern ''"),
        ('alice@example.com namespaces="a KEY', "a double quote is not closed"),
        ("alice@example.com,,bob@example.com KEY", "invalid principal pattern ''"),
        ('al"ic"e@example.com KEY', "principals may be quoted only as a whole"),
        ("alice@example.com\x1b[2J KEY", "control character"),
    ],
)
def test_malformed_lines_are_errors_naming_file_and_line(line: str, expected: str, keys: dict[str, Path], tmp_path: Path) -> None:
    line = line.replace("KEYBASE64", public_line(keys["ed25519"]).split()[1]).replace("KEY", public_line(keys["ed25519"]))
    path = signers_file(tmp_path, "# team keys", line)
    with pytest.raises(AllowedSignersError, match=f"{re.escape(str(path))}:2: (.* )?{expected}") as caught:
        allowed_signers.load(path)
    assert "\n" not in str(caught.value)


def test_entries_mreg_cannot_use_are_skipped_with_a_warning(keys: dict[str, Path], tmp_path: Path) -> None:
    """cert-authority and security-key entries: certificates are out of scope, and the warning says so."""
    path = signers_file(
        tmp_path,
        f"*@example.com cert-authority {public_line(keys['other'])}",
        "bob@example.com sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t",
        f"alice@example.com {public_line(keys['ed25519'])}",
    )
    signers = allowed_signers.load(path)
    assert [entry.line for entry in signers.entries] == [3]
    assert signers.warnings[0] == f"{path}:1: cert-authority entry skipped: mreg verifies plain keys; SSH certificates are out of scope"
    assert signers.warnings[1].startswith(f"{path}:2: sk-ssh-ed25519@openssh.com entry skipped:")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "allowed signers file .* does not exist"),
        (b"alice@example.com ssh-ed25519 AAAA\n\xff\n", ":2: not UTF-8 text"),
        (b"#" * ((1 << 20) + 1), "more than the 1048576 allowed"),
    ],
    ids=["missing", "not-utf8", "too-large"],
)
def test_unreadable_allowed_signers_files_are_errors(content: bytes | None, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "allowed_signers"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AllowedSignersError, match=expected):
        allowed_signers.load(path)


# ------------------------------------------------------------------------------ statements


def statement(**changes: str | None) -> Statement:
    fields: dict[str, str | None] = {
        "kind": "approval",
        "model": "team/resnet18",
        "version": "1.0.0",
        "manifest": DIGEST,
        "principal": ALICE,
        "time": "2026-03-01T09:30:00Z",
        "meaning": "Approved for the March release",
        "tag": "production",
    }
    fields.update(changes)
    return Statement(**fields)  # type: ignore[arg-type]


def test_a_statement_is_reproducible_from_its_fields_and_parses_back() -> None:
    approval = statement()
    expected = (
        "mreg-statement v1\nkind approval\nmodel team/resnet18\nversion 1.0.0\n"
        f"manifest {DIGEST}\ntag production\nprincipal alice@example.com\ntime 2026-03-01T09:30:00Z\n"
        "meaning Approved for the March release\n"
    ).encode()
    assert approval.encode() == expected == statement().encode()
    assert Statement.parse(expected) == approval
    revocation = statement(kind="revocation", revokes=approval.digest, meaning="Withdrawn: wrong data set")
    assert Statement.parse(revocation.encode()) == revocation
    assert b"\ntag production\nrevokes sha256:" in revocation.encode()
    assert Statement.parse(statement(kind="registration", tag=None, meaning="Trained by run 42 (Zürich)").encode()).meaning.endswith("Zürich)")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"meaning": "two\nlines"}, "meaning .* has a line break, control"),
        ({"meaning": "tab\there"}, "has a line break, control"),
        ({"meaning": "bidi \u202e override"}, "format or separator"),
        ({"meaning": "line\u2028separator"}, "format or separator"),
        ({"meaning": " padded"}, "spaces at its ends"),
        ({"meaning": ""}, "must be text of 1 to 1000"),
        ({"meaning": "x" * 1001}, "must be text of 1 to 1000"),
        ({"meaning": "Zu\u0308rich"}, "not in Unicode normal form NFC"),
        ({"model": "two words"}, "model 'two words' has a space"),
        ({"version": "1.0.0\r"}, "version"),
        ({"principal": "*@example.com"}, "pattern syntax in allowed signers"),
        ({"manifest": "sha256:ABC"}, "manifest .* is not sha256: and 64 lowercase hex"),
        ({"time": "2026-03-01 09:30:00"}, "is not YYYY-MM-DDTHH:MM:SSZ"),
        ({"time": "2026-02-30T09:30:00Z"}, "is not a valid date and time"),
        ({"kind": "blessing"}, "unknown statement kind 'blessing'"),
        ({"tag": None}, "an approval statement names its tag"),
        ({"kind": "registration"}, "a registration statement names no tag"),
        ({"kind": "revocation"}, "a revocation statement, and only it, names the statement it revokes"),
        ({"revokes": DIGEST}, "and only it"),
    ],
)
def test_fields_the_format_cannot_carry_are_refused(changes: dict[str, str | None], expected: str) -> None:
    with pytest.raises(StatementError, match=expected) as caught:
        statement(**changes)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace(b"\n", b"\r\n"), "the first line is 'mreg-statement v1\\\\r'"),
        (lambda t: t[:-1], "does not end with a line feed"),
        (lambda t: t + b"\n", "unknown line ''"),
        (lambda t: t.replace(b"mreg-statement v1", b"mreg-statement v2"), "the first line is 'mreg-statement v2'"),
        (lambda t: t.replace(b"tag production\n", b"") + b"tag production\n", "not in canonical form"),
        (lambda t: t.replace(b"kind approval\n", b"kind approval\nkind approval\n"), "two kind lines"),
        (lambda t: t.replace(b"time 2026-03-01T09:30:00Z\n", b""), "has no time line"),
        (lambda t: t.replace(b"meaning ", b"meaning  "), "spaces at its ends"),
        (lambda t: t.replace(b"kind approval\n", b"kind approval\ncomment hi\n"), "unknown line 'comment hi'"),
        (lambda t: b"\xff" + t, "not UTF-8"),
        (lambda t: t + b"x" * (8 << 10), "at most 8192"),
    ],
)
def test_statement_text_parses_only_in_canonical_form(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StatementError, match=expected):
        Statement.parse(change(statement().encode()))


def test_a_third_party_rebuilds_the_statement_and_ssh_keygen_verifies_it(keys: dict[str, Path], tmp_path: Path) -> None:
    """From the record's fields alone, with the command the statement names, at the statement's time."""
    signed = statement()
    armored = sshsig.sign(signed.encode(), keys["ecdsa-p256"])
    record = {
        "kind": "approval",
        "model": "team/resnet18",
        "version": "1.0.0",
        "manifest": DIGEST,
        "tag": "production",
        "principal": ALICE,
        "time": "2026-03-01T09:30:00Z",
        "meaning": "Approved for the March release",
    }
    rebuilt = Statement(**record).encode()
    signers = signers_file(tmp_path, f'{ALICE} valid-before="20260301093000Z" {public_line(keys["ecdsa-p256"])}')
    (tmp_path / "approval.sig").write_text(armored)
    command = Statement.parse(rebuilt).ssh_keygen_verify(str(signers), str(tmp_path / "approval.sig"))
    assert command[-1] == "-Overify-time=20260301093000Z"
    done = subprocess.run(command, input=rebuilt, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    attestation = verify_statement(rebuilt, armored, allowed_signers.load(signers))
    assert attestation.statement == signed and attestation.entry.line == 1
    assert attestation.key.fingerprint == fingerprint(keys["ecdsa-p256"])


def test_a_statement_is_checked_at_its_own_time_and_for_its_own_principal(keys: dict[str, Path], tmp_path: Path) -> None:
    """A key expired before the statement's time, or a principal the key may not sign as: refused."""
    signers = allowed_signers.load(signers_file(tmp_path, f'{ALICE} valid-before="20260301Z" {public_line(keys["ed25519"])}'))
    late = statement().encode()
    with pytest.raises(SignerNotAllowedError, match="expired at 2026-03-01T00:00:00Z, and the signature is of 2026-03-01T09:30:00Z"):
        verify_statement(late, sshsig.sign(late, keys["ed25519"]), signers)
    early = statement(time="2026-02-28T23:59:59Z").encode()
    assert verify_statement(early, sshsig.sign(early, keys["ed25519"]), signers).statement.time == "2026-02-28T23:59:59Z"
    as_bob = statement(principal="bob@example.com", time="2026-02-28T23:59:59Z").encode()
    with pytest.raises(SignerNotAllowedError, match="only for alice@example.com, not for 'bob@example.com'"):
        verify_statement(as_bob, sshsig.sign(as_bob, keys["ed25519"]), signers)
    with pytest.raises(SignatureError, match="does not match"):
        verify_statement(early, sshsig.sign(as_bob, keys["ed25519"]), signers)
