"""SIGINT/SIGTERM while a run is under way, and a closed standard output."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..errors import EXIT_INTERRUPTED

EXIT_SIGTERM = 143
EXIT_BROKEN_PIPE = 141


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler."""


class SignalWatch:
    """SIGINT/SIGTERM that work even while the main thread is inside one long native call.

    Python runs its signal handlers between bytecodes only, and on a CPU one network layer can
    take minutes. So the signals are blocked in every thread this run starts, and a watcher thread
    takes them with ``sigtimedwait``: it sets ``cancel`` and raises the usual handler in the main
    thread (``interrupt_main``), which cleans up as soon as the native call returns. If that has
    not happened within ``grace`` seconds, or on a second signal, the watcher removes the
    unfinished temporary outputs itself and exits with 130 (SIGINT) or 143 (SIGTERM).
    """

    def __init__(self, signals: set[int], cancel: threading.Event, grace: float = 2.0) -> None:
        self.signals = set(signals)
        self.cancel = cancel
        self.grace = grace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_mask: set[int] | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if not self.signals or not hasattr(signal, "sigtimedwait"):
            return
        self._old_mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, self.signals))
        self._thread = threading.Thread(target=self._watch, name="adcvsr-signals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._thread = None
        # Signals that arrived meanwhile are delivered to the normal handlers once unblocked.
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask or set())

    def _watch(self) -> None:
        import _thread

        deadline: float | None = None
        first = 0
        while not self._stop.is_set():
            info = signal.sigtimedwait(self.signals, 0.2)
            now = time.monotonic()
            if info is None:
                if deadline is not None and now >= deadline:
                    self._hard_exit(first)
                continue
            if deadline is not None:  # a second signal: stop now
                self._hard_exit(info.si_signo)
            first = info.si_signo
            self.cancel.set()
            deadline = now + self.grace
            _thread.interrupt_main(signal.Signals(first))

    def _hard_exit(self, signo: int) -> None:
        from ..media import remove_live_temps

        removed = remove_live_temps()
        note = f"; removed {len(removed)} unfinished output(s)" if removed else ""
        os.write(2, f"adcvsr: interrupted{note}\n".encode())
        os._exit(EXIT_SIGTERM if signo == signal.SIGTERM else EXIT_INTERRUPTED)


def silence_stdout() -> None:
    """The reader went away: point fd 1 at /dev/null so that the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@contextlib.contextmanager
def watched_signals(cancel: threading.Event) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt`` in
    the main thread (after setting ``cancel``), also during long native calls (:class:`SignalWatch`).
    A second Ctrl-C while the first one is cleaning up exits at once."""
    prev_term = signal.getsignal(signal.SIGTERM)
    prev_int = signal.getsignal(signal.SIGINT)

    def on_term(signum: int, frame: Any) -> None:
        cancel.set()
        raise Terminated()

    def on_int(signum: int, frame: Any) -> None:
        # A second Ctrl-C while the first one is cleaning up: stop now (the signal watcher, when
        # it runs, handles second signals itself, with cleanup, and sets ``cancel`` first).
        if cancel.is_set() and not watch.active:
            os.write(2, b"adcvsr: interrupted again, exiting at once\n")
            os._exit(EXIT_INTERRUPTED)
        cancel.set()
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    watched: set[int] = set()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
        watched.add(signal.SIGTERM)
        if prev_int is signal.default_int_handler:  # not when SIGINT is ignored (started with &)
            signal.signal(signal.SIGINT, on_int)
            watched.add(signal.SIGINT)
    watch = SignalWatch(watched, cancel)
    watch.start()
    try:
        yield
    finally:
        if in_main:
            watch.stop()
            signal.signal(signal.SIGTERM, prev_term)
            signal.signal(signal.SIGINT, prev_int)
