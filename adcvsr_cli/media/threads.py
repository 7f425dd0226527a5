"""Thread and queue plumbing of a run: bounded queues that notice a stop, worker threads whose
first error is kept for the main thread (:class:`Crew`), a worker that fills a queue the main
thread iterates (:class:`Feed`), one that drains a queue the main thread fills (:class:`Drain`),
one that maps a function over what the main thread gives it (:class:`Worker`), and the
thread-safe hand-over of warnings (:class:`Events`).

The main thread waits on queues in short slices so that it can check for a worker's error or a
cancellation in between; the workers do the same with the shared stop event.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

QUEUE_POLL_S = 0.05
JOIN_TIMEOUT_S = 10.0
ABORT_JOIN_S = 1.5  # Ctrl-C must end the run within about 2 s (reliability.md §1.11)

END = object()
"""Put on a queue after the last item."""


class Stopped(Exception):
    """A worker thread was told to stop."""


def put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put ``item`` on ``q``, waiting as long as needed unless ``stop`` is set (Stopped)."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=QUEUE_POLL_S)
            return
        except queue.Full:
            continue


def get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """Take an item from ``q``, waiting as long as needed unless ``stop`` is set (Stopped)."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return q.get(timeout=QUEUE_POLL_S)
        except queue.Empty:
            continue


def put_checked(q: queue.Queue[Any], item: Any, check: Callable[[], None]) -> None:
    """Put from the main thread, calling ``check`` (which raises) while the queue is full."""
    while True:
        try:
            q.put(item, timeout=QUEUE_POLL_S)
            return
        except queue.Full:
            check()


def get_checked(q: queue.Queue[Any], check: Callable[[], None]) -> Any:
    """Take from the main thread, calling ``check`` (which raises) while the queue is empty."""
    while True:
        try:
            return q.get(timeout=QUEUE_POLL_S)
        except queue.Empty:
            check()


