"""The Typer application, its root options, error reporting and the console-script entry point.

Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, 130 interrupted
(143 on SIGTERM), 141 when the reader of standard output went away.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from ..engine.cpumem import keep_freed_memory
from ..errors import EXIT_INTERRUPTED, AdcvsrError
from .logs import logger
from .signals import EXIT_BROKEN_PIPE, EXIT_SIGTERM, Terminated, install, silence_stdout

if TYPE_CHECKING:
    from .report import Reporter

EXIT_CODES_HELP = (
    "Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, "
    "130 interrupted (143 on SIGTERM), 141 standard output closed by its reader."
)

HELP_OPTION_NAMES = ["-h", "--help"]


class _Group(TyperGroup):
    """Every command's help drawn by rich (see ``tidy_help``), and Ctrl-C and SIGTERM in any
    command: one line and exit 130 or 143 (rather than click's "Aborted!" and exit 1).
    ``upscale`` handles them itself, with its summary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for cmd in (self, *self.commands.values()):
            tidy_help(cmd)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("adcvsr: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            typer.echo("adcvsr: terminated", err=True)
            raise typer.Exit(EXIT_SIGTERM) from None


def _tidy_text(text: str) -> str:
    """``text`` as rich should draw it: a prose paragraph on one line (rich wraps it to the
    terminal's width), an example block (a paragraph after a ``\\b`` line, or one with indented
    lines) line by line, and no rich markup (``adcvsr[ray]`` is text, not a style)."""
    paragraphs = []
    for p in inspect.cleandoc(text).split("\n\n"):
        p = p.removeprefix("\b\n")
        if not any(line.startswith(" ") for line in p.splitlines()):
            p = " ".join(p.split())
        if p:
            paragraphs.append(escape(p))
    return "\n\n".join(paragraphs)


def tidy_help(cmd: Any) -> None:
    """Prepare ``cmd``'s help for rich's panels: texts tidied, no type shown for flags."""
    if cmd.help:
        first, *rest = _tidy_text(cmd.help).split("\n\n")
        # Typer dedents the paragraphs after the first one as a block (inspect.cleandoc): an
        # empty paragraph ahead of them keeps an example's indent when nothing else follows.
        cmd.help = "\n\n".join([first, "", *rest] if rest else [first])
    help_option = cmd.get_help_option(typer.Context(cmd, help_option_names=HELP_OPTION_NAMES))
    for param in (*cmd.params, help_option):
        if isinstance(param, TyperOption | TyperArgument) and param.help:
            param.help = _tidy_text(param.help)
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""  # "<bool>" beside a flag says nothing


app = typer.Typer(
    name="adcvsr",
    cls=_Group,
    help="Fast x4 real-world video super-resolution (AdcVSR / AdcSR) that keeps everything of "
    "the input but its resolution.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": HELP_OPTION_NAMES},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"adcvsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Fast x4 video super-resolution."""


def fail(reporter: Reporter | None, e: AdcvsrError) -> typer.Exit:
    """Report ``e`` (through ``reporter`` when there is one) and return the Exit to raise."""
    msg = str(e)
    if reporter is not None:
        reporter.error(msg, exit_code=e.exit_code)
    else:
        logger().error(msg)
    return typer.Exit(e.exit_code)


def main() -> None:
    """Console-script entry point."""
    # Before any thread starts, so that every thread shares the one heap (see cpumem.py): the
    # frames of a run are reused from it instead of being faulted in again, chunk after chunk.
    keep_freed_memory()
    install()  # before any thread starts: see signals.py
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("adcvsr: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        typer.echo("adcvsr: terminated", err=True)
        sys.exit(EXIT_SIGTERM)
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
