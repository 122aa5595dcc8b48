"""Packed records (mreg.storage.pack_codec): lossless round trips, the choice of base, hostile input.

Every hostile record must give one CorruptObjectError (CorruptPackError) with a
one-line message, before anything larger than the expected size is allocated, and
never hang; the fuzz tests hold decode to that on random and mutated bytes.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from datetime import timedelta

import numpy
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mreg.cli.errors import ExitCode, exit_code
from mreg.errors import (
    CorruptObjectError,
    InvalidInputError,
    InvalidTypeError,
)
from mreg.storage import pack_codec
from mreg.storage.pack_codec import (
    DELTA,
    MAGIC,
    STANDALONE,
    CorruptPackError,
    decode,
    decode_into,
    encode,
    encode_best,
    read_header,
)

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=timedelta(seconds=10),  # not a speed target: a hang fails the example instead of the suite
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def weights(count: int, seed: int = 0) -> torch.Tensor:
    """float32 values shaped like trained weights (small, normal)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, generator=generator) * 0.05


def fine_tuned(parent: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """``parent`` after a small update of every value, as a full fine-tune makes."""
    generator = torch.Generator().manual_seed(seed)
    return parent + torch.randn(parent.shape, generator=generator) * 1e-5


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def record(raw: bytes, itemsize: int = 4, base: bytes | None = None) -> bytes:
    packed = encode(raw, itemsize=itemsize, base=base, min_saving=None)
    assert packed is not None
    return packed


def corrupt(packed: bytes, *, expected_size: int, base: bytes | None = None) -> CorruptPackError:
    """The error decoding ``packed`` raises (the test fails if it decodes)."""
    with pytest.raises(CorruptPackError) as caught:
        decode(packed, expected_size=expected_size, base=base, digest=digest_of(b"object"))
    error = caught.value
    assert isinstance(error, CorruptObjectError) and exit_code(error) == ExitCode.CORRUPT
    assert "\n" not in str(error) and str(error).startswith(f"object {digest_of(b'object')} is corrupt: its packed record ")
    return error


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
@pytest.mark.parametrize("size", [0, 1, 3, 7, 8, 9, 1000, 65_537, 300_001])
def test_random_bytes_round_trip_standalone_and_as_deltas(itemsize: int, size: int) -> None:
    generator = numpy.random.default_rng(size * 10 + itemsize)
    raw = generator.integers(0, 256, size, dtype=numpy.uint8).tobytes()
    base = generator.integers(0, 256, size, dtype=numpy.uint8).tobytes()
    assert bytes(decode(record(raw, itemsize), expected_size=size)) == raw
    assert bytes(decode(record(raw, itemsize, base), expected_size=size, base=base)) == raw
    assert bytes(decode(record(raw, itemsize, raw), expected_size=size, base=raw)) == raw  # a delta of zeros


@pytest.mark.parametrize("dtype, itemsize", [(torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2), (torch.float64, 8)])
def test_real_tensors_round_trip_into_a_tensor_of_their_own(dtype: torch.dtype, itemsize: int) -> None:
    parent = weights(50_001).to(dtype)  # an odd count of elements
    child = fine_tuned(parent.float()).to(dtype)
    raw, base = tensor_bytes(child), tensor_bytes(parent)
    for packed, known_base in ((record(raw, itemsize), None), (record(raw, itemsize, base), base)):
        loaded = torch.empty_like(child)
        decode_into(packed, loaded.view(-1).view(torch.uint8).numpy(), base=known_base)
        assert torch.equal(loaded.view(torch.uint8), child.view(torch.uint8))  # bit for bit, NaN-safe


def test_odd_lengths_keep_their_last_partial_element() -> None:
    raw = tensor_bytes(weights(1001))[:-3]  # 4001 bytes: a float32 and one byte too many
    base = tensor_bytes(weights(1001, seed=5))[:-3]
    packed = record(raw, 4, base)
    assert read_header(packed).size == 4001
    assert bytes(decode(packed, expected_size=4001, base=base)) == raw


def test_decode_into_writes_into_bytearrays_memoryviews_and_numpy_arrays() -> None:
    raw = tensor_bytes(weights(10_000))
    packed = record(raw)
    array = numpy.empty(len(raw) // 4, dtype=numpy.float32)
    for out in (bytearray(len(raw)), memoryview(bytearray(len(raw))), array):
        decode_into(packed, out)
        assert (array.tobytes() if out is array else bytes(out)) == raw


def test_decode_into_refuses_a_read_only_buffer() -> None:
    raw = tensor_bytes(weights(1000))
    with pytest.raises(InvalidInputError, match="writable"):
        decode_into(record(raw), raw)


def test_buffers_that_are_not_bytes_are_refused() -> None:
    raw = tensor_bytes(weights(1000))
    with pytest.raises(InvalidTypeError, match="C-contiguous buffer, not str"):
        decode("not bytes", expected_size=4)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="not ndarray"):
        decode_into(record(raw), numpy.empty((500, 4), dtype=numpy.float32)[:, ::2])  # strided: not one run of memory


def test_a_header_names_its_method_itemsize_size_and_base() -> None:
    parent = tensor_bytes(weights(4096))
    child = tensor_bytes(fine_tuned(weights(4096)))
    assert read_header(record(child)) == (STANDALONE, 4, len(child), None)
    assert read_header(record(child, 4, parent)) == (DELTA, 4, len(child), digest_of(parent))
    assert pack_codec.is_packed(record(child)) and not pack_codec.is_packed(child)


# ------------------------------------------------------------------- what packing saves


def test_a_fine_tune_packs_to_about_half_against_its_parent_and_less_well_alone() -> None:
    parent = weights(250_000)
    raw, base = tensor_bytes(fine_tuned(parent)), tensor_bytes(parent)
    delta, alone = encode(raw, itemsize=4, base=base), encode(raw, itemsize=4)
    assert delta is not None and alone is not None
    assert len(delta) < 0.6 * len(raw) and len(delta) < len(alone) < 0.9 * len(raw)


def test_planes_that_zstd_shrinks_too_little_are_stored() -> None:
    parent = weights(250_000)
    raw, base = tensor_bytes(fine_tuned(parent)), tensor_bytes(parent)
    small, fast = (encode(raw, itemsize=4, base=base, min_plane_saving=saving, min_saving=None) for saving in (1 / 32, 0.5))
    assert small is not None and fast is not None
    codings = [[struct.unpack_from("<BQ", packed, 52 + 9 * plane)[0] for plane in range(4)] for packed in (small, fast)]
    assert codings == [[0, 1, 1, 1], [0, 0, 1, 1]] and len(small) < len(fast)  # the low byte is noise; the second shrinks < 50 %
    assert bytes(decode(fast, expected_size=len(raw), base=base)) == raw


def test_bf16_packs_standalone_to_at_most_three_quarters() -> None:
    raw = tensor_bytes(weights(250_000).to(torch.bfloat16))
    packed = encode(raw, itemsize=2)
    assert packed is not None and len(packed) <= 0.75 * len(raw)


def test_bytes_that_do_not_compress_are_not_packed() -> None:
    noise = numpy.random.default_rng(0).integers(0, 256, 100_000, dtype=numpy.uint8).tobytes()
    assert encode(noise, itemsize=4) is None
    assert encode(b"", itemsize=4) is None
    assert encode(noise, itemsize=4, min_saving=None) is not None


@pytest.mark.parametrize("sampled", [False, True])
def test_encode_best_picks_the_related_base_and_skips_others(sampled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if sampled:
        monkeypatch.setattr(pack_codec, "SAMPLE_FROM", 1 << 16)
    parent = weights(200_000)
    raw, base = tensor_bytes(fine_tuned(parent)), tensor_bytes(parent)
    unrelated = tensor_bytes(weights(200_000, seed=9))
    bases = [(digest_of(unrelated), unrelated), (digest_of(b"short"), b"short"), (digest_of(base), base)]
    best = encode_best(raw, itemsize=4, bases=bases)
    assert best is not None and read_header(best).base == digest_of(base)
    assert bytes(decode(best, expected_size=len(raw), base=base)) == raw
    alone = encode_best(raw, itemsize=4, bases=[(digest_of(unrelated), unrelated)])  # a delta against it is worse
    assert alone is not None and read_header(alone).method == STANDALONE


def test_encode_refuses_bad_arguments() -> None:
    raw = tensor_bytes(weights(1000))
    with pytest.raises(InvalidInputError, match="itemsize 3"):
        encode(raw, itemsize=3)
    with pytest.raises(InvalidInputError, match="same size"):
        encode(raw, itemsize=4, base=raw[:-4])
    with pytest.raises(InvalidInputError, match="level"):
        encode(raw, itemsize=4, level=0)
    with pytest.raises(InvalidInputError, match="base digest"):
        encode(raw, itemsize=4, base=raw, base_digest="sha256:XYZ")


def test_importing_the_codec_imports_neither_numpy_nor_zstandard() -> None:
    code = "import sys, mreg.storage.pack_codec; print(sorted({'numpy', 'zstandard'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# ------------------------------------------------------------------------ hostile input


def test_a_record_declaring_another_size_is_refused_before_decompressing() -> None:
    raw = tensor_bytes(weights(1000))
    error = corrupt(record(raw), expected_size=len(raw) + 4)
    assert f"declares {len(raw)} bytes, but {len(raw) + 4} are expected" in str(error)


def test_a_header_whose_size_was_changed_does_not_match_its_table() -> None:
    raw = tensor_bytes(weights(1000))
    packed = bytearray(record(raw))
    struct.pack_into("<Q", packed, 12, len(raw) + 4)
    assert f"it holds {len(raw) // 4 + 1}" in str(corrupt(bytes(packed), expected_size=len(raw) + 4))


def test_every_truncation_of_a_record_is_refused() -> None:
    raw, base = tensor_bytes(fine_tuned(weights(2000))), tensor_bytes(weights(2000))
    for packed, known_base in ((record(raw), None), (record(raw, 4, base), base)):
        for length in range(len(packed)):
            corrupt(packed[:length], expected_size=len(raw), base=known_base)


def test_bytes_after_the_payload_are_refused() -> None:
    raw = tensor_bytes(weights(1000))
    assert "table adds up to" in str(corrupt(record(raw) + b"\0", expected_size=len(raw)))


@pytest.mark.parametrize(
    "offset, value, message",
    [(0, 0x88, "magic bytes"), (8, 2, "format version 2"), (9, 7, "unknown method 7"), (10, 3, "itemsize 3"), (11, 1, "flags 1")],
)
def test_a_bad_header_field_is_named(offset: int, value: int, message: str) -> None:
    raw = tensor_bytes(weights(1000))
    packed = bytearray(record(raw))
    packed[offset] = value
    assert message in str(corrupt(bytes(packed), expected_size=len(raw)))


def test_a_delta_needs_its_own_base() -> None:
    parent = weights(5000)
    raw, base = tensor_bytes(fine_tuned(parent)), tensor_bytes(parent)
    packed = record(raw, 4, base)
    assert "no base was given" in str(corrupt(packed, expected_size=len(raw)))
    other = tensor_bytes(weights(5000, seed=3))
    assert f"not against the base given ({digest_of(other)})" in str(corrupt(packed, expected_size=len(raw), base=other))
    assert "the base given has" in str(corrupt(packed, expected_size=len(raw), base=base[:-4]))
    with pytest.raises(CorruptPackError, match="not against the base given"):  # a caller's digest is checked too
        decode(packed, expected_size=len(raw), base=base, base_digest=digest_of(other))
    assert bytes(decode(packed, expected_size=len(raw), base=base, base_digest=digest_of(base))) == raw


def test_a_changed_payload_byte_fails_zstds_checksum() -> None:
    raw = tensor_bytes(weights(20_000))
    packed = bytearray(record(raw))
    table = [struct.unpack_from("<BQ", packed, 20 + 9 * plane) for plane in range(4)]
    assert [coding for coding, _ in table] == [0, 0, 0, 1]  # noise stored, the exponents compressed
    packed[20 + 36 + 3 * 20_000 + table[3][1] // 2] ^= 0x01
    assert "cannot decompress" in str(corrupt(bytes(packed), expected_size=len(raw)))


def _with_plane(raw_size: int, frame: bytes) -> bytes:
    """A standalone itemsize-1 record of ``raw_size`` bytes whose one plane is ``frame``."""
    header = struct.pack("<8sBBBBQ", MAGIC, 1, STANDALONE, 1, 0, raw_size)
    return header + struct.pack("<BQ", 1, len(frame)) + frame


def test_a_decompression_bomb_is_refused_by_its_declared_size() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(1 << 30))  # 1 GiB of zeros in ~40 KiB
    assert len(bomb) < 1 << 20
    assert "declares 1073741824 bytes in its plane 0, not 1000" in str(corrupt(_with_plane(1000, bomb), expected_size=1000))


def test_a_frame_that_hides_its_size_is_refused() -> None:
    hidden = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 20))
    assert "declares -1 bytes" in str(corrupt(_with_plane(1000, hidden), expected_size=1000))


