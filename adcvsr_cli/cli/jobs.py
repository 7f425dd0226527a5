"""Run the planned jobs of one ``upscale``: one model for all, per-file failures, the summary."""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import stat
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARTIAL, AdcvsrError, UsageError
from ..workdir import ResumeRefused
from .report import Reporter, plural
from .signals import (
    EXIT_BROKEN_PIPE,
    EXIT_SIGTERM,
    Terminated,
    interruption,
    silence_stdout,
    watched_signals,
)


def named(job: Any, e: BaseException) -> str:
    """The error's message, naming the input when it names neither the input nor the output."""
    msg = str(e) or type(e).__name__
    names = ["<stdin>", "standard input"] if job.src == "-" else [job.src, os.path.abspath(job.src)]
    if job.dst != "-":
        names += [job.dst, os.path.abspath(job.dst)]
    if any(n in msg for n in names):
        return msg
    return f"{'<stdin>' if job.src == '-' else job.src}: {msg}"


def preflight(job: Any, enc: Any) -> str | None:
    """Problems found before any model is loaded: a missing input (VideoError, exit 1) is
    raised; an existing output that may not be replaced is returned as a message."""
    from ..errors import VideoError

    if job.src != "-" and not os.path.lexists(job.src):
        raise VideoError(f"{job.src}: no such file")
    if job.src != "-" and job.dst != "-" and os.path.exists(job.dst):
        with contextlib.suppress(OSError):
            if os.path.samefile(job.src, job.dst):
                raise UsageError(
                    f"{job.dst}: is the input file {job.src}; give another output name "
                    "(the input is never written over)"
                )
    if (
        job.dst != "-"
        and not job.skip_reason
        and not enc.overwrite
        and os.path.lexists(job.dst)
        and not os.path.isdir(job.dst)
        and _is_regular(job.dst)
    ):
        return f"{job.dst}: output exists (use --overwrite/-y to replace it, or --skip-existing)"
    return None


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # a dangling link: the media layer refuses to write through it


class _Run:
    """Counts and rows of one ``upscale`` run, for the summary table and the JSON summary."""

    def __init__(self) -> None:
        self.done = self.skipped = self.failed = self.frames = 0
        self.rows: list[tuple[str, str, str]] = []
        self.keys: list[int] = []  # each row's file position (0: skipped), to order the table
        self.t0 = time.perf_counter()
        self.code = 0  # the exit code of the first failed file (a single file's run exits with it)
        self.fatal = 0  # the model could not load: the run's exit code

    def add(self, row: tuple[str, str, str], key: int = 0) -> None:
        self.rows.append(row)
        self.keys.append(key)

    def ordered(self) -> list[tuple[str, str, str]]:
        """The rows in the batch's order, however the workers finished them."""
        return [r for _, r in sorted(zip(self.keys, self.rows, strict=True), key=lambda kr: kr[0])]


@dataclass(frozen=True)
class Scale:
    """``--segment``, ``--restart``, ``--devices`` (device names, one worker each), ``--ray``."""

    segment: int = 3000
    restart: bool = False
    devices: list[str] = field(default_factory=lambda: ["auto"])
    ray: bool = False


def restart_command() -> str:
    """This very command with ``--restart`` added: what a refused resume tells the user to run."""
    args = [a for a in sys.argv[1:] if a != "--restart"]
    return shlex.join(["adcvsr", *args, "--restart"])


class _ModelFailed(Exception):
    """The model could not load: the run ends (every file would fail the same way)."""


