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
libav thread. Where the C library's ``stderr`` cannot be found (not glibc), libav's log
stays off, as PyAV leaves it.
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
_IOLBF = 1  # setvbuf: line buffered, so that a line reaches the pipe in one write


def libav_line(line: bytes) -> str | None:
    """The tool's message for one libav log line (``"libav (mov): ..."``), or ``None`` when
    the line is not libav's."""
    m = _LINE.match(line.rstrip(b"\r\n"))
    if m is None:
        return None
    names = b" / ".join(_NAME.findall(m.group(1))).decode("utf-8", "backslashreplace")
    text = m.group(2).decode("utf-8", "backslashreplace").strip()
    return f"libav ({names}): {text}" if text else None


class _Reader(threading.Thread):
    """Reads the pipe behind fd 2 until its write end closes; routes or passes on each line."""

    def __init__(self, fd: int, real_fd: int, warn: Callable[[str], None]):
        super().__init__(name="adcvsr-libav-log", daemon=True)
        self.fd, self.real_fd, self.warn = fd, real_fd, warn

    def run(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._route(line + b"\n")
        if pending:
            self._route(pending)
        os.close(self.fd)

    def _route(self, line: bytes) -> None:
        message = libav_line(line)
        if message is not None:
            self.warn(message)
            return
        with contextlib.suppress(OSError):  # the real stderr is gone: nowhere to say it
            os.write(self.real_fd, line)


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
        self.var = ctypes.c_void_p.in_dll(libc, "stderr")  # ValueError where not exported
        self.fdopen = libc.fdopen
        self.fdopen.restype = ctypes.c_void_p
        self.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
        self.setvbuf = libc.setvbuf
        self.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
        self.fflush = libc.fflush
        self.fflush.argtypes = [ctypes.c_void_p]
        self.saved: int | None = None
        self.stream: int | None = None
        self.fd = -1

    def point_at(self, fd: int) -> None:
        stream = self.fdopen(fd, b"w")
        if not stream:
            raise OSError(f"fdopen({fd}) failed")
        self.setvbuf(stream, None, _IOLBF, 0)
        self.saved, self.stream, self.fd = self.var.value, stream, fd
        self.var.value = stream

    def restore(self, real_fd: int) -> None:
        """``stderr`` back; the pipe's stream is never closed: a library may have kept it
        (SVT-AV1 keeps the ``stderr`` it saw at start, and closes it at exit if it is not the
        current one: a double free if we had closed it). It is flushed and its descriptor
        becomes a copy of the real standard error, which also closes the pipe's write end."""
        if self.stream is not None:
            self.var.value = self.saved
            self.fflush(self.stream)
            os.dup2(real_fd, self.fd, inheritable=False)
            self.stream = None


@contextlib.contextmanager
def libav_messages(warn: Callable[[str], None]) -> Iterator[None]:
    """While active, libav's warnings and errors go to ``warn`` as the tool's warnings (see
    the module docstring), called from a reader thread. For a command line's process: it
    changes the C library's ``stderr``."""
    import av.logging

    try:
        cerr = _CStderr()
        real_fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (OSError, ValueError, AttributeError):  # not glibc, or no standard error at all
        yield
        return
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # Linux only; the default 64 KiB also works
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    fcntl.fcntl(write_fd, fcntl.F_SETFL, fcntl.fcntl(write_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        cerr.point_at(write_fd)
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    global _routing
    reader = _Reader(read_fd, real_fd, warn)
    reader.start()
    av.logging.restore_default_callback()
    av.logging.set_libav_level(av.logging.WARNING)
    _routing = True
    try:
        yield
    finally:
        _routing = False
        av.logging.set_level(None)  # PyAV's default again: libav's log off
        cerr.restore(real_fd)  # the reader reads to the end of the pipe, then stops
        reader.join(timeout=5.0)
