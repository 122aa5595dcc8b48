"""Property-based fuzzing of what mreg.signing reads from others (hypothesis, derandomized).

Signatures, allowed signers files and statements come from other people and other
stores: every reader either accepts its input or raises its ``MregError``, nothing
else escapes, and whatever is accepted is canonical (it encodes back to the same
bytes, so two different texts never carry one signature).
"""

from __future__ import annotations

import base64
import functools
import re
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mreg.errors import AllowedSignersError, SignatureError, StatementError
from mreg.signing import allowed_signers, sshsig
from mreg.signing.patterns import matches
from mreg.signing.statement import Statement
from mreg.signing.wire import PublicKey, string

pytest.importorskip("cryptography", reason="mreg.signing needs the cryptography package (mreg[sign])")

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MESSAGE = b"mreg-statement v1\n"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, PublicKey]:
    """A valid armored ed25519 signature of MESSAGE, and its key (the key made in-process)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path_factory.mktemp("fuzzkey") / "id_ed25519"
    private = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    path.chmod(0o600)
    armored = sshsig.sign(MESSAGE, path)
    return armored, sshsig.verify(MESSAGE, armored)


# ------------------------------------------------------------------------------ the armor

ARMOR_PIECES = st.sampled_from([sshsig.BEGIN, sshsig.END, "\n", "\r\n", "=", "==", "U1NIU0lH", "AAAA", "AAAAAQ", " ", "é", "\x00"])
ARMOR_TEXT = st.one_of(st.text(max_size=300), st.lists(ARMOR_PIECES, max_size=30).map("".join))


@FUZZ
@given(data=st.data())
def test_a_changed_signature_is_refused_or_carries_the_same_blob(data: st.DataObject, signed: tuple[str, PublicKey]) -> None:
    """Flip, drop or insert characters: verify refuses, or the change was only whitespace around the blob."""
    armored, key = signed
    text = list(armored)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(text) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            text[position] = chr(ord(text[position]) ^ (1 << data.draw(st.integers(0, 6))))
        elif action == "drop":
            del text[position]
        else:
            text.insert(position, data.draw(st.sampled_from(["A", "=", "\n", " ", "/", "\r"])))
    changed = "".join(text)
    try:
        found = sshsig.verify(MESSAGE, changed)
    except SignatureError:
        return
    assert found == key and sshsig.dearmor(changed) == sshsig.dearmor(armored)


# -------------------------------------------------------------------------------- the blob


def lying_string(payload: bytes, claimed: int) -> bytes:
    """A string whose length prefix may lie."""
    return struct.pack(">I", claimed % (1 << 32)) + payload


@functools.cache
def valid_fields() -> tuple[list[bytes], list[bytes]]:
    """The fields of a valid signature of MESSAGE (a fixed ed25519 key): its key's, then the blob's others."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from mreg.signing.algorithms import sign_raw

    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public, signature = sign_raw(private, sshsig.signed_data("mreg", "sha512", MESSAGE), "fuzz key")
    return [string(b"ssh-ed25519"), public.blob[15:]], [string(b"mreg"), string(b""), string(b"sha512"), string(signature)]


def valid_blob() -> bytes:
    """The valid signature's blob."""
    key, rest = valid_fields()
    return b"SSHSIG" + struct.pack(">I", 1) + string(b"".join(key)) + b"".join(rest)


FIELD = st.one_of(
    st.binary(max_size=80).map(string),
    st.sampled_from([b"ssh-ed25519", b"ssh-rsa", b"ecdsa-sha2-nistp256", b"nistp256", b"sha512", b"sha256", b"mreg", b"git", b"",
                     b"rsa-sha2-512", b"\x04" + b"\x01" * 64, b"\x00" * 32, b"\x80" * 3, b"\x00\x01"]).map(string),
    st.builds(lying_string, st.binary(max_size=20), st.integers(0, 1 << 33)),
    st.binary(max_size=8),
)


@st.composite
def blobs(draw: st.DrawFn) -> bytes:
    """A valid signature's blob with a few fields replaced, inserted, dropped, or the end cut off."""
    parts = [list(fields) for fields in valid_fields()]
    for fields in parts:
        for _ in range(draw(st.integers(0, 2))):
            index = draw(st.integers(0, len(fields)))
            action = draw(st.sampled_from(["replace", "insert", "drop"]))
            if action == "insert" or index == len(fields):
                fields.insert(index, draw(FIELD))
            elif action == "replace":
                fields[index] = draw(FIELD)
            else:
                del fields[index]
    magic = draw(st.sampled_from([b"SSHSIG"] * 9 + [b"SSHSIH"]))
    version = draw(st.sampled_from([1] * 9 + [0, 2]))
    blob = magic + struct.pack(">I", version) + string(b"".join(parts[0])) + b"".join(parts[1])
    return blob[: draw(st.integers(0, len(blob)))] if draw(st.integers(0, 9)) == 0 else blob


@FUZZ
@given(blobs())
def test_any_blob_is_refused_or_canonical_and_only_the_original_verifies(blob: bytes) -> None:
    """Accepted blobs encode back to themselves; of them, only the untouched one verifies."""
    try:
        found = sshsig.decode(blob)
    except SignatureError:
        return
    assert found.encode() == blob
    try:
        sshsig.verify(MESSAGE, found.armor())
    except SignatureError:
        return
    assert blob == valid_blob()


@st.composite
def armors(draw: st.DrawFn) -> str:
    """The armor of a (perhaps damaged) blob, wrapped at any width, with LF or CRLF, perhaps trailing text."""
    encoded = base64.b64encode(draw(blobs())).decode()
    width = draw(st.integers(1, 100))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [encoded[i : i + width] for i in range(0, len(encoded), width)]
    return end.join([sshsig.BEGIN, *lines, sshsig.END]) + draw(st.sampled_from(["", end, " ", "\n\n", "x"]))