class JobRunner:
    """Runs every job of a plan with one model, loaded once, when the first job needs it."""

    def __init__(
        self, plan: Any, opts: Any, enc: Any, reporter: Reporter, load: dict, scale: Scale
    ) -> None:
        self.plan, self.opts, self.enc, self.reporter, self.load = plan, opts, enc, reporter, load
        self.scale = scale
        self.upscalers: list[Any] = []
        self.pool: Any = None  # a Ray pool with --ray
        self.cancel = threading.Event()
        self.run = _Run()
        self.upscaler: Any = None
        self.in_flight: dict[int, Any] = {}  # the jobs under way, by position
        self.made_dirs: dict[int, list[Path]] = {}  # folders each job created (removed if it fails)
        self.spreading = False  # files in flight together: a failed one's folders wait for the end
        self.unused_dirs: list[Path] = []

    def failed(self, job: Any, e: BaseException, code: int, key: int) -> None:
        self._drop_dirs(key)
        msg = named(job, e)
        self.run.failed += 1
        self.run.code = self.run.code or code
        self.run.add((job.src, "failed", msg), key)
        self.reporter.json("file_failed", file=job.src, output=job.dst, error=msg, exit_code=code)
        self.reporter.error(msg, event=False)

    def _drop_dirs(self, key: int) -> None:
        """Remove the folders a failed or interrupted job created, where they stayed empty; while
        files run together, at the end of the run (another file may be about to write there)."""
        dirs = self.made_dirs.pop(key, [])
        if self.spreading:
            self.unused_dirs += dirs
        else:
            _remove_empty(dirs)

    def _error(self, job: Any, e: Exception, key: int) -> None:
        """A file that failed: its row, its JSON line and its message."""
        if isinstance(e, ResumeRefused):
            self.failed(job, UsageError(f"{e}: {restart_command()}"), e.exit_code, key)
            return
        if isinstance(e, AdcvsrError):
            self.failed(job, e, e.exit_code, key)
            return
        # Not bad input but a bug met on this file (any other Exception). A batch reports it for
        # this file and goes on with the rest, as it does for a bad file: stopping would throw
        # away the rest of a long batch for one odd input, and nothing is lost without a word:
        # the file is listed as failed, the exit status says so, -vv shows the traceback.
        # KeyboardInterrupt, SIGTERM and SystemExit are not Exceptions and still stop the run.
        msg = f"internal error: {type(e).__name__}: {e} (add -vv to the command to see where)"
        self.failed(job, RuntimeError(msg), EXIT_ERROR, key)
        self.reporter.log("".join(traceback.format_exception(e)).rstrip(), level=2)

    def _announce(self, to_run: list[Any]) -> None:
        plan, reporter, run = self.plan, self.reporter, self.run
        reporter.json(
            "run_start",
            files=len(plan.jobs),
            to_run=len(to_run),
            skipped=len(plan.jobs) - len(to_run),
            ignored=len(plan.ignored),
        )
        if plan.batch and not plan.jobs:
            reporter.warn(
                "no video or image files found"
                + (f" ({len(plan.ignored)} other file(s) ignored)" if plan.ignored else "")
            )
        for j in plan.jobs:
            if j.skip_reason:
                run.skipped += 1
                run.add((j.src, "skipped", j.skip_reason))
                reporter.json("file_skipped", file=j.src, output=j.dst, reason=j.skip_reason)
                if not plan.batch:  # a batch says it in its table
                    reporter.log(f"{j.src}: skipped, {j.dst} exists (--skip-existing)")

    def _prepare(self, job: Any, key: int) -> None:
        """Checks before the model is loaded or the file is run; raises AdcvsrError."""
        from ..media import OutputExists

        problem = preflight(job, self.enc)
        if problem is not None:
            raise OutputExists(problem)
        from ..media import is_stream_input

        if self.upscaler is None and not is_stream_input(job.src):
            # Until the model is loaded, check that the input is media at all: a rerun
            # left with only broken files loads no model. (A pipe is read once, by the run.)
            from ..media import probe

            probe(job.src)
        if job.dst != "-":
            self.made_dirs[key] = _make_parents(Path(job.dst))

    def _load_model(self) -> None:
        """Once per run, outside the first file's timing."""
        from .. import pipeline

        reporter = self.reporter
        t_load = time.perf_counter()
        try:
            for device in self.scale.devices:
                load = {**self.load, "device": device}
                self.upscalers.append(pipeline.load_model(on_event=reporter.on_event, **load))
            self.upscaler = up = self.upscalers[0]
            if self.scale.ray and self.spread:
                from ..cluster import RayPool

                self.pool = RayPool(self.load)
        except AdcvsrError as e:
            reporter.error(str(e), exit_code=e.exit_code)
            self.run.fatal = e.exit_code
            raise _ModelFailed from e
        reporter.json(
            "model",
            weights=up.source,
            device=str(up.device),
            precision=up.dtype_name(),
            temporal=up.temporal,
            seconds=round(time.perf_counter() - t_load, 3),
        )
        reporter.log(
            f"model {up.source} on {', '.join(str(u.device) for u in self.upscalers)} ({up.dtype_name()}) "
            f"loaded in {time.perf_counter() - t_load:.1f} s",
            level=1,
        )

    def _upscale(self, job: Any) -> Any:
        """One file: in resumable segments on every worker when long enough (``--segment``)."""
        from .. import pipeline
        from ..segmented import upscale_long

        if self.scale.segment == 0:
            return pipeline.upscale(
                job.src,
                job.dst,
                self.upscaler,
                self.opts,
                self.enc,
                on_event=self.reporter.on_event,
                cancel=self.cancel,
            )
        return upscale_long(
            job.src,
            job.dst,
            self.upscalers,
            self.opts,
            self.enc,
            segment=self.scale.segment,
            restart=self.scale.restart,
            on_event=self.reporter.on_event,
            cancel=self.cancel,
            pool=self.pool,
        )

    def _one(self, job: Any, index: int, files: int) -> bool:
        """Run one file; False when the run must stop (a single file failed)."""
        from ..errors import Interrupted

        self.reporter.start_file(job.src, job.dst, index, files)
        if job.note:
            self.reporter.log(f"{job.src}: {job.note}")
        started = time.perf_counter()
        try:
            rep = self._upscale(job)
        except BrokenPipeError:
            raise
        except Interrupted:
            raise interruption() from None
        except Exception as e:  # this file failed, for its input or a bug: see _error
            self._error(job, e, index)
            return self.plan.batch
        self._done(job, rep, time.perf_counter() - started, index)
        return True

    def _done(
        self, job: Any, rep: Any, secs: float, key: int, workers: list[str] | None = None
    ) -> None:
        """A file written: its row, its JSON line and its log lines."""
        reporter, run = self.reporter, self.run
        self.made_dirs.pop(key, None)  # kept: the output is in it
        run.done += 1
        run.frames += rep.frames_out
        run.add((job.src, "done", f"{plural(rep.frames_out, 'frame')}, {secs:.1f} s"), key)
        extra = {} if workers is None else {"workers": workers}
        reporter.json(
            "file_done",
            file=job.src,
            output=rep.output,
            frames=rep.frames_out,
            seconds=round(secs, 3),
            fps=round(rep.frames_out / secs, 3) if secs > 0 else None,
            plan=rep.plan,
            plan_changes=rep.plan_changes,
            scene_cuts=rep.scene_cuts,
            warnings=rep.media.get("warnings", []),
            cut=rep.media.get("cut"),
            **extra,
        )
        reporter.log(
            f"{job.src} -> {rep.output}: {plural(rep.frames_out, 'frame')} in {secs:.1f} s",
            level=0 if self.plan.batch else 1,
        )
        cut = rep.media.get("cut")
        if cut:  # a partial run says which part it wrote, even when one file prints nothing else
            end = "the end" if cut["end"] is None else f"{cut['end']:.3f} s"
            reporter.log(
                f"{job.src}: cut to frames {cut['first_frame']}..{cut['first_frame'] + cut['frames'] - 1}"
                f" ({cut['start']:.3f} s to {end} of the input; audio, subtitles and chapters "
                f"cut to the same span, timestamps from zero)"
                f"{_cut_context(cut)}"
            )

    def _ready(self, to_run: list[Any]) -> Iterator[tuple[int, Any]]:
        """The jobs that pass the checks before a run, with their positions; the others are
        reported as failed. Ends early when a single file fails (the run stops there)."""
        for index, job in enumerate(to_run, 1):
            try:
                self._prepare(job, index)
            except AdcvsrError as e:
                self.failed(job, e, e.exit_code, index)
                self.reporter.advance_batch()
                if not self.plan.batch:
                    return
                continue
            yield index, job

    def _loop(self, to_run: list[Any]) -> None:
        _clean_stale_parts(to_run, self.reporter)
        self.reporter.start_batch(len(to_run))
        for index, job in self._ready(to_run):
            self.in_flight = {index: job}
            if self.upscaler is None:
                try:
                    self._load_model()
                except _ModelFailed:
                    break
            if not self._one(job, index, len(to_run)):
                break
            self.in_flight = {}
            self.reporter.advance_batch()

    def _spread(self, to_run: list[Any]) -> None:
        """Every file on one queue that all workers pull from (``--devices a,b``, ``--ray``)."""
        from ..jobqueue import FileWork, JobQueue
        from ..segmented import device_pool

        _clean_stale_parts(to_run, self.reporter)
        self.reporter.start_batch(len(to_run))
        ready = self._ready(to_run)
        first = next(ready, None)
        if first is None:
            return
        try:
            self._load_model()
        except _ModelFailed:
            return
        queue = JobQueue(
            self.pool or device_pool(self.upscalers),
            self.upscaler,
            self.opts,
            self.enc,
            segment=self.scale.segment,
            restart=self.scale.restart,
            devices=",".join(str(u.device) for u in self.upscalers),
        )
        files = (
            FileWork(i, os.path.abspath(j.src), os.path.abspath(j.dst))
            for i, j in itertools.chain([first], ready)
        )
        self.spreading = True
        spread = _Spread(self, {i + 1: j for i, j in enumerate(to_run)})
        try:
            queue.run(files, spread, self.cancel)
        except (RuntimeError, OSError) as e:
            # The last worker's device failed (each one before it was retired and its work handed
            # on): the files under way and those not begun fail with it; the finished stay.
            lost = RuntimeError(f"not finished: every worker failed, the last with {e}")
            for key, job in sorted(self.in_flight.items()):
                self.failed(job, lost, EXIT_ERROR, key)
            self.in_flight = {}
            for key, job in spread.jobs.items():
                if key not in spread.started and key not in self.run.keys:  # never begun
                    self.failed(job, lost, EXIT_ERROR, key)
        finally:
            self.spreading = False
            self.unused_dirs += [d for key in self.in_flight for d in self.made_dirs.pop(key, [])]
            _remove_empty(sorted(set(self.unused_dirs), key=lambda p: len(p.parts), reverse=True))

    @property
    def spread(self) -> bool:
        """Whether the files go on the workers' queue: several devices or Ray, and no pipe (a
        pipe is read or written once, here, by the run that owns it)."""
        from ..media import is_stream_input

        if len(self.scale.devices) < 2 and not self.scale.ray:
            return False
        return not any(
            j.src == "-" or j.dst == "-" or is_stream_input(j.src) for j in self.plan.jobs
        )

    def __call__(self) -> int:
        """Run the plan; the exit code."""
        to_run = [j for j in self.plan.jobs if not j.skip_reason]
        self._announce(to_run)
        if (self.scale.ray or len(self.scale.devices) > 1) and not self.spread:
            # A pipe is read (or written) once, here: it cannot be handed to another worker.
            self.reporter.warn(
                "--ray: standard input or output (a pipe) is read and written by this process, "
                "so this run stays here and does not use the cluster"
                if self.scale.ray
                else "--devices: standard input or output (a pipe) is read and written once, "
                f"by this process, so this run uses only {self.scale.devices[0]}"
            )
        interrupted_code = 0
        broken_pipe = False
        try:
            with watched_signals(self.cancel):
                try:
                    if self.spread:
                        self._spread(to_run)
                    else:
                        self._loop(to_run)
                finally:
                    if self.pool is not None:
                        self.pool.close()
        except KeyboardInterrupt:
            interrupted_code = EXIT_INTERRUPTED
        except Terminated:
            interrupted_code = EXIT_SIGTERM
        except BrokenPipeError:
            broken_pipe = True
        return self._finish(interrupted_code, broken_pipe)

    def _interrupted_line(self) -> str:
        if not self.plan.batch:  # one file: one line, no table
            job = next(iter(self.in_flight.values()), None)
            if job is None or job.dst == "-":
                return "interrupted"
            return f"interrupted; {job.dst} was not written (nothing unfinished is left)"
        finished = [src for src, status, _ in self.run.rows if status == "done"]
        return (
            f"interrupted: {len(finished)} file(s) completed"
            + (f" ({', '.join(finished)})" if finished else "")
            + "; unfinished output removed"
        )

    def _finish(self, interrupted_code: int, broken_pipe: bool) -> int:
        plan, reporter, run = self.plan, self.reporter, self.run
        if interrupted_code:
            for key, job in sorted(self.in_flight.items()):
                _remove_empty(self.made_dirs.pop(key, []))
                run.add((job.src, "interrupted", "unfinished output removed"), key)
        if interrupted_code:
            reporter.stop_bars()
            reporter.error(self._interrupted_line(), exit_code=interrupted_code)
        seconds = time.perf_counter() - run.t0
        reporter.json(
            "summary",
            done=run.done,
            skipped=run.skipped,
            failed=run.failed,
            ignored=len(plan.ignored),
            frames=run.frames,
            seconds=round(seconds, 3),
            interrupted=bool(interrupted_code),
            exit_code=(
                EXIT_BROKEN_PIPE if broken_pipe else interrupted_code or _exit_code(plan, run)
            ),
        )
        reporter.stop_bars()
        if broken_pipe:
            silence_stdout()
            return EXIT_BROKEN_PIPE
        if plan.batch:
            _summary_table(reporter, run, len(plan.ignored), seconds)
        if interrupted_code:
            return interrupted_code
        return _exit_code(plan, run)


