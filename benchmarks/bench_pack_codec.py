"""Packs: how small and how fast lossless packed tensor chunks are.

- ResNet-18 (torchvision, random init, seeded) and 9 successive full fine-tunes (SGD,
  lr 1e-4, momentum 0.9, 10 steps each on random 8x3x64x64 batches with random
  labels): every tensor changes, so chunk dedup saves nothing. Each version is saved
  as safetensors and cut into chunks exactly as mreg stores it (``mreg.formats.cuts``);
  each chunk is packed as a delta against the same chunk of the previous version
  (standalone for the first). Per version: raw bytes, packed bytes, ratio; in total
  (targets: <= 0.6x of the registered bytes with the newest version unpacked, <= 0.55x
  with everything packed).
- Speed: encode and decode MB/s of raw bytes, chunks spread over 1 and 2 threads
  (target: packing >= 150 MB/s on this 2-core machine).
- A bf16 copy of ResNet-18, standalone (target <= 0.75x).
- Loading: ``torch.load`` of the state dict from a file vs decoding every packed
  chunk into torch tensors (target <= 2x).
- Kernels: pure-Python slices and ``int.from_bytes`` against numpy, the reason the
  codec uses numpy; and XOR instead of the zigzagged difference, and zstd levels.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy
import torch
from common import best_of, paired, resnet_fine_tunes, scratch

from mreg.formats.containers import DTYPES, parse_safetensors
from mreg.formats.cuts import file_cuts
from mreg.storage import pack_codec

VERSIONS = 10
STEPS = 10
REPEAT = int(os.environ.get("MREG_BENCH_PAIRS", "5"))


class Chunk(NamedTuple):
    """One chunk of a saved version, as the store would hold it."""

    start: int
    data: bytes
    itemsize: int
    digest: str  # its name in the store, which a delta against it records


class Version(NamedTuple):
    path: Path
    size: int
    chunks: list[Chunk]


def fine_tunes(root: Path) -> tuple[list[Version], dict[str, torch.Tensor]]:
    """ResNet-18 and its successive full fine-tunes (common.resnet_fine_tunes), saved as safetensors and cut into chunks."""
    from safetensors.torch import save_file

    states = resnet_fine_tunes(VERSIONS, STEPS)
    versions = []
    for number, state in enumerate(states):
        path = root / f"resnet18-{number}.safetensors"
        save_file(state, str(path))
        versions.append(chunked(path))
    return versions, states[-1]


def chunked(path: Path) -> Version:
    """A safetensors file's chunks as mreg cuts them, each with the itemsize of the tensors it mostly holds."""
    data = path.read_bytes()
    layout = parse_safetensors(data, len(data))
    cuts = [0, *file_cuts(path, len(data)), len(data)]
    chunks = []
    for start, end in itertools.pairwise(cuts):
        weight: dict[int, int] = {}
        for tensor in layout.tensors:  # a glue chunk takes the itemsize covering most of its bytes
            overlap = min(end, tensor.end) - max(start, tensor.start)
            if overlap > 0:
                size = max(1, DTYPES[tensor.dtype][0] // 8)
                weight[size] = weight.get(size, 0) + overlap
        digest = "sha256:" + hashlib.sha256(data[start:end]).hexdigest()
        chunks.append(Chunk(start, data[start:end], max(weight, key=weight.__getitem__) if weight else 1, digest))
    return Version(path, len(data), chunks)


def pack_version(version: Version, parent: Version | None, threads: int, level: int = pack_codec.DEFAULT_LEVEL) -> list[bytes]:
    """Every chunk's record (delta against the parent's chunk at the same place, else standalone)."""
    bases = {(chunk.start, len(chunk.data)): chunk for chunk in parent.chunks} if parent else {}

    def pack(chunk: Chunk) -> bytes:
        base = bases.get((chunk.start, len(chunk.data)))
        record = pack_codec.encode(
            chunk.data,
            itemsize=chunk.itemsize,
            base=base and base.data,
            base_digest=base and base.digest,  # known to the store: the base's name
            level=level,
            min_saving=None,
        )
        assert record is not None
        return record

    return in_threads(pack, version.chunks, threads, lambda chunk: len(chunk.data))


def unpack_version(version: Version, parent: Version | None, records: list[bytes], threads: int) -> list[bytearray]:
    """Every chunk's bytes, decoded from its record."""
    bases = {(chunk.start, len(chunk.data)): chunk for chunk in parent.chunks} if parent else {}

    def unpack(pair: tuple[Chunk, bytes]) -> bytearray:
        chunk, record = pair
        base = bases.get((chunk.start, len(chunk.data)))
        return pack_codec.decode(record, expected_size=len(chunk.data), base=base and base.data, base_digest=base and base.digest)

    return in_threads(unpack, list(zip(version.chunks, records, strict=True)), threads, lambda pair: len(pair[0].data))


def in_threads(work: Callable[[Any], Any], items: list[Any], threads: int, size: Callable[[Any], int] = len) -> list[Any]:
    """``work`` on every item on ``threads`` threads, the largest first (so that the threads
    finish together); the results in the items' order."""
    if threads == 1:
        return [work(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -size(items[i]))
    with ThreadPoolExecutor(threads) as pool:
        done = dict(zip(order, pool.map(lambda i: work(items[i]), order), strict=True))
    return [done[i] for i in range(len(items))]


def timed_cpu(function: Callable[[], object], repeat: int = REPEAT) -> tuple[float, float]:
    """The median wall time and the median CPU time (every thread's) of ``function``.

    On a shared machine the wall time of two threads says little; bytes per CPU
    second say what one core does, whoever else runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def speeds(size: int, encode: tuple[float, float], decode: tuple[float, float]) -> str:
    """One line of encode and decode speeds, per second and per CPU second."""
    return (
        f"encode {size / encode[0] / 1e6:5.0f} MB/s ({size / encode[1] / 1e6:4.0f} per CPU-s)  "
        f"decode {size / decode[0] / 1e6:5.0f} MB/s ({size / decode[1] / 1e6:4.0f} per CPU-s)"
    )


def sizes_and_speed(versions: list[Version]) -> None:
    print(f"\n{'version':<10} {'raw MiB':>9} {'packed MiB':>11} {'ratio':>7}  method")
    packed = []
    for number, version in enumerate(versions):
        parent = versions[number - 1] if number else None
        records = pack_version(version, parent, threads=2)
        assert [bytes(b) for b in unpack_version(version, parent, records, 2)] == [c.data for c in version.chunks]
        packed.append(sum(map(len, records)))
        method = "delta vs previous" if parent else "standalone"
        print(f"{number:<10} {version.size / 2**20:9.2f} {packed[-1] / 2**20:11.2f} {packed[-1] / version.size:7.3f}  {method}")
    raw = sum(v.size for v in versions)
    newest_raw = sum(packed[:-1]) + versions[-1].size
    print(f"{'all':<10} {raw / 2**20:9.2f} {sum(packed) / 2**20:11.2f} {sum(packed) / raw:7.3f}  everything packed (target <= 0.55x)")
    print(f"{'':<10} {'':>9} {newest_raw / 2**20:11.2f} {newest_raw / raw:7.3f}  the newest unpacked (target <= 0.6x)")
    print("           (chunk dedup alone: 1.00x; no chunk is shared, every tensor changed)")
    reverse = [sum(map(len, pack_version(version, successor, threads=2))) for version, successor in itertools.pairwise(versions)]
    print(
        f"each version against its successor instead, the newest unpacked: {(sum(reverse) + versions[-1].size) / raw:.3f}x "
        f"(deltas {min(reverse) / versions[0].size:.3f}x to {max(reverse) / versions[0].size:.3f}x)"
    )
    star = [sum(map(len, pack_version(version, versions[0], threads=2))) / version.size for version in versions[1:]]
    print("delta of each version against the first instead (a star, every base unpacked): " + " ".join(f"{r:.3f}" for r in star))

    print("\nspeed over the 9 delta versions and the standalone first (MB of raw bytes; target: encode >= 150 MB/s)")
    for label, numbers in (("delta", range(1, VERSIONS)), ("standalone", range(1))):
        total = sum(versions[n].size for n in numbers)
        packed_by_number = {n: pack_version(versions[n], versions[n - 1] if n else None, 1) for n in numbers}
        for threads in (1, 2):

            def encode_all(threads: int = threads, numbers: range = numbers) -> None:
                for n in numbers:
                    pack_version(versions[n], versions[n - 1] if n else None, threads)

            def decode_all(threads: int = threads, numbers: range = numbers, packed: dict[int, list[bytes]] = packed_by_number) -> None:
                for n in numbers:
                    unpack_version(versions[n], versions[n - 1] if n else None, packed[n], threads)

            print(f"  {label:<11} {threads} thread{'s' if threads > 1 else ' '}: {speeds(total, timed_cpu(encode_all), timed_cpu(decode_all))}")


def bf16(root: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path = root / "resnet18-bf16.safetensors"
    save_file({name: t.to(torch.bfloat16) if t.is_floating_point() else t for name, t in state.items()}, str(path))
    version = chunked(path)
    records = pack_version(version, None, 2)
    ratio = sum(map(len, records)) / version.size
    print(f"\nbf16 ResNet-18, standalone: {version.size / 2**20:.2f} MiB -> {ratio:.3f}x (target <= 0.75x)")
    for threads in (1, 2):
        encode = timed_cpu(partial(pack_version, version, None, threads))
        decode = timed_cpu(partial(unpack_version, version, None, records, threads))
        print(f"  {threads} thread{'s' if threads > 1 else ' '}: {speeds(version.size, encode, decode)}")


TORCH_DTYPES = {"F32": torch.float32, "I64": torch.int64, "BF16": torch.bfloat16}


def load(root: Path, versions: list[Version], state: dict[str, torch.Tensor]) -> None:
    """torch.load of a state dict from a file vs decoding every packed chunk of a version into tensors."""
    plain = root / "resnet18.pt"
    torch.save(state, plain)
    last, parent = versions[-1], versions[-2]
    layout = parse_safetensors(last.path.read_bytes(), last.size)
    delta = pack_version(last, parent, 1)
    alone = pack_version(last, None, 1)
    first = pack_version(parent, None, 1)  # the base, itself packed: a chain of two
    parent_bytes = [(chunk.digest, chunk.data) for chunk in parent.chunks]

    def tensors(records: list[bytes], bases: list[Any] | None, threads: int) -> dict[str, torch.Tensor]:
        """Decode each chunk of the last version: a chunk that is one tensor straight into
        that tensor's memory, a glue chunk into a buffer its small tensors then view."""
        by_start = {tensor.start: tensor for tensor in layout.tensors}
        out: dict[str, torch.Tensor] = {}

        def one(index: int) -> None:
            chunk, record = last.chunks[index], records[index]
            base_digest, base = bases[index] if bases else (None, None)
            tensor = by_start.get(chunk.start)
            if tensor is not None and tensor.nbytes == len(chunk.data):
                target = torch.empty(tensor.shape, dtype=TORCH_DTYPES[tensor.dtype])
                pack_codec.decode_into(record, target.view(-1).view(torch.uint8).numpy(), base=base, base_digest=base_digest)
                out[tensor.name] = target
                return
            buffer = pack_codec.decode(record, expected_size=len(chunk.data), base=base, base_digest=base_digest)
            for tensor in layout.tensors:
                if chunk.start <= tensor.start and tensor.end <= chunk.start + len(chunk.data) and tensor.end > tensor.start:
                    span = buffer[tensor.start - chunk.start : tensor.end - chunk.start]
                    out[tensor.name] = torch.frombuffer(span, dtype=TORCH_DTYPES[tensor.dtype]).reshape(tensor.shape)

        in_threads(one, list(range(len(records))), threads, lambda i: len(last.chunks[i].data))
        return out

    loaded = tensors(delta, parent_bytes, 1)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[name], state[name]) for name in state)

    def standalone(threads: int) -> None:
        tensors(alone, None, threads)

    def with_base(threads: int) -> None:
        tensors(delta, parent_bytes, threads)

    def chain(threads: int) -> None:
        decoded = unpack_version(parent, None, first, threads)
        tensors(delta, [(chunk.digest, data) for chunk, data in zip(parent.chunks, decoded, strict=True)], threads)

    print(f"\nloading ResNet-18 ({last.size / 2**20:.1f} MiB), paired with torch.load(weights_only=True) of the same state dict from a file")
    cases = [
        ("standalone-packed version", standalone),
        ("delta version, its base's bytes in memory", with_base),
        ("delta version whose base is packed (chain of 2)", chain),
    ]
    for label, decode in cases:
        for threads in (1, 2):
            ours, base, ratio = paired(partial(torch.load, plain, weights_only=True), partial(decode, threads), REPEAT * 4)
            plural = "s" if threads > 1 else " "
            print(f"  {label:<48} {threads} thread{plural}: {ours * 1000:7.1f} ms vs {base * 1000:6.1f} ms  ratio {ratio:5.2f} (target <= 2)")


