"""Helpers shared by the benchmarks: timing, temporary stores, and the report format.

Every benchmark measures its baseline in the same run and prints the ratio
``mreg / baseline`` next to its target, so figures from different machines compare.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def best_of(function: Callable[[], object], repeat: int = 5) -> float:
    """The median wall time of ``function`` over ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired(
    baseline: Callable[[], object],
    ours: Callable[[], object],
    pairs: int,
    prepare: Callable[[], object] = lambda: None,
) -> tuple[float, float, float]:
    """Time baseline and mreg alternately; return their medians and the median per-pair ratio.

    This machine's speed drifts from minute to minute; a ratio taken within each pair
    cancels most of that drift, where a ratio of two medians would not. ``prepare``
    runs, untimed, before each timed run of ``ours``.
    """
    base_times, our_times, ratios = [], [], []
    for _ in range(pairs):
        started = time.perf_counter()
        baseline()
        base = time.perf_counter() - started
        prepare()
        started = time.perf_counter()
        ours()
        mine = time.perf_counter() - started
        base_times.append(base)
        our_times.append(mine)
        ratios.append(mine / base)
    return statistics.median(our_times), statistics.median(base_times), statistics.median(ratios)


def hash_and_copy(source: str | Path, destination: str | Path, durable: str = "") -> str:
    """The floor for commands that store bytes: SHA-256 every byte once with hashlib, then copy the file.

    The copy is the kernel's (``shutil.copyfile``); with ``durable`` it is also
    fsynced, as mreg must before it calls bytes stored. Without, nothing reaches the
    disk while it is timed.
    """
    hasher = hashlib.sha256()
    with open(source, "rb") as stream:
        while block := stream.read(4 << 20):
            hasher.update(block)
    shutil.copyfile(source, destination)
    if durable:
        fd = os.open(destination, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return hasher.hexdigest()


class SecondHash:
    """A second SHA-256 fed on its own thread (the other core), as mreg hashes a chunked
    file's whole while the chunks are hashed: ``feed`` blocks, then ``finish``."""

    def __init__(self) -> None:
        import queue
        import threading

        self.hasher = hashlib.sha256()
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._blocks.get()) is not None:
            self.hasher.update(block)

    def feed(self, block: bytes) -> None:
        self._blocks.put(block)

    def finish(self) -> str:
        self._blocks.put(None)
        self._thread.join()
        return self.hasher.hexdigest()


