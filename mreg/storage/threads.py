"""Work on several threads, and progress callbacks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


SYNC_THREADS = 8


Progress = Callable[[int], None]
"""A callback told how many more bytes were processed."""


ProgressReport = Callable[[int, int], None]
"""A callback told how many bytes of how many in all are done: ``(done, total)``."""


def counting(report: ProgressReport | None, total: int) -> Progress | None:
    """Turn a ``(done, total)`` report into a per-block Progress callback."""
    if report is None:
        return None
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        report(done, total)

    return advance


def in_parallel(work: Callable[[T], object], items: Iterable[T], workers: int = SYNC_THREADS) -> None:
    """Run ``work`` on every item, ``workers`` at a time; the first error stops the rest and is raised.

    For fsyncs, which mostly wait (concurrent fsyncs share the file system's journal
    commits: 60 small files sync several times faster together than one after the
    other), and for transfers. Plain threads, not concurrent.futures: importing that (and the logging it pulls in)
    costs a command that moves nothing a tenth of its time.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    positions = iter(range(len(items)))
    lock = threading.Lock()
    failures: list[tuple[int, BaseException]] = []

    def run() -> None:
        while True:
            with lock:
                position = None if failures else next(positions, None)
            if position is None:
                return
            try:
                work(items[position])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with lock:
                    failures.append((position, exc))

    threads = [threading.Thread(target=run, name="mreg-parallel", daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException as exc:  # Ctrl-C: start nothing more, let the running items end
        with lock:
            failures.append((-1, exc))
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]


class Worker:
    """One thread that runs work in order: writing blocks, feeding a second hash,
    installing finished blobs, while the caller hashes the next block.

    hashlib and os.write release the GIL, so on two cores a file is hashed, and
    written, in about the time of hashing it. Blocks must not change once queued.
    """

    def __init__(self, backlog: int = 4) -> None:
        import queue  # writers only: keep read-only commands quick to start
        import threading

        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=backlog)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mreg-writer", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        """Queue work; re-raise here an error that earlier work met."""
        self.check()
        self._queue.put(work)

    def drain(self) -> None:
        """Wait until all queued work is done; re-raise its error here."""
        self._queue.join()
        self.check()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            try:
                if self._error is None:  # after a failure, skip the rest
                    work()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()