def gil(versions: list[Version]) -> None:
    """How much of the time the codec holds the GIL: a pure-Python counter on a second
    thread keeps its pace while the codec runs on the first, unless the codec holds it.

    Wall-clock scaling on two threads needs two free cores; this holds on a shared
    machine too, since both the counter and its reference run under the same load."""
    import threading

    new, old = versions[5], versions[4]
    records = pack_version(new, old, 1)

    def counting(function: Callable[[], object]) -> float:
        """Counter steps per second while ``function`` runs over and over for one second."""
        stop, steps = threading.Event(), [0]

        def count() -> None:
            while not stop.is_set():
                steps[0] += 1

        thread = threading.Thread(target=count)
        started = time.perf_counter()
        thread.start()
        while time.perf_counter() - started < 1.0:
            function()
        stop.set()
        thread.join()
        return steps[0] / (time.perf_counter() - started)

    def median_counting(function: Callable[[], object]) -> float:
        return statistics.median(counting(function) for _ in range(3))

    idle = median_counting(partial(time.sleep, 0.01))
    print("\nthe GIL: a pure-Python counter's pace on a second thread while the first runs (1.00: never blocked)")
    cases: list[tuple[str, Callable[[], object]]] = [
        ("encode a version (delta)", partial(pack_version, new, old, 1)),
        ("decode a version (delta)", partial(unpack_version, new, old, records, 1)),
        ("reference: hashlib.sha256 (releases the GIL)", lambda: [hashlib.sha256(c.data).digest() for c in new.chunks]),
        ("reference: a pure-Python loop (holds it)", lambda: sum(range(1 << 20))),
    ]
    for label, function in cases:
        print(f"  {label:<48} {median_counting(function) / idle:5.2f}")


