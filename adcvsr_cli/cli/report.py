"""Library events -> rich progress bars, log lines and JSON lines (all on standard error)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import ProgressColumn
from rich.text import Text

from ..errors import UsageError
from . import logs


class Reporter:
    """Turns library events into rich progress bars, log lines and JSON lines (all on stderr)."""

    def __init__(
        self,
        quiet: bool = False,
        verbose: int = 0,
        json_out: bool = False,
        json_file: Path | None = None,
        *,
        hub_logs: bool = False,
        libav_logs: bool = False,
    ) -> None:
        """``hub_logs``/``libav_logs``: while entered, show huggingface_hub's log records and
        libav's own log lines as this command's messages (for commands that download, decode)."""
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.verbose = verbose
        self._json_stream: Any = None
        if json_file is not None:
            try:
                self._json_stream = open(json_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            except OSError as e:
                raise UsageError(f"--json-file {json_file}: cannot open ({e.strerror or e})") from e
        elif json_out:
            self._json_stream = sys.stderr
        self.bars = not quiet and self._json_stream is not sys.stderr and sys.stderr.isatty()
        level = logs.level_for(quiet=quiet, verbose=verbose, silent=self._json_stream is sys.stderr)
        self.logger = logs.setup(self.console, level)
        self.progress: Any = None
        self._dl_task: Any = None
        self._last_dl_json = 0.0
        self.batch_task: Any = None
        self._view = _FileView()  # the file under way (start_file)
        self._views: dict[Any, _FileView] = {}  # files in flight together (open_file)
        self.fallbacks: list[str] = []  # --compile / graphs that stopped: said again at the end
        self._libraries = ExitStack()  # while the command runs: the libraries' log records
        self._routes = (hub_logs, libav_logs)
        # Library log records arrive from other threads (libav's reader, download workers):
        # one JSON line and one message at a time.
        self._lock = threading.RLock()

    @property
    def file(self) -> str:
        """The input of the file under way (named in its JSON lines)."""
        return self._view.src

    @file.setter
    def file(self, src: str) -> None:
        self._view.src = src

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Reporter:
        try:
            self._enter()
        except BaseException:
            self._libraries.close()
            raise
        return self

    def _enter(self) -> None:
        hub_logs, libav_logs = self._routes
        if hub_logs:
            self._libraries.enter_context(logs.library_logs(self.library_record))
        if libav_logs:
            from ..media.avlog import libav_messages  # imports av: only commands that decode

            self._libraries.enter_context(libav_messages(self.warn))  # libav's own warnings
        if self.bars:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                SpinnerColumn(),  # moves while the first chunk runs and no frame is done yet
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]}"),
                TimeElapsedColumn(),
                _EtaColumn(),
                console=self.console,
                transient=False,
                speed_estimate_period=60.0,  # the rate over the last minute, not since the start
            )
            self.progress.start()

    def __exit__(self, *exc: Any) -> None:
        self._libraries.close()
        self.stop_bars()
        for message in dict.fromkeys(self.fallbacks):  # the run's report ends with what fell back
            self.logger.warning(f"this run: {message}")
        if self._json_stream is not None and self._json_stream is not sys.stderr:
            self._json_stream.close()

    def stop_bars(self) -> None:
        """End the live display (before a summary is printed under it)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    @property
    def json_on_stderr(self) -> bool:
        return self._json_stream is sys.stderr

    # -- output ---------------------------------------------------------------------------------
    def json(self, event: str, **fields: Any) -> None:
        if self._json_stream is None:
            return
        obj = {"event": event, "time": round(time.time(), 3), **fields}
        with self._lock:
            self._json_stream.write(json.dumps(obj, default=str) + "\n")
            self._json_stream.flush()

    def log(self, message: str, *, level: int = 0) -> None:
        """A notice (level 0), or detail shown with -v (1) or -vv (2)."""
        self.logger.log({0: logging.INFO, 1: logs.VERBOSE}.get(level, logging.DEBUG), message)

    def error(self, message: str, *, event: bool = True, exit_code: int | None = None) -> None:
        """An error line on stderr (or, with --json, an ``error`` JSON line). ``event=False``:
        no JSON line (the caller wrote a more specific one, such as ``file_failed``)."""
        if event:
            fields = {} if exit_code is None else {"exit_code": exit_code}
            self.json("error", message=message, **fields)
        self.logger.error(message)

    def warn(self, message: str, *, file: str | None = None) -> None:
        with self._lock:
            self.json("warning", file=self.file if file is None else file, message=message)
            self.logger.warning(message)

    def library_record(self, record: logging.LogRecord) -> None:
        """A record of a library's logger (see ``logs.library_logs``), shown as ours and named
        after the library: its warnings and errors as warnings (a JSON ``warning`` line with
        --json); what its logger's level lets through below that with -v (info) or -vv."""
        message = f"{record.name.split('.')[0]}: {record.getMessage()}"
        if record.levelno >= logging.WARNING:
            self.warn(message)
        else:
            self.log(message, level=1 if record.levelno >= logging.INFO else 2)

    # -- batch ----------------------------------------------------------------------------------
    def start_batch(self, n: int) -> None:
        if self.progress is not None and n > 1:
            self.batch_task = self.progress.add_task("files", total=n, fps="")

    def advance_batch(self) -> None:
        if self.progress is not None and self.batch_task is not None:
            self.progress.advance(self.batch_task)

    def start_file(self, src: str, dst: str, index: int = 1, files: int = 1) -> None:
        """A new file begins (``index`` of ``files`` that will run); its bar replaces the last."""
        if self.progress is not None and self._view.task is not None:
            self.progress.remove_task(self._view.task)
        self._view = self._new_view(src, index, files)

    def open_file(self, key: Any, src: str, index: int = 1, files: int = 1) -> None:
        """A file begins while others may still run (workers sharing a batch): its own bar and
        progress lines, fed by :meth:`file_event` until :meth:`close_file`."""
        self._views[key] = view = self._new_view(src, index, files)
        view.shared = True

    def file_event(self, key: Any, e: dict[str, Any]) -> None:
        """A library event of the file opened as ``key``."""
        self._event(self._views.get(key, self._view), e)

    def close_file(self, key: Any) -> None:
        view = self._views.pop(key, None)
        if view is not None and self.progress is not None and view.task is not None:
            self.progress.remove_task(view.task)

    def _new_view(self, src: str, index: int, files: int) -> _FileView:
        view = _FileView(src, index, files)
        if self.progress is not None:
            view.task = self.progress.add_task(
                Path(src).name if src != "-" else "stdin", total=None, fps=""
            )
        return view

    def _download(self, e: dict[str, Any]) -> None:
        """Weights downloads: a bar per file on a terminal; start/done lines otherwise."""
        stage, name = e.get("stage"), str(e.get("file", ""))
        if stage == "progress":
            if self.progress is not None and self._dl_task is not None:
                self.progress.update(
                    self._dl_task, completed=e.get("bytes", 0), total=e.get("total")
                )
            now = time.perf_counter()
            if now - self._last_dl_json >= 1.0:
                self._last_dl_json = now
                self.json("download", **{k: v for k, v in e.items() if k != "type"})
            return
        self.json("download", **{k: v for k, v in e.items() if k != "type"})
        if stage == "start":
            total = e.get("total")
            size = f" ({total / 2**20:.0f} MiB)" if total else ""
            self.log(f"downloading {name}{size} from the Hugging Face Hub", level=0)
            if self.progress is not None:
                self._dl_task = self.progress.add_task(
                    f"download {name.rsplit('/', 1)[-1]}", total=total, fps=""
                )
        elif stage == "done":
            if self.progress is not None and self._dl_task is not None:
                self.progress.remove_task(self._dl_task)
                self._dl_task = None
            self.log(f"downloaded {name}", level=1)

    def on_event(self, e: dict[str, Any]) -> None:
        """The ``on_event`` callback handed to the library."""
        self._event(self._view, e)

    def _start(self, fv: _FileView, e: dict[str, Any]) -> None:
        """The file's size and frame count are known."""
        self.json(
            "start",
            file=fv.src,
            index=fv.index,
            files=fv.files,
            output=e.get("output"),
            frames=e.get("frames"),
            width=e.get("width"),
            height=e.get("height"),
            out_width=e.get("out_width"),
            out_height=e.get("out_height"),
        )
        if self.progress is not None and fv.task is not None:
            self.progress.update(fv.task, total=e.get("frames"))
        frames = plural(e["frames"], "frame") if e.get("frames") else "frame count unknown"
        self.log(
            f"{fv.src}: {e.get('width')}x{e.get('height')} -> {e.get('out_width')}x{e.get('out_height')}, "
            + frames,
            level=1,
        )

    def _progress(self, fv: _FileView, e: dict[str, Any]) -> None:
        """Frames done: the bar always, a JSON line at most every 0.5 s (and the last one)."""
        done, total = e.get("frames_done", 0), e.get("frames_total")
        dt = time.perf_counter() - fv.t0
        fps = done / dt if dt > 0 else 0.0
        if self.progress is not None and fv.task is not None:
            self.progress.update(fv.task, completed=done, total=total, fps=f"{fps:.2f} fps")
        now = time.perf_counter()
        final = total is not None and done >= total
        if done != fv.last_done and (now - fv.last_json >= 0.5 or final):
            fv.last_json, fv.last_done = now, done
            self.json(
                "progress",
                file=fv.src,
                frames_done=done,
                frames_total=total,
                fps=round(fps, 3),
                eta_seconds=round((total - done) / fps, 1) if total and fps > 0 else None,
            )

    def _event(self, fv: _FileView, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "start":
            self._start(fv, e)
        elif kind == "progress":
            self._progress(fv, e)
        elif kind == "warning":
            self.warn(str(e.get("message")), file=fv.src)
            if e.get("fallback"):
                self.fallbacks.append(str(e.get("message")))
        elif kind == "plan":
            self.json("plan", file=fv.src, **{k: v for k, v in e.items() if k != "type"})
            self.log(
                f"{fv.src + ': ' if fv.shared else ''}plan: device {e.get('device')}, {e.get('precision')}, tile {e.get('tile') or 'off'}, "
                f"chunk {e.get('chunk')} (overlap {e.get('chunk_overlap')})",
                level=1,
            )
        elif kind == "download":
            self._download(e)
        elif kind in ("verify", "cache", "convert"):
            stage = e.get("stage") or e.get("status") or ""
            if stage != "progress":  # hashing progress is frequent and short: JSON and bars only
                self.json(kind, **{k: v for k, v in e.items() if k != "type"})
                what = e.get("file") or e.get("model") or ""
                self.log(
                    f"weights: {kind} {stage} {what}".rstrip(),
                    level=0 if stage in ("mismatch", "corrupt") else 1,
                )
        elif kind == "notice":
            self.json("notice", **{k: v for k, v in e.items() if k != "type"})
            self.log(str(e.get("message")), level=0)
        elif kind in ("segments", "segment"):
            fields = {k: v for k, v in e.items() if k != "type"}
            self.json(kind, file=fv.src, **fields)
            if kind == "segments":
                self.log(f"{fv.src}: {e.get('total')} segments, {e.get('todo')} to run", level=1)
            else:
                self.log(
                    f"segment {e.get('index')}: frames {e.get('start')}-{e.get('end')} "
                    f"on {e.get('device')} in {e.get('seconds')} s",
                    level=2,
                )
        elif kind == "done":
            pass
        else:
            self.log(f"{kind}: {e}", level=2)


@dataclass
class _FileView:
    """One file's bar and the state of its progress lines."""

    src: str = ""
    index: int = 1
    files: int = 1
    task: Any = None
    t0: float = field(default_factory=time.perf_counter)
    last_json: float = 0.0
    last_done: int = -1
    shared: bool = False  # in flight with others: its log lines name it


def plural(n: int, word: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _EtaColumn(ProgressColumn):
    """``ETA m:ss`` once the rate means something (ten seconds of work with frames done, the
    rate taken over a window); nothing before: a first estimate from one chunk jumps about."""

    MIN_SECONDS = 10.0

    def render(self, task: Any) -> Text:
        remaining = task.time_remaining
        if remaining is None or not task.completed or (task.elapsed or 0.0) < self.MIN_SECONDS:
            return Text("")
        minutes, seconds = divmod(int(remaining), 60)
        hours, minutes = divmod(minutes, 60)
        clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        return Text(f"ETA {clock}", style="progress.remaining")