def run_jobs(
    plan: Any, opts: Any, enc: Any, reporter: Reporter, scale: Scale | None = None, **load: Any
) -> int:
    """Run every job with one model per device (loaded once, when the first job needs it);
    the exit code."""
    return JobRunner(
        plan, opts, enc, reporter, load, scale or Scale(devices=[load.get("device", "auto")])
    )()


def _make_parents(path: Path) -> list[Path]:
    """Create the missing folders above ``path``; the ones created, deepest first."""
    from ..errors import VideoError

    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VideoError(f"{path}: cannot create the output folder ({e.strerror or e})") from e
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created for a file that failed, where they stayed empty."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty (another file's output): kept
            folder.rmdir()


def _clean_stale_parts(jobs: list[Any], reporter: Reporter) -> None:
    """Remove temporary outputs that earlier runs left behind when killed outright (kill -9, a
    power cut) in the folders this run writes to; files of live processes are left alone."""
    from ..media import remove_stale_parts

    folders = {os.path.dirname(os.path.abspath(j.dst)) for j in jobs if j.dst != "-"}
    for folder in sorted(folders):
        for path in remove_stale_parts(folder):
            reporter.warn(f"removed {path}, an unfinished output of an earlier run that was killed")


def _exit_code(plan: Any, run: _Run) -> int:
    if run.fatal:
        return run.fatal
    if not run.failed:
        return 0
    return EXIT_PARTIAL if plan.batch else (run.code or EXIT_ERROR)