def kernels(versions: list[Version]) -> None:
    """The codec's steps on ResNet-18's big float32 chunks: pure Python against numpy, one thread."""
    from mreg.storage import pack_planes

    new = b"".join(c.data for c in versions[5].chunks if c.itemsize == 4 and len(c.data) >= 1 << 16)
    old = b"".join(c.data for c in versions[4].chunks if c.itemsize == 4 and len(c.data) >= 1 << 16)
    size = len(new)
    array, base = numpy.frombuffer(new, numpy.uint8), numpy.frombuffer(old, numpy.uint8)
    planes = b"".join(new[i::4] for i in range(4))

    def python_unshuffle() -> None:
        out = bytearray(size)
        for i in range(4):
            out[i::4] = planes[i * (size // 4) : (i + 1) * (size // 4)]

    def numpy_unshuffle() -> None:
        out = numpy.empty(size, numpy.uint8).reshape(-1, 4)
        source = numpy.frombuffer(planes, numpy.uint8).reshape(4, -1)
        for i in range(4):
            out[:, i] = source[i]

    rows = [
        ("shuffle: bytes slices data[i::4]", lambda: b"".join(new[i::4] for i in range(4))),
        ("shuffle: numpy, in blocks (the codec)", lambda: pack_planes.split(numpy, array, 4, None)),
        ("unshuffle: bytearray slice assignment", python_unshuffle),
        ("unshuffle: numpy strided, plane by plane (the codec)", numpy_unshuffle),
        ("XOR: int.from_bytes", lambda: (int.from_bytes(new, "little") ^ int.from_bytes(old, "little")).to_bytes(size, "little")),
        ("XOR: numpy uint64", lambda: numpy.bitwise_xor(array.view(numpy.uint64), base.view(numpy.uint64))),
        ("difference + zigzag + shuffle: numpy (the codec)", lambda: pack_planes.split(numpy, array, 4, base)),
    ]
    print(f"\nkernels on {size / 2**20:.1f} MiB of float32 chunks, one thread")
    for label, function in rows:
        print(f"  {label:<52} {size / best_of(function, 3) / 1e6:7.0f} MB/s")
    xor = numpy.bitwise_xor(array, base)
    for level in (1, 3):
        difference = pack_codec.encode(new, itemsize=4, base=old, level=level, min_saving=None)
        xored = pack_codec.encode(xor, itemsize=4, level=level, min_saving=None)  # the planes a XOR delta would compress
        alone = pack_codec.encode(new, itemsize=4, level=level, min_saving=None)
        assert difference and xored and alone
        speed = size / best_of(partial(pack_codec.encode, new, itemsize=4, base=old, level=level), 3) / 1e6
        print(
            f"  zstd level {level}: delta as zigzagged difference {len(difference) / size:.3f}x, as XOR {len(xored) / size:.3f}x; "
            f"standalone {len(alone) / size:.3f}x; delta encode {speed:.0f} MB/s"
        )
    out = bytearray(size)
    for saving in (pack_codec.MIN_PLANE_SAVING, 1 / 6):
        record = pack_codec.encode(new, itemsize=4, base=old, min_plane_saving=saving, min_saving=None)
        assert record is not None
        decode = best_of(partial(pack_codec.decode_into, record, out, base=old, base_digest="sha256:" + hashlib.sha256(old).hexdigest()), 3)
        print(f"  planes stored unless zstd saves {saving:.3f} of them: delta {len(record) / size:.3f}x, decode {size / decode / 1e6:.0f} MB/s")


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    with scratch("packs") as root:
        started = time.perf_counter()
        versions, state = fine_tunes(root)
        print(f"{VERSIONS} versions built and saved in {time.perf_counter() - started:.1f} s; each {len(versions[0].chunks)} chunks")
        sizes_and_speed(versions)
        bf16(root, state)
        load(root, versions, state)
        gil(versions)
        kernels(versions)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
