"""The work queue on a Ray cluster: ``adcvsr upscale ... --ray``.

:class:`RayPool` has the :meth:`~adcvsr_cli.workers.DevicePool.run` interface of the device
pool, with Ray actors as the workers: one per GPU of the cluster (``num_gpus=1``), or with
``--device cpu`` one per CPU. Each actor loads the network once and runs task after task (whole
files of a batch, segments of a long video: :mod:`adcvsr_cli.jobqueue`);
inputs, outputs and the work folder must lie on a filesystem every node sees. An actor that
dies is restarted by Ray and its task retried (``max_restarts``, ``max_task_retries``); if
it dies for good, its task goes to another actor. Events (progress, warnings) stream back to
the driver through a Ray queue, so the bars and JSON lines are the driver's.

Ray is an optional extra (``pip install 'adcvsr[ray]'``), imported only here and only when asked.
``RAY_ADDRESS`` names the cluster to join; without it a local one is started.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import Interrupted, UsageError

MAX_RESTARTS = 2  # per actor: a node lost, a process killed, a driver bug on one input
MAX_TASK_RETRIES = 2
_POLL_S = 0.05
_END = object()
Post = Callable[[dict[str, Any]], None]


def import_ray() -> Any:
    """The ``ray`` module, or a UsageError naming the extra that provides it."""
    try:
        import ray
    except ImportError as e:
        raise UsageError(
            "--ray needs Ray, which is not installed: pip install 'adcvsr[ray]'"
        ) from e
    return ray


class _Worker:
    """The body of one actor: a network loaded once, then one task (a file, a segment) per call."""

    def __init__(self, load: dict[str, Any]) -> None:
        from .pipeline import load_model

        self.upscaler = load_model(**load)

    def run(self, work: Callable[..., Any], item: Any, events: Any) -> Any:
        def post(event: dict[str, Any]) -> None:
            events.put(event)

        return work(self.upscaler, item, post, threading.Event())

    def device(self) -> str:
        return str(self.upscaler.device)


def _original(e: Any) -> BaseException:
    """The exception an actor raised, as raised (its message alone), with the actor's
    traceback as a note where Python keeps notes (3.11+)."""
    err = e.cause if isinstance(e.cause, BaseException) else e.as_instanceof_cause()
    if hasattr(err, "add_note"):
        err.add_note(str(e))
    return err


class RayPool:
    """Actors on a Ray cluster, used like a :class:`~adcvsr_cli.workers.DevicePool`."""

    def __init__(self, load: dict[str, Any], *, workers: int | None = None) -> None:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, log_to_driver=False)
        cpu = str(load.get("device", "auto")) == "cpu"
        resources = ray.cluster_resources()
        n = workers or int(resources.get("CPU" if cpu else "GPU", 0))
        if n < 1:
            raise UsageError(
                "--ray: the cluster has no GPU (use --device cpu to run the actors on CPUs)"
            )
        actor = ray.remote(_Worker).options(
            num_cpus=1 if cpu else 0,
            num_gpus=0 if cpu else 1,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
        )
        device = "cpu" if cpu else "cuda"  # Ray shows each actor its own GPU as cuda:0
        self.actors = [actor.remote({**load, "device": device}) for _ in range(n)]
        self.names = [f"ray actor {i}" for i in range(n)]
        from ray.util.queue import Queue

        self.events = Queue()

    def run(
        self,
        items: Iterable[Any],
        work: Callable[..., Any],
        on_done: Callable[[Any, Any, str], None],
        on_event: Post,
        cancel: threading.Event | None = None,
        on_error: Callable[[Any, BaseException, str], None] | None = None,
    ) -> None:
        """Every item through ``work(upscaler, item, post, stop)`` on the actors (see the
        device pool: ``items`` read lazily, one whenever an actor is free; ``on_error``);
        raises the first error that stops the run."""
        ray = self.ray
        source = iter(items)
        todo: list[Any] = []  # items handed back by an actor that died
        idle = list(range(len(self.actors)))
        running: dict[Any, tuple[int, Any]] = {}
        more = True
        while True:
            while idle and (todo or more):
                item = todo.pop(0) if todo else next(source, _END)
                if item is _END:
                    more = False
                    break
                i = idle.pop(0)
                running[self.actors[i].run.remote(work, item, self.events)] = (i, item)
            if not running and not todo and not more:
                break
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            ready, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_S)
            self._drain(on_event)
            for ref in ready:
                i, item = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    self._lost(i, item, e, todo, idle, on_event)
                    continue
                except ray.exceptions.RayTaskError as e:
                    cause = e.as_instanceof_cause()
                    if on_error is None or isinstance(cause, (Interrupted, KeyboardInterrupt)):
                        raise cause from None
                    idle.append(i)
                    on_error(item, _original(e), self.names[i])
                    continue
                idle.append(i)
                on_done(item, result, self.names[i])
        self._drain(on_event)

    def _lost(
        self, i: int, item: Any, e: BaseException, todo: list[Any], idle: list[int], post: Post
    ) -> None:
        """An actor died beyond its restarts: its item goes to the others."""
        alive = len(self.actors) - sum(1 for a in self.actors if a is None) - 1
        self.actors[i] = None
        if alive <= 0:
            raise RuntimeError(f"every Ray actor died; the last: {e}") from e
        post(
            {
                "type": "warning",
                "message": f"{self.names[i]} died ({type(e).__name__}); its work goes to the "
                f"{alive} other actor(s)",
            }
        )
        todo.insert(0, item)

    def _drain(self, on_event: Post) -> None:
        while not self.events.empty():
            for event in self.events.get_nowait_batch(self.events.qsize()):
                on_event(event)

    def close(self) -> None:
        for a in self.actors:
            if a is not None:
                self.ray.kill(a)