def hash_twice_and_copy(source: str | Path, destination: str | Path, durable: str = "") -> str:
    """The floor for a file stored as chunks, whose chunks and whole each need their own
    SHA-256: one read feeds two hashlib hashes, the second on another thread (both cores),
    then the kernel's copy, fsynced with ``durable``."""
    second = SecondHash()
    hasher = hashlib.sha256()
    with open(source, "rb") as stream:
        while block := stream.read(4 << 20):
            hasher.update(block)
            second.feed(block)
    whole = second.finish()
    shutil.copyfile(source, destination)
    if durable:
        fd = os.open(destination, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return hasher.hexdigest() + whole


def floor_command(source: Path, destination: Path, durable: bool = False, passes: int = 1) -> list[str]:
    """:func:`hash_and_copy` (or with ``passes=2`` :func:`hash_twice_and_copy`) as a process,
    to pair with an mreg command (both pay Python's start)."""
    function = "hash_twice_and_copy" if passes == 2 else "hash_and_copy"
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import common; common.{function}(*sys.argv[1:])"
    return [sys.executable, "-c", code, str(source), str(destination), *(["durable"] if durable else [])]


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def safetensors_file(path: Path, size: int) -> Path:
    """Write a safetensors file of about ``size`` bytes: 10 MB float32 tensors of random values."""
    import numpy
    from safetensors.numpy import save_file

    count = max(1, size // (10 << 20))
    generator = numpy.random.default_rng(0)
    save_file({f"layer{i}.weight": generator.standard_normal((1024, 2560), dtype=numpy.float32) for i in range(count)}, str(path))
    return path


def run(command: list[str], **kwargs: object) -> None:
    """Run a command, failing loudly."""
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


def mreg(*args: str, cwd: Path) -> None:
    """Run the mreg CLI in a subprocess."""
    run([sys.executable, "-m", "mreg", *args], cwd=cwd)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory on the same disk as the repository's temp dir."""
    with tempfile.TemporaryDirectory(prefix=f"mreg-bench-{prefix}-") as directory:
        yield Path(directory)


def report(name: str, value: float, baseline: float, target: str, ratio: float | None = None) -> None:
    """Print one result line: mreg, baseline (seconds), ratio (the median per-pair one when given), target."""
    ratio = ratio if ratio is not None else value / baseline if baseline else float("inf")
    print(f"{name:<52} mreg {_seconds(value)}  baseline {_seconds(baseline)}  ratio {ratio:5.2f}  (target {target})")


def _seconds(value: float) -> str:
    return f"{value:8.3f} s " if value >= 1 else f"{value * 1000:8.2f} ms"


def absolute(name: str, value: float, target: str, unit: str = "ms") -> None:
    """Print a result with an absolute target."""
    print(f"{name:<52} {value:8.2f} {unit}  (target {target})")


def compile_package() -> None:
    """Compile mreg's bytecode once, as pip does for installed packages.

    Some environments set PYTHONDONTWRITEBYTECODE; without this, an editable install
    would recompile mreg on every start and the CLI timings would measure the compiler.
    """
    import mreg  # the copy on PYTHONPATH, which the timed commands run

    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    run([sys.executable, "-m", "compileall", "-q", str(Path(mreg.__file__).parent)], env=env)


def show_startup(directory: Path, ref: str, pairs: int) -> tuple[float, float, float]:
    """``mreg show REF`` against ``python -c "import click, msgpack"``, as whole processes,
    paired: (mreg's median, the baseline's median, the median per-pair ratio)."""
    baseline = [sys.executable, "-c", "import click, msgpack"]
    show = [sys.executable, "-m", "mreg", "show", ref]
    return paired(
        lambda: subprocess.run(baseline, cwd=directory, check=True, stdout=subprocess.DEVNULL),
        lambda: subprocess.run(show, cwd=directory, check=True, stdout=subprocess.DEVNULL),
        pairs,
    )


def startup_pairs(commands: dict[str, list[str]], cwd: Path, pairs: int) -> dict[str, tuple[float, float, float]]:
    """Each command against ``python -c "import click, msgpack"``, as whole processes, the
    baseline and the commands run in turn ``pairs`` times: per command, (its median, the
    baseline's median, the median per-pair ratio)."""
    baseline = [sys.executable, "-c", "import click, msgpack"]
    times: dict[str, list[float]] = {name: [] for name in ["", *commands]}
    ratios: dict[str, list[float]] = {name: [] for name in commands}

    def timed(command: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started

    for _ in range(pairs):
        base = timed(baseline)
        times[""].append(base)
        for name, command in commands.items():
            times[name].append(timed(command))
            ratios[name].append(times[name][-1] / base)
    base_median = statistics.median(times[""])
    return {name: (statistics.median(times[name]), base_median, statistics.median(ratios[name])) for name in commands}


def resnet_fine_tunes(versions: int = 10, steps: int = 10) -> list[dict]:
    """ResNet-18 (torchvision, random init, seeded) and ``versions - 1`` successive full
    fine-tunes (SGD, lr 1e-4, momentum 0.9, ``steps`` steps each on random 8x3x64x64 batches
    with random labels): every tensor changes, so chunk dedup saves nothing. The state
    dicts, each a detached copy; checked so that no tensor is left unchanged."""
    import torch

    from mreg.pytorch import TorchvisionBuilder

    torch.manual_seed(0)
    model = TorchvisionBuilder("resnet18").build()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    states: list[dict] = []
    for number in range(versions):
        if number:
            for _ in range(steps):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 64, 64)), torch.randint(0, 1000, (8,)))
                loss.backward()
                optimizer.step()
        state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        if states:
            assert all(not torch.equal(state[name], states[-1][name]) for name in state), "a tensor did not change"
        states.append(state)
    return states
