"""libav's own log lines (warning and above) shown as the tool's messages, for the command line.

PyAV's Python log hook (``av.logging.set_level``) is not used: it takes the GIL inside
whatever thread libav logs from, and PyAV 18 holds the GIL through ``avcodec_open2``,
``avcodec_free_context`` and ``av_write_trailer``, calls that wait for encoder and decoder
worker threads. A worker logging a warning then waits for the GIL its waiter holds: a
deadlock (PyAV issues #751, #1133; #2394 reports a crash with logging during teardown).

Instead libav keeps its own C callback, which never touches Python, at level WARNING. It
writes to the C library's ``stderr`` stream, which :func:`libav_messages` points at a pipe
while it is active (glibc documents ``stderr`` as an assignable variable); file descriptor 2
and ``sys.stderr`` are left alone. A Python thread reads the pipe and turns each
``[name @ 0x...] message`` line into a warning of the tool (a callback); any other line (an
encoder printing with ``fprintf(stderr, ...)``) goes on, unchanged, to the real standard
error. The pipe's write end never blocks: if the reader ever fell 1 MiB behind (a flood of
warnings during one GIL-holding call), the extra lines are dropped instead of stalling a
libav thread, and a warning at the end says so. Lines of one kind (a damaged stream's
per-frame complaints) are shown a few times, then counted. Where the C library's ``stderr`` cannot be found (not glibc), libav's log
stays off, as PyAV leaves it (musl's ``stderr`` cannot be reassigned).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator

# "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c1f0] Found duplicated MOOV Atom. Skipped it": one or
# more context prefixes (a filter inside a graph has two), then the message.
_LINE = re.compile(rb"^((?:\[[^\]\n]+? @ 0x[0-9a-fA-F]+\] )+)(.*)$")
_NAME = re.compile(rb"\[([^\]\n]+?) @ 0x[0-9a-fA-F]+\]")
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_IOLBF = 1  # setvbuf: line buffered, so that a line reaches the pipe in one write
_AV_LOG_SKIP_REPEATED = 1  # libav folds identical consecutive lines ("Last message repeated")
_SHOWN_ALIKE = 3  # lines of one kind (same source, same words, any numbers) shown in full
_DIGITS = re.compile(r"\d+")
_JOIN_S = 5.0


def libav_line(line: bytes) -> str | None:
    """The tool's message for one libav log line (``"libav (mov): ..."``), or ``None`` when
    the line is not libav's."""
    m = _LINE.match(line.rstrip(b"\r\n"))
    if m is None:
        return None
    names = b" / ".join(_NAME.findall(m.group(1))).decode("utf-8", "backslashreplace")
    text = m.group(2).decode("utf-8", "backslashreplace").strip()
    return f"libav ({names}): {text}" if text else None


class _Fold:
    """Lines of one kind (a damaged stream logs "concealing 12 errors in P frame" per frame):
    the first few shown, the rest counted and named once at the end."""

    def __init__(self) -> None:
        self.seen: dict[str, list] = {}  # kind -> [lines, lines shown, first message]

    def admit(self, message: str, times: int = 1) -> bool:
        """Count ``times`` lines of ``message``'s kind; whether to show this one."""
        entry = self.seen.setdefault(_DIGITS.sub("#", message), [0, 0, message])
        entry[0] += times
        show = times == 1 and entry[1] < _SHOWN_ALIKE
        entry[1] += show
        return show

    def summary(self) -> list[str]:
        return [
            f"{first} (and {count - shown} more line(s) like it, not shown)"
            for count, shown, first in self.seen.values()
            if count > shown
        ]


