"""The command line's messages: the ``adcvsr`` logger, drawn on standard error by rich's handler.

Levels: errors (``adcvsr: error: ...``, red) always; warnings (``warning: ...``, yellow) and
notices (INFO) unless ``-q``; ``-v`` adds VERBOSE lines, ``-vv`` DEBUG ones. With ``--json`` on
standard error nothing but JSON lines goes there, so the handler shows nothing. Lines are never
wrapped (a path in a message stays copyable), and progress bars drawn on the same console stay
below them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

NAME = "adcvsr"
VERBOSE = 15  # between DEBUG and INFO: what -v adds
# Whose log records a command shows as its own: logger name -> the module whose import installs
# the library's stderr handler (imported first, so that handler is there to be muted).
LIBRARIES = {"huggingface_hub": "huggingface_hub.utils.logging"}

_PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "adcvsr: error: "}
_STYLE = {logging.WARNING: "yellow", logging.ERROR: "red"}


class _Handler(RichHandler):
    """rich's handler showing the message only (no time, level or source columns)."""

    def render_message(self, record: logging.LogRecord, message: str) -> Text:
        return Text(
            _PREFIX.get(record.levelno, "") + message,
            style=_STYLE.get(record.levelno, ""),
        )

    def emit(self, record: logging.LogRecord) -> None:
        # soft_wrap: no line breaks inserted at the terminal's width (rich's emit would wrap)
        self.console.print(self.render_message(record, self.format(record)), soft_wrap=True)


def level_for(*, quiet: bool = False, verbose: int = 0, silent: bool = False) -> int:
    """The handler's level for the flags -q, -v (count) and JSON on standard error."""
    if silent:
        return logging.CRITICAL + 1
    if quiet:
        return logging.ERROR
    return {0: logging.INFO, 1: VERBOSE}.get(verbose, logging.DEBUG)


def setup(console: Console | None = None, level: int = logging.INFO) -> logging.Logger:
    """Point the ``adcvsr`` logger at ``console`` (default: standard error) at ``level``,
    replacing the handler an earlier call installed."""
    log = logging.getLogger(NAME)
    for h in [h for h in log.handlers if isinstance(h, _Handler)]:
        log.removeHandler(h)
    handler = _Handler(
        console=console or Console(stderr=True, highlight=False),
        level=level,
        show_time=False,
        show_level=False,
        show_path=False,
        markup=False,
        highlighter=None,
        rich_tracebacks=False,
    )
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False  # the handler above is where the CLI's messages go
    return log


def logger() -> logging.Logger:
    """The ``adcvsr`` logger, with the default handler when none is installed yet."""
    log = logging.getLogger(NAME)
    if not any(isinstance(h, _Handler) for h in log.handlers):
        setup()
    return log


class _Relay(logging.Handler):
    """Hands each record of a library's logger to a function of the command's."""

    def __init__(self, on_record: Callable[[logging.LogRecord], None]) -> None:
        super().__init__()
        self.on_record = on_record

    def emit(self, record: logging.LogRecord) -> None:
        self.on_record(record)


def _muted(record: logging.LogRecord) -> bool:
    return False


@contextmanager
def library_logs(on_record: Callable[[logging.LogRecord], None]) -> Iterator[None]:
    """While a command runs, the records of the libraries it drives (huggingface_hub's retries
    and resumed downloads) go to ``on_record`` only: not to the bare stderr handler such a library
    installs on its logger (which knows nothing of -q, --json or the progress bars), nor up to
    the root logger. A relay handler of ours is added, ``propagate`` turned off and the handlers
    already there muted by a filter, on those loggers alone; all three are undone afterwards, so
    the libraries' handlers stay the same objects, with their levels and formats."""
    relay = _Relay(on_record)
    saved = []
    for name, module in LIBRARIES.items():
        importlib.import_module(module)
        lib = logging.getLogger(name)
        saved.append((lib, lib.propagate, list(lib.handlers)))
        for h in lib.handlers:
            h.addFilter(_muted)
        lib.addHandler(relay)
        lib.propagate = False
    try:
        yield
    finally:
        for lib, propagate, handlers in saved:
            lib.removeHandler(relay)
            for h in handlers:
                h.removeFilter(_muted)
            lib.propagate = propagate
