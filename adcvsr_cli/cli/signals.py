"""SIGINT/SIGTERM and a closed standard output.

Python runs its signal handlers in the main thread between bytecodes only, and on a CPU one
network layer can take minutes. So :func:`install` (called by ``main()`` before anything starts
a thread: rich's refresh thread, torch's pools) blocks SIGINT and SIGTERM in the main thread,
which every later thread inherits, and starts one watcher thread that takes them with
``sigtimedwait``. On a signal the watcher sets the cancel events of the runs under way (the
library stops at its next frame and raises :class:`~adcvsr_cli.errors.Interrupted`) and raises
the usual exception in the main thread (``KeyboardInterrupt`` for SIGINT, :class:`Terminated`
for SIGTERM), which cleans up as soon as the native call returns. If that has not happened
within ``GRACE`` seconds, or on a second signal, the watcher removes the unfinished temporary
outputs itself and exits at once with 130 (SIGINT) or 143 (SIGTERM).
"""

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
GRACE = 2.0  # seconds the main thread has to clean up after a signal


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (as ``KeyboardInterrupt`` is on SIGINT)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class SignalWatch:
    """The watcher thread of :mod:`this module <adcvsr_cli.cli.signals>`; one per process."""

    def __init__(self, signals: set[int], grace: float = GRACE) -> None:
        self.signals = set(signals)
        self.grace = grace
        self.cancels: set[threading.Event] = set()
        self.received = 0  # the first signal taken
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_mask: set[int] = set()
        self._old_term: Any = None

    def start(self) -> None:
        """Block the signals in the calling (main) thread and start watching them."""
        self._old_mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, self.signals))
        if signal.SIGTERM in self.signals:
            # interrupt_main(SIGTERM) calls the Python-level handler: there must be one.
            self._old_term = signal.signal(signal.SIGTERM, _raise_terminated)
        self._thread = threading.Thread(target=self._watch, name="adcvsr-signals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; signals that arrived meanwhile reach the restored handlers."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._thread = None
        if signal.SIGTERM in self.signals:
            signal.signal(signal.SIGTERM, self._old_term)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)

    def _watch(self) -> None:
        import _thread

        deadline: float | None = None
        first = 0
        while not self._stop.is_set():
            info = signal.sigtimedwait(self.signals, 0.2)
            now = time.monotonic()
            if info is None:
                if deadline is not None and now >= deadline:
                    self._hard_exit(first, f"still busy {self.grace:g} s after the signal")
                continue
            signo = self._taken(info.si_signo)
            if deadline is not None:
                self._hard_exit(signo, "interrupted again, exiting at once")
            first = self.received = signo
            deadline = now + self.grace
            # The main thread's exception first: it then wins over the library noticing
            # ``cancel`` (which would raise Interrupted, not saying which signal it was).
            _thread.interrupt_main(signal.Signals(first))
            for cancel in list(self.cancels):
                cancel.set()

    def _taken(self, number: int) -> int:
        """The signal taken: ``sigtimedwait`` returns only when it took one of ours, but Python
        3.13 was seen to report a garbage number for it; then it counts as SIGTERM (or the one
        signal watched)."""
        if number in self.signals:
            return number
        return signal.SIGTERM if signal.SIGTERM in self.signals else min(self.signals)

    def _hard_exit(self, signo: int, why: str) -> None:
        from ..media import remove_live_temps

        removed = remove_live_temps()
        note = f"; removed {len(removed)} unfinished output(s)" if removed else ""
        os.write(2, f"\nadcvsr: {why}{note}\n".encode())
        os._exit(EXIT_SIGTERM if signo == signal.SIGTERM else EXIT_INTERRUPTED)


_watch: SignalWatch | None = None


def _watchable() -> set[int]:
    if (
        not hasattr(signal, "sigtimedwait")
        or threading.current_thread() is not threading.main_thread()
    ):
        return set()
    sigs: set[int] = {signal.SIGTERM}
    # Not SIGINT when it is ignored (a shell starts background jobs so): it stays ignored.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        sigs.add(signal.SIGINT)
    return sigs


def install() -> None:
    """Start the process's signal watcher; call before any other thread starts."""
    global _watch
    sigs = _watchable()
    if _watch is None and sigs:
        _watch = SignalWatch(sigs)
        _watch.start()
        # A forked child (multiprocessing) starts with the signals unblocked again.
        os.register_at_fork(after_in_child=_unblock_in_child)


def _unblock_in_child() -> None:
    global _watch
    if _watch is not None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _watch.signals)
        _watch = None


def interruption(default: type[BaseException] = KeyboardInterrupt) -> BaseException:
    """The exception that stands for the signal taken: :class:`Terminated` after SIGTERM,
    else ``KeyboardInterrupt`` (for a library call that raised Interrupted)."""
    if _watch is not None and _watch.received == signal.SIGTERM:
        return Terminated()
    return default()


@contextlib.contextmanager
def watched_signals(cancel: threading.Event) -> Iterator[None]:
    """Within the block a signal sets ``cancel`` too. Where no watcher runs yet (the CLI run in
    process, as tests do) one is started for the block and stopped after it."""
    global _watch
    own = None
    if _watch is None and _watchable():
        own = _watch = SignalWatch(_watchable())
        own.start()
    if _watch is not None:
        _watch.cancels.add(cancel)
    try:
        yield
    finally:
        if _watch is not None:
            _watch.cancels.discard(cancel)
        if own is not None:
            own.stop()
            _watch = None


@contextlib.contextmanager
def unblocked_for_children() -> Iterator[None]:
    """Spawn child processes inside this block: they inherit the signal mask, and must not
    start with SIGINT/SIGTERM blocked (a signal may then reach the calling thread directly,
    which Python handles at its next bytecode)."""
    sigs = _watch.signals if _watch is not None else set()
    old = signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs) if sigs else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def silence_stdout() -> None:
    """The reader went away: point fd 1 at /dev/null so that the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