class _Reader(threading.Thread):
    """Reads the pipe behind the C ``stderr`` until its write end closes; routes each libav
    line to ``warn`` and passes any other line on to the real standard error. A failing
    ``warn`` (its stream closed or broken) never stops it: the line goes on unchanged."""

    def __init__(self, fd: int, real_fd: int, warn: Callable[[str], None], cerr: _CStderr):
        super().__init__(name="adcvsr-libav-log", daemon=True)
        self.fd, self.real_fd, self.warn, self.cerr = fd, real_fd, warn, cerr
        self.routing = True  # False once the block has ended: lines go on unchanged
        self.fold = _Fold()
        self.last: str | None = None  # the last libav message, which libav may say repeated
        self.overflows = 0  # times the pipe was full and the C library dropped what it wrote

    def run(self) -> None:
        try:
            pending = b""
            while True:
                try:
                    chunk = os.read(self.fd, 65536)
                except InterruptedError:
                    continue
                self.overflows += self.cerr.take_error()
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._route(line + b"\n")
            if pending:
                self._route(pending)
        finally:
            os.close(self.fd)

    def _route(self, line: bytes) -> None:
        start = _START.search(line, 1) if self.overflows else None
        if start is not None and not _LINE.match(line):
            # after a drop the C library may send the kept tail of a cut line glued to the
            # next one: the fragment is part of what was lost, the rest is a whole line
            line = line[start.start() :]
        repeated = _REPEATED.match(line)
        if repeated is not None and self.last is not None and self.routing:
            # libav's AV_LOG_SKIP_REPEATED summary of the line before: counted with it
            self.fold.admit(self.last, int(repeated.group(1)))
            return
        message = libav_line(line)
        if message is not None and self.routing:
            self.last = message
            if not self.fold.admit(message):
                return
            if _call(self.warn, message):
                return
        _write(self.real_fd, line)


_REPEATED = re.compile(rb"^\s*Last message repeated (\d+) times?\s*$")
_START = re.compile(rb"\[[^\]\n]+? @ 0x[0-9a-fA-F]+\] ")


def _call(warn: Callable[[str], None], message: str) -> bool:
    """``warn(message)``; False when its stream failed (a closed or broken pipe)."""
    try:
        warn(message)
    except (OSError, ValueError):  # ValueError: I/O on a closed file
        return False
    return True


def _write(fd: int, line: bytes) -> None:
    with contextlib.suppress(OSError):  # the real stderr is gone: nowhere to say it
        os.write(fd, line)


_quiet_lock = threading.Lock()
_quiet_depth = 0
_routing = False  # libav_messages is active: libav logs at WARNING


@contextlib.contextmanager
def libav_quiet() -> Iterator[None]:
    """libav's log off while the layer tries what it expects may fail (a stream in a scratch
    container in memory): those complaints are the layer's answer, not the user's news."""
    global _quiet_depth
    if not _routing:
        yield
        return
    import av.logging

    with _quiet_lock:
        _quiet_depth += 1
        av.logging.set_libav_level(av.logging.PANIC - 8)  # AV_LOG_QUIET
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _routing:
                av.logging.set_libav_level(av.logging.WARNING)


class _CStderr:
    """The C library's ``stderr`` stream variable, pointed at a pipe and back."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None)
        # glibc only: musl exports a read-only ``FILE *const stderr`` (writing it segfaults)
        libc.gnu_get_libc_version  # noqa: B018  (AttributeError where the C library is not glibc)
        self.var = ctypes.c_void_p.in_dll(libc, "stderr")  # ValueError where not exported
        self.fdopen = libc.fdopen
        self.fdopen.restype = ctypes.c_void_p
        self.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
        self.setvbuf = libc.setvbuf
        self.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
        self.fflush = libc.fflush
        self.fflush.argtypes = [ctypes.c_void_p]
        self.ferror, self.clearerr = libc.ferror, libc.clearerr
        self.ferror.argtypes = self.clearerr.argtypes = [ctypes.c_void_p]
        self.saved: int | None = None
        self.stream: int | None = None  # the pipe's stream; kept after restore (never closed)
        self.fd = -1

    def point_at(self, fd: int) -> None:
        stream = self.fdopen(fd, b"w")
        if not stream:
            raise OSError(f"fdopen({fd}) failed")
        self.setvbuf(stream, None, _IOLBF, 0)
        self.saved, self.stream, self.fd = self.var.value, stream, fd
        self.var.value = stream

    def take_error(self) -> int:
        """1 if a write to the pipe failed since the last call (it was full: the C library
        dropped that text), else 0. ``ferror`` and ``clearerr`` lock the stream: any thread."""
        if self.stream is None or not self.ferror(self.stream):
            return 0
        self.clearerr(self.stream)
        return 1

    def restore(self, real_fd: int) -> None:
        """``stderr`` back; the pipe's stream is never closed: a library may have kept it
        (SVT-AV1 keeps the ``stderr`` it saw at start, and closes it at exit if it is not the
        current one: a double free if we had closed it). It is flushed and its descriptor
        becomes a copy of the real standard error, which also closes the pipe's write end."""
        if self.saved is not None and self.var.value == self.stream:
            self.var.value = self.saved
            self.fflush(self.stream)
            os.dup2(real_fd, self.fd, inheritable=False)


