"""A batch on one work queue: whole files and the segments of long ones, shared by every worker.

With several workers (``--devices cuda:0,cuda:1``, ``--ray``) the files of a batch do not run
one after another. Each file that runs in one piece (shorter than a segment, or ``--segment 0``)
is one task; a long file (:mod:`adcvsr_cli.segmented`) adds one task per segment still to run,
and is joined on the driver as soon as its last segment is in. The pool (a
:class:`~adcvsr_cli.workers.DevicePool` or a :class:`~adcvsr_cli.cluster.RayPool`) gives the
next task to whichever worker is free. Files are opened in order and only when a worker is about
to be free, so the first file starts at once and a long file is scanned when its turn comes.

Every event of a task carries the ``key`` of its file, so the caller keeps one progress line per
file while several are in flight. A task that fails for its file's sake (bad input, or a bug met
on it) fails that file only; the others go on. A worker whose device fails is retired by the
pool and its task goes to another worker (a dead Ray actor is restarted by Ray first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .engine.options import UpscaleOptions
from .engine.upscaler import Upscaler
from .errors import AdcvsrError
from .media import EncodeOptions
from .pipeline import UpscaleReport
from .pipeline import upscale as upscale_one
from .segmented import Long, _Job, open_long, run_segment
from .segments import Segment

Event = dict[str, Any]


@dataclass(frozen=True)
class FileWork:
    """One file of the batch, checked by the caller and ready to run (``key``: the caller's)."""

    key: int
    src: str
    dst: str


@dataclass(frozen=True)
class Whole:
    """A task: one file in one piece, on one worker."""

    key: int
    src: str
    dst: str
    options: UpscaleOptions
    encode: EncodeOptions


@dataclass(frozen=True)
class Part:
    """A task: one segment of a long file."""

    key: int
    job: _Job
    seg: Segment


def run_task(up: Upscaler, task: Whole | Part, post: Callable[[Event], None], stop: Any) -> Any:
    """The work of one task on a worker (a thread or a Ray actor); every event tagged with the
    task's file. A whole file returns its report, a segment its manifest record."""

    def tagged(e: Event) -> None:
        post({**e, "key": task.key})

    if isinstance(task, Whole):
        return upscale_one(
            task.src, task.dst, up, task.options, task.encode, on_event=tagged, cancel=stop
        )
    return run_segment(task.job, up, task.seg, tagged, stop)


@dataclass
class _Open:
    """A file in flight: its segmented run (None: one piece), the tasks it waits for, since when."""

    long: Long | None
    left: int
    workers: set[str] = field(default_factory=set)
    t0: float = field(default_factory=time.perf_counter)


class Callbacks(Protocol):
    """What the caller hears, all in its own thread."""

    def start(self, key: int) -> None:
        """The file is taken off the list (its events follow)."""

    def event(self, key: int, e: Event) -> None:
        """A library event of the file (``start``, ``progress``, ``warning``, ``segment``...)."""

    def run_event(self, e: Event) -> None:
        """An event of the run rather than of a file (a worker retired, its task handed on)."""

    def done(self, key: int, report: UpscaleReport, workers: list[str], seconds: float) -> None:
        """The file is written."""

    def failed(self, key: int, error: BaseException, workers: list[str]) -> None:
        """The file failed (an :class:`~adcvsr_cli.errors.AdcvsrError`, or a bug met on it);
        nothing of it was published. The batch goes on."""


class JobQueue:
    """The files of a batch on one pool: see the module."""

    def __init__(
        self,
        pool: Any,
        planner: Upscaler,
        options: UpscaleOptions,
        encode: EncodeOptions,
        *,
        segment: int,
        restart: bool,
        devices: str,
    ) -> None:
        """``planner``: the driver's network, which plans and scans long files; ``segment`` 0
        runs every file in one piece; ``devices``: what the reports name as the device."""
        self.pool, self.planner, self.options, self.encode = pool, planner, options, encode
        self.segment, self.restart, self.devices = segment, restart, devices
        self.open: dict[int, _Open] = {}
        self.cb: Callbacks

    def run(
        self, files: Iterable[FileWork], cb: Callbacks, cancel: threading.Event | None = None
    ) -> None:
        """Run every file; per-file outcomes go to ``cb``. Raises only what stops the whole run
        (a stop, every worker lost); then the unfinished files' work folders are kept."""
        self.cb = cb
        try:
            self.pool.run(
                self._tasks(files), run_task, self._on_done, self._on_event, cancel, self._on_error
            )
        finally:
            for st in self.open.values():
                if st.long is not None:
                    st.long.abandon()

    # -- the driver's side ------------------------------------------------------------------
    def _tasks(self, files: Iterable[FileWork]) -> Iterator[Whole | Part]:
        """The tasks, file after file, made when the pool asks for the next one."""
        for f in files:
            self.cb.start(f.key)
            try:
                long = self._open_long(f)
            except AdcvsrError as e:  # refused resume, existing output, unreadable input...
                self.cb.failed(f.key, e, [])
                continue
            if long is None:
                self.open[f.key] = _Open(None, 1)
                yield Whole(f.key, f.src, f.dst, self.options, self.encode)
                continue
            self.open[f.key] = _Open(long, len(long.todo))
            if not long.todo:  # every segment was done before the interruption: join only
                self._finish(f.key)
            for seg in long.todo:
                if f.key not in self.open:  # the file failed meanwhile: drop its other segments
                    break
                yield Part(f.key, long.job, seg)

    def _open_long(self, f: FileWork) -> Long | None:
        if self.segment == 0:
            return None

        def emit(e: Event) -> None:
            self.cb.event(f.key, e)

        return open_long(
            f.src,
            f.dst,
            self.planner,
            self.options,
            self.encode,
            segment=self.segment,
            restart=self.restart,
            emit=emit,
        )

    def _on_event(self, e: Event) -> None:
        key = e.pop("key", None)
        if key is None:  # the pool's own (a worker retired)
            self.cb.run_event(e)
            return
        st = self.open.get(key)
        if st is None:
            return  # a late event of a file that failed
        if st.long is not None:
            st.long.on_event(e)
        else:
            self.cb.event(key, e)

    def _on_done(self, task: Whole | Part, result: Any, worker: str) -> None:
        st = self.open.get(task.key)
        if st is None:
            return  # the file failed meanwhile: its last segments are not kept
        st.workers.add(worker)
        if isinstance(task, Whole):
            del self.open[task.key]
            self.cb.done(task.key, result, sorted(st.workers), time.perf_counter() - st.t0)
            return
        assert st.long is not None
        st.long.on_done(task.seg, result, worker)
        st.left -= 1
        if st.left == 0:
            self._finish(task.key)

    def _finish(self, key: int) -> None:
        """Every segment of a long file is in: join it (on the driver), publish it."""
        st = self.open[key]
        assert st.long is not None
        try:
            report = st.long.finish(self.devices)
        except AdcvsrError as e:
            self._on_failed(key, e)
            return
        del self.open[key]
        self.cb.done(key, report, sorted(st.workers), time.perf_counter() - st.t0)

    def _on_error(self, task: Whole | Part, error: BaseException, worker: str) -> None:
        if task.key in self.open:
            self.open[task.key].workers.add(worker)
            self._on_failed(task.key, error)

    def _on_failed(self, key: int, error: BaseException) -> None:
        st = self.open.pop(key)
        if st.long is not None:
            st.long.abandon()  # the work folder stays: a rerun resumes the finished segments
        self.cb.failed(key, error, sorted(st.workers))