def _summary_table(reporter: Reporter, run: _Run, ignored: int, seconds: float) -> None:
    if reporter.quiet or reporter.json_on_stderr:
        return
    from rich.table import Table

    if not run.rows:
        reporter.console.print(f"nothing to do; not media {ignored}", soft_wrap=True)
        return
    table = Table(title="adcvsr summary", show_lines=False)
    table.add_column("file")
    table.add_column("status")
    table.add_column("detail")
    styles = {"failed": "red", "skipped": "dim", "interrupted": "yellow"}
    for src, status, detail in run.ordered():
        table.add_row(src, status, detail, style=styles.get(status))
    reporter.console.print(table)
    reporter.console.print(
        f"done {run.done}, skipped {run.skipped}, failed {run.failed}, not media {ignored}; "
        f"{run.frames} frames in {seconds:.1f} s",
        soft_wrap=True,
    )


def _cut_context(cut: dict[str, Any]) -> str:
    """What a partial run decoded beyond its frames, so that they equal the full run's."""
    parts = []
    if cut.get("context_frames"):
        parts.append(f"{plural(cut['context_frames'], 'frame')} around it upscaled as context")
    if cut.get("scanned_frames"):
        parts.append(f"{plural(cut['scanned_frames'], 'frame')} decoded to find its scene cuts")
    return f"; {' and '.join(parts)}" if parts else ""