def test_a_frame_followed_by_another_is_refused() -> None:
    frame = zstandard.ZstdCompressor().compress(bytes(1000))
    assert "cannot decompress" in str(corrupt(_with_plane(1000, frame + frame), expected_size=1000))


def test_a_stored_plane_of_the_wrong_length_is_refused() -> None:
    header = struct.pack("<8sBBBBQ", MAGIC, 1, STANDALONE, 1, 0, 1000)
    assert "holds 1000" in str(corrupt(header + struct.pack("<BQ", 0, 999) + bytes(999), expected_size=1000))


def test_an_unnamed_record_says_so() -> None:
    with pytest.raises(CorruptPackError, match=r"^a packed record is corrupt: it does not start with the magic bytes"):
        decode(b"x" * 100, expected_size=100)


# ------------------------------------------------------------------------------- fuzz

SMALL = tensor_bytes(fine_tuned(weights(300)))[:-1]  # 1199 bytes: an odd tail too
SMALL_BASE = tensor_bytes(weights(300))[:-1]
VALID = [record(SMALL, 4), record(SMALL, 4, SMALL_BASE), record(SMALL, 2), record(SMALL, 1, SMALL_BASE), record(SMALL, 8)]


def _decodes_or_refuses(packed: bytes, base: bytes | None) -> None:
    try:
        out = decode(packed, expected_size=len(SMALL), base=base)
    except CorruptObjectError:
        return
    assert len(out) == len(SMALL)


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_random_bytes_decode_or_refuse(data: bytes, with_magic: bool) -> None:
    _decodes_or_refuses(MAGIC + data if with_magic else data, SMALL_BASE)


@FUZZ
@given(
    st.sampled_from(range(len(VALID))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 10_000),
    st.binary(max_size=16),
    st.booleans(),
)
def test_fuzz_mutated_records_decode_or_refuse(which: int, changes: list[tuple[int, int]], cut: int, extra: bytes, with_base: bool) -> None:
    packed = bytearray(VALID[which])
    for position, value in changes:
        packed[position % len(packed)] = value
    mutated = bytes(packed[: len(packed) - cut % 8]) + extra
    _decodes_or_refuses(mutated, SMALL_BASE if with_base else None)