def drain(q: queue.Queue[Any]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def queue_len(item_bytes: int, budget: int, lo: int, hi: int) -> int:
    """How many items of ``item_bytes`` fit in ``budget`` bytes, clamped to ``[lo, hi]``."""
    return max(lo, min(hi, budget // max(1, item_bytes)))


Wrap = Callable[[BaseException], BaseException]


class Crew:
    """The worker threads of one run, their stop event and the first error any of them hit.

    ``spawn(fn, name, wrap)`` runs ``fn()`` in a daemon thread; an exception other than
    :class:`Stopped` is passed through ``wrap`` (to turn it into a typed error), kept, and
    stops the others. The main thread calls :meth:`check` to re-raise it.
    """

    def __init__(self, cancel: threading.Event | None = None, name: str = "") -> None:
        self.cancel = cancel  # set by the caller to interrupt the run (Interrupted)
        self.name = name
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.busy: dict[str, float] = collections.defaultdict(float)

    def fail(self, e: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = e
        self.stop.set()

    def spawn(
        self, fn: Callable[[], None], name: str, wrap: Callable[[BaseException], BaseException]
    ) -> threading.Thread:
        def body() -> None:
            try:
                fn()
            except Stopped:
                pass
            except BaseException as e:  # handed to the caller's thread, which raises it
                self.fail(wrap(e))

        t = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def check(self) -> None:
        """On the main thread: re-raise a worker's error; raise Interrupted once cancelled."""
        if self.error is not None:
            raise self.error
        if self.cancel is not None and self.cancel.is_set():
            from ..errors import Interrupted

            raise Interrupted(f"{self.name}: cancelled")

    def wait(self, t: threading.Thread, check: Callable[[], None]) -> None:
        """Join ``t`` from the main thread, checking for errors and cancellation meanwhile."""
        while t.is_alive():
            t.join(QUEUE_POLL_S)
            check()

    def worker(
        self, fn: Callable[[Any], Iterable[Any]], size: int, name: str, wrap: Wrap
    ) -> Worker:
        """A worker thread mapping ``fn`` over the items put (see :class:`Worker`)."""
        return Worker(self, fn, size, name, wrap)

    def feed(self, items: Iterable[Any], size: int, name: str, wrap: Wrap) -> Feed:
        """Iterate ``items`` in a worker thread into a queue of ``size``; iterate the Feed."""
        return Feed(self, items, size, name, wrap)

    def drain(
        self,
        write: Callable[[Any], None],
        finish: Callable[[], None],
        size: int,
        name: str,
        wrap: Wrap,
    ) -> Drain:
        """A worker thread that calls ``write(item)`` for each item put, then ``finish()``."""
        return Drain(self, write, finish, size, name, wrap)

    def abort(self) -> None:
        """Stop every worker and give them a short while to end."""
        self.stop.set()
        deadline = time.monotonic() + ABORT_JOIN_S
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def alive(self, t: threading.Thread | None) -> bool:
        return t is not None and t.is_alive()


class Feed:
    """A worker thread that iterates ``items`` into a bounded queue; the main thread iterates
    the Feed (checking for errors and cancellation while it waits). ``busy``: seconds the worker
    spent producing items (not waiting for room); ``exhausted``: every item was taken."""

    def __init__(self, crew: Crew, items: Iterable[Any], size: int, name: str, wrap: Wrap):
        self.crew, self.items = crew, items
        self.q: queue.Queue[Any] = queue.Queue(size)
        self.busy = 0.0
        self.taken = 0
        self.exhausted = False
        self.thread = crew.spawn(self._fill, name, wrap)

    def _fill(self) -> None:
        t0 = time.monotonic()
        for item in self.items:
            self.busy += time.monotonic() - t0
            put(self.q, item, self.crew.stop)
            t0 = time.monotonic()
        put(self.q, END, self.crew.stop)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = get_checked(self.q, self.crew.check)
            if item is END:
                self.exhausted = True
                return
            self.taken += 1
            yield item

    def join(self) -> None:
        self.thread.join(JOIN_TIMEOUT_S)


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` made safe to call from two threads: only the first call runs it."""
    lock = threading.Lock()
    done = False

    def call() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        fn()

    return call


class Drain:
    """A worker thread that takes what the main thread :meth:`put` on a bounded queue and calls
    ``write(item)`` on it, then ``finish()`` after :meth:`close`. ``busy``: seconds in
    ``write`` and ``finish`` (not waiting for items)."""

    def __init__(
        self,
        crew: Crew,
        write: Callable[[Any], None],
        finish: Callable[[], None],
        size: int,
        name: str,
        wrap: Wrap,
    ):
        self.crew, self.write, self.finish = crew, write, finish
        self.q: queue.Queue[Any] = queue.Queue(size)
        self.busy = 0.0
        # Called by this thread when it ends on a stop: how a caller that could not wait for
        # it (a write or finish longer than the abort window) still gets its output closed.
        # Once the run stops, ``finish`` is not called (not even after the last item).
        self.on_stop: Callable[[], None] | None = None
        self.thread = crew.spawn(self._drain, name, wrap)

    def _drain(self) -> None:
        try:
            while True:
                item = get(self.q, self.crew.stop)
                if item is END:
                    break
                self._timed(self.write, item)
            if self.crew.stop.is_set():
                raise Stopped  # an abort as the last item went: the output is not finished
            self._timed(self.finish)
        finally:
            # Last, after a finish too: the run's abort closes the output itself only once this
            # thread has ended, so a thread it gave up waiting for closes it here.
            if self.crew.stop.is_set() and self.on_stop is not None:
                self.on_stop()

    def _timed(self, fn: Callable[..., None], *args: Any) -> None:
        t0 = time.monotonic()
        fn(*args)
        self.busy += time.monotonic() - t0

    def put(self, item: Any) -> None:
        put_checked(self.q, item, self.crew.check)

    def close(self) -> None:
        """No more items: wait until everything is written and finished."""
        put_checked(self.q, END, self.crew.check)
        self.crew.wait(self.thread, self.crew.check)
        self.crew.check()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


class Worker(Drain):
    """A worker thread that maps ``fn`` over the items the main thread :meth:`put` (a bounded
    queue of ``size``), each result an iterable; the main thread takes the results in order,
    those ready now (:meth:`ready`, without waiting) or all the rest (:meth:`rest`). The
    results wait in an unbounded queue: the main thread takes the ready ones before each put,
    so at most ``size + 1`` items' results are held."""

    def __init__(
        self, crew: Crew, fn: Callable[[Any], Iterable[Any]], size: int, name: str, wrap: Wrap
    ):
        self.out: queue.Queue[Any] = queue.Queue()
        super().__init__(
            crew,
            lambda item: self.out.put(list(fn(item))),
            lambda: self.out.put(END),
            size,
            name,
            wrap,
        )

    def ready(self) -> Iterator[Any]:
        """The results finished so far, in order."""
        while True:
            try:
                result = self.out.get_nowait()
            except queue.Empty:
                return
            assert result is not END, "ready() after rest()"
            yield from result

    def rest(self) -> Iterator[Any]:
        """No more items: every result not yet taken, in order, waiting for them."""
        put_checked(self.q, END, self.crew.check)
        while True:
            result = get_checked(self.out, self.crew.check)
            if result is END:
                return
            yield from result


class Events:
    """Warnings and events of a run, always delivered on the thread that made it: workers'
    warnings wait in a deque until the main thread flushes them."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.emit = on_event or (lambda event: None)
        self.warnings: list[str] = []
        self._caller = threading.get_ident()
        self._deferred: collections.deque[str] = collections.deque()

    def warn(self, msg: str) -> None:
        if threading.get_ident() != self._caller:
            self._deferred.append(msg)
            return
        self.flush()
        self.warnings.append(msg)
        self.emit({"type": "warning", "message": msg})

    def flush(self) -> None:
        while self._deferred:
            msg = self._deferred.popleft()
            self.warnings.append(msg)
            self.emit({"type": "warning", "message": msg})
