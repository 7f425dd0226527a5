"""Device workers: one thread per device, each with its own network, pulling work from one queue.

``--devices cuda:0,cuda:1`` (or ``all``; ``cpu,cpu`` runs two workers on the CPU) gives a
:class:`DevicePool`. :meth:`DevicePool.run` hands tasks (files of a batch, segments of a video) to whichever
worker is free. Events the workers raise are passed to the caller's ``on_event`` from the
caller's thread, so progress bars and JSON lines see one stream. A worker whose device fails
(a RuntimeError or OSError that is not about the input or the options) is retired and its task
goes back to the queue for another worker; when no worker is left the error is raised. Any other
error of an item stops the run, or, given ``on_error``, is handed to it and the run goes on.
Out-of-memory never gets here: each worker's network backs off on its own, as a single run does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import Interrupted, UsageError

T = TypeVar("T")
R = TypeVar("R")
Event = dict[str, Any]
Post = Callable[[Event], None]
OnError = Callable[[T, BaseException, str], None]
_END = object()
_POLL_S = 0.05
_ABORT_JOIN_S = 1.5  # a stop must end the run within about 2 s


def parse_devices(spec: str) -> list[str]:
    """``cuda:0,cuda:1`` / ``all`` / ``cpu,cpu`` -> device names (``all``: every CUDA device)."""
    import torch

    spec = spec.strip()
    if spec == "all":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError("--devices all: no CUDA device is available here (use --devices cpu)")
        return [f"cuda:{i}" for i in range(n)]
    names = [p.strip() for p in spec.split(",") if p.strip()]
    if not names:
        raise UsageError(f"--devices {spec!r}: give devices such as cuda:0,cuda:1 or all")
    return names


@dataclass
class _Task(Generic[T]):
    item: T
    attempts: int = 0


class DevicePool(Generic[T, R]):
    """Workers (one per entry of ``workers``: an object the work function runs with)."""

    def __init__(self, workers: Sequence[Any], names: Sequence[str] | None = None) -> None:
        if not workers:
            raise ValueError("a device pool needs at least one worker")
        self.workers = list(workers)
        self.names = (
            list(names) if names is not None else [f"worker {i}" for i in range(len(workers))]
        )

    def run(
        self,
        items: Iterable[T],
        work: Callable[[Any, T, Post, threading.Event], R],
        on_done: Callable[[T, R, str], None],
        on_event: Post,
        cancel: threading.Event | None = None,
        on_error: OnError[T] | None = None,
    ) -> None:
        """Run ``work(worker, item, post, stop)`` for every item; ``on_done(item, result, worker_name)``
        and ``on_event`` run in the calling thread. ``stop`` is set when the run ends early (an
        error, ``cancel``): work in flight must check it and stop. Raises the first error that
        stops the run.

        ``items`` is read lazily, in the calling thread, one item whenever a worker is about to
        be free (a batch opens its next file only when there is a worker for it). With
        ``on_error``, an item whose work raised an error that is neither a device failure nor a
        stop is handed to ``on_error(item, error, worker_name)`` and the run goes on."""
        todo: queue.Queue[_Task[T]] = queue.Queue()
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=self._loop,
                args=(i, todo, inbox, stop, work),
                name=f"adcvsr-{n}",
                daemon=True,
            )
            for i, n in enumerate(self.names)
        ]
        for t in threads:
            t.start()
        try:
            self._serve(iter(items), len(threads), inbox, todo, on_done, on_event, cancel, on_error)
        finally:
            stop.set()
            deadline = time.monotonic() + _ABORT_JOIN_S
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))

    def _serve(
        self,
        items: Iterator[T],
        n_workers: int,
        inbox: queue.Queue[tuple[str, Any]],
        todo: queue.Queue[_Task[T]],
        on_done: Callable[[T, R, str], None],
        on_event: Post,
        cancel: threading.Event | None,
        on_error: OnError[T] | None,
    ) -> None:
        pending = 0  # queued or running
        alive = n_workers
        more = True
        while True:
            while more and pending < alive:  # one item per worker, so new ones go to the free
                item = next(items, _END)
                if item is _END:
                    more = False
                else:
                    todo.put(_Task(item))  # type: ignore[arg-type]
                    pending += 1
            if not more and pending == 0:
                return
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            try:
                kind, payload = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "event":
                on_event(payload)
            elif kind == "done":
                pending -= 1
                on_done(*payload)
            elif kind == "error" and on_error is not None:
                pending -= 1
                on_error(*payload)
            elif kind == "error":
                raise payload[1]
            elif kind == "fatal":
                raise payload
            elif kind == "lost":
                alive = self._lost(payload, alive, todo, on_event)

    @staticmethod
    def _lost(
        payload: tuple[str, _Task[T], BaseException],
        alive: int,
        todo: queue.Queue[_Task[T]],
        on_event: Post,
    ) -> int:
        """A worker's device failed: it is retired, its task goes back to the queue."""
        name, task, err = payload
        alive -= 1
        task.attempts += 1
        if alive == 0:
            raise err
        on_event(
            {
                "type": "warning",
                "message": f"{name} failed ({type(err).__name__}: {err}); it is "
                f"retired and its work goes to the {alive} other worker(s)",
            }
        )
        todo.put(task)
        return alive

    def _loop(
        self,
        i: int,
        todo: queue.Queue[_Task[T]],
        inbox: queue.Queue[tuple[str, Any]],
        stop: threading.Event,
        work: Callable[[Any, T, Post, threading.Event], R],
    ) -> None:
        def post(event: Event) -> None:
            inbox.put(("event", event))

        while not stop.is_set():
            try:
                task = todo.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            try:
                result = work(self.workers[i], task.item, post, stop)
            except (Interrupted, KeyboardInterrupt) as e:
                inbox.put(("fatal", e))  # a stop
                return
            except (RuntimeError, OSError) as e:
                # A device failure (CUDA errors are RuntimeErrors; out-of-memory was already
                # backed off inside the network call): retire this worker, hand the work on.
                inbox.put(("lost", (self.names[i], task, e)))
                return
            except Exception as e:
                # About this item (its input, the options: an AdcvsrError) or a bug met on it:
                # the caller decides (a batch reports the file and goes on; else the run stops).
                inbox.put(("error", (task.item, e, self.names[i])))
                continue
            except BaseException as e:
                # SystemExit and the like: a thread cannot raise them where they mean something,
                # so the calling thread re-raises this one (and the run stops).
                inbox.put(("fatal", e))
                return
            inbox.put(("done", (task.item, result, self.names[i])))