@FUZZ
@given(st.one_of(ARMOR_TEXT, armors()))
def test_any_text_is_a_signature_or_a_signature_error(text: str) -> None:
    """Refused, or read as the blob it carries, and written back as text that reads the same."""
    try:
        found = sshsig.read(text)
    except SignatureError:
        return
    assert found.encode() == sshsig.dearmor(text)
    assert sshsig.read(found.armor()) == found


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_are_a_signature_error(blob: bytes) -> None:
    with pytest.raises(SignatureError):
        sshsig.verify(MESSAGE, f"{sshsig.BEGIN}\n{base64.b64encode(blob).decode()}\n{sshsig.END}\n")


# ---------------------------------------------------------------- allowed signers, statements

SIGNER_PIECES = st.sampled_from([
    "alice@example.com", "*", "?", "!", ",", " ", "\t", '"', "\\", "=", "#", "\n", "\r", "cert-authority", "namespaces=",
    'namespaces="mreg"', "valid-after=", '"20260101Z"', '"2026"', "ssh-ed25519", "ssh-rsa", "sk-ssh-ed25519@openssh.com",
    "AAAAC3NzaC1lZDI1NTE5AAAAIGhX8m2xqmz0i2bH6eZ0V8t8Tt0mYvV9lH1i3bGJ5pPq", "AAAA", "\x00", "é",
])
ED25519_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIMWRIO/RwG0kegM+6Ruw1GagyE6e9Fvzu/CWH8BY0qYG"
ECDSA_KEY = ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGvWzUJierpgRq99TSIMWa3YYad+WwRw9UY0kFmopXNZaRVy1vu"
             "NhsPlHal/kESq8gHoD2kfJYG7yraYMbH/wB8=")
PRINCIPALS = st.lists(st.sampled_from(["alice@example.com", "*@example.com", "a?ice", "!bob", "", '"alice"', "al ice", "é"]),
                      min_size=1, max_size=3).map(",".join)
OPTIONS = st.lists(st.sampled_from([
    'namespaces="mreg"', 'namespaces="a,b"', 'namespaces=""', 'valid-after="20260101Z"', 'valid-before="20250101Z"',
    'valid-before="2026"', "valid-before=20260101Z", 'VALID-AFTER="202601010000UTC"', "cert-authority", "CERT-AUTHORITY",
    'foo="x"', 'namespaces="open', 'namespaces="a\\"b"', "",
]), max_size=3).map(",".join)
KEY_TYPE = st.sampled_from(["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", "ssh-dss", "sk-ssh-ed25519@openssh.com",
                            "ssh-ed25519-cert-v01@openssh.com", "ssh-foo", ""])
KEY = st.one_of(
    st.sampled_from([ED25519_KEY, ECDSA_KEY, "AAAA", "", ED25519_KEY[:-1], ED25519_KEY + "=", ED25519_KEY.replace("A", "$", 1)]),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=", max_size=120),
)
SIGNER_LINE = st.tuples(PRINCIPALS, OPTIONS, KEY_TYPE, KEY, st.sampled_from(["", "laptop", "# x", "\x1b[2J"])).map(" ".join)


@FUZZ
@given(st.one_of(st.lists(SIGNER_LINE, max_size=4).map("\n".join), st.lists(SIGNER_PIECES, max_size=30).map("".join)))
def test_any_allowed_signers_text_parses_or_is_an_error(text: str) -> None:
    try:
        parsed = allowed_signers.parse(text, "fuzzed")
    except AllowedSignersError as exc:
        assert str(exc).startswith("fuzzed:")
        return
    for entry in parsed.entries:
        assert entry.principals and all(entry.principals)


STATEMENT_PIECES = st.sampled_from([
    b"mreg-statement v1\n", b"kind approval\n", b"kind registration\n", b"model m\n", b"version 1.0.0\n",
    b"manifest sha256:" + b"ab" * 32 + b"\n", b"tag production\n", b"principal alice@example.com\n",
    b"time 2026-03-01T09:30:00Z\n", b"meaning ok\n", b"revokes sha256:" + b"cd" * 32 + b"\n", b" ", b"\r", b"\n", b"\xc3",
])


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.lists(STATEMENT_PIECES, max_size=14).map(b"".join)))
def test_any_statement_bytes_parse_canonically_or_are_an_error(data: bytes) -> None:
    try:
        parsed = Statement.parse(data)
    except StatementError:
        return
    assert parsed.encode() == data


@FUZZ
@given(st.text("ab*?", max_size=12), st.text("abc", max_size=12))
def test_pattern_matching_agrees_with_a_regular_expression(pattern: str, text: str) -> None:
    """``*`` any run, ``?`` one character: the greedy matcher and a regex agree."""
    expected = re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), text, re.DOTALL)
    assert matches(text, pattern) == (expected is not None)


def test_a_pathological_pattern_does_not_hang() -> None:
    """Many stars against a long near-miss: a backtracking matcher would run for ages (bounded here)."""
    code = "from mreg.signing.patterns import matches; assert not matches('a' * 256, '*a' * 100 + 'b')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_the_fuzzed_signature_verifies_and_only_for_its_message(signed: tuple[str, PublicKey]) -> None:
    """The mutation test starts from a valid signature that a change of message breaks."""
    armored, key = signed
    assert sshsig.verify(MESSAGE, armored) == key
    with pytest.raises(SignatureError, match="does not match"):
        sshsig.verify(MESSAGE + b"x", armored)
