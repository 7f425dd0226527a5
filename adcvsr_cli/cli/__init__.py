"""The ``adcvsr`` command line: a thin Typer layer over the library.

Modules: ``app`` (the Typer app, errors, entry point), ``options`` (upscale's options object
and help groups), ``upscale`` (the command), ``jobs`` (running a plan of jobs), ``dryrun``,
``report`` (events -> bars, log lines, JSON lines), ``signals`` (SIGINT/SIGTERM, closed pipes),
``info`` and ``commands`` (the other commands). Importing the package registers every command.
"""

from __future__ import annotations

from . import bench, commands, info, preview, quality, upscale  # noqa: F401  (register the commands)
from .app import app, main

__all__ = ["app", "main"]