class _Spread:
    """The files of a spread run as the queue reports them (the queue's ``Callbacks``): bars,
    JSON lines, rows."""

    def __init__(self, runner: JobRunner, jobs: dict[int, Any]) -> None:
        self.runner, self.jobs = runner, jobs
        self.finished = 0
        self.started: set[int] = set()

    def start(self, key: int) -> None:
        job, reporter = self.jobs[key], self.runner.reporter
        self.started.add(key)
        self.runner.in_flight[key] = job
        reporter.open_file(key, job.src, key, len(self.jobs))
        if job.note:
            reporter.log(f"{job.src}: {job.note}")

    def event(self, key: int, e: dict[str, Any]) -> None:
        self.runner.reporter.file_event(key, e)

    def run_event(self, e: dict[str, Any]) -> None:
        self.runner.reporter.on_event(e)

    def done(self, key: int, report: Any, workers: list[str], seconds: float) -> None:
        self.runner._done(self.jobs[key], report, seconds, key, workers)
        self._ended(key)

    def failed(self, key: int, error: BaseException, workers: list[str]) -> None:
        from ..errors import Interrupted

        if isinstance(error, Interrupted):
            raise interruption() from None
        if not isinstance(error, Exception):
            raise error
        self.runner._error(self.jobs[key], error, key)
        self._ended(key)

    def _ended(self, key: int) -> None:
        runner = self.runner
        runner.in_flight.pop(key, None)
        runner.reporter.close_file(key)
        runner.reporter.advance_batch()
        self.finished += 1
        run = runner.run
        runner.reporter.json(
            "run_progress",
            files_finished=self.finished,
            files_total=len(self.jobs),
            done=run.done,
            failed=run.failed,
            frames=run.frames,
            workers_busy=len(runner.in_flight),
        )