def _skip_repeated() -> None:
    """libav's own folding of identical consecutive lines (``AV_LOG_SKIP_REPEATED``), set in
    the libavutil PyAV loaded (found by its path: PyAV loads it privately)."""
    import av  # noqa: F401  (loads libavutil)

    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libavutil" in line}
    for path in sorted(paths):
        with contextlib.suppress(OSError, AttributeError):
            avutil = ctypes.CDLL(path)
            avutil.av_log_set_flags(avutil.av_log_get_flags() | _AV_LOG_SKIP_REPEATED)


@contextlib.contextmanager
def libav_messages(warn: Callable[[str], None]) -> Iterator[None]:
    """While active, libav's warnings and errors go to ``warn`` as the tool's warnings (see
    the module docstring), called from a reader thread; repeats are folded and lines lost to
    a full pipe are counted, both said in warnings at the end. For a command line's process:
    it changes the C library's ``stderr``, and always restores it."""
    import av.logging

    try:
        cerr = _CStderr()
        real_fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (OSError, ValueError, AttributeError):  # not glibc, or no standard error at all
        yield
        return
    read_fd, write_fd = os.pipe()
    capacity = 1 << 16  # Linux's default, where a bigger pipe is refused
    with contextlib.suppress(OSError):  # Linux only
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        capacity = fcntl.fcntl(write_fd, _F_GETPIPE_SZ)
    fcntl.fcntl(write_fd, fcntl.F_SETFL, fcntl.fcntl(write_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        cerr.point_at(write_fd)
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    global _routing
    reader = _Reader(read_fd, real_fd, warn, cerr)
    try:
        reader.start()
        with contextlib.suppress(OSError):
            _skip_repeated()
        av.logging.restore_default_callback()
        av.logging.set_libav_level(av.logging.WARNING)
        _routing = True
        yield
    finally:
        _routing = False
        try:
            av.logging.set_level(None)  # PyAV's default again: libav's log off
        finally:
            cerr.restore(real_fd)  # the reader reads to the end of the pipe, then stops
            _finish(reader, read_fd, capacity, warn)


def _finish(reader: _Reader, read_fd: int, capacity: int, warn: Callable[[str], None]) -> None:
    """Wait for the reader, then say what was folded, lost, or left running."""
    if reader.ident is None:  # it never started: nothing reads the pipe
        os.close(read_fd)
        return
    reader.join(timeout=_JOIN_S)
    reader.routing = False  # a reader still running passes its lines on unchanged from now
    notes = [] if reader.is_alive() else reader.fold.summary()
    overflows = reader.overflows + reader.cerr.take_error()
    if overflows:
        notes.append(
            f"libav's log fell more than {capacity // 1024} KiB behind {overflows} time(s): the "
            "libav and encoder messages written meanwhile were lost"
        )
    if reader.is_alive():
        notes.append(
            f"libav's log reader did not stop within {_JOIN_S:g} s; its later lines go to "
            "standard error unchanged"
        )
    for note in notes:
        if not _call(warn, note):
            _write(reader.real_fd, f"warning: {note}\n".encode())
