"""The Typer application, its root options, error reporting and the console-script entry point.

Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, 130 interrupted
(143 on SIGTERM), 141 when the reader of standard output went away.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from typer.core import TyperGroup

from ..errors import EXIT_INTERRUPTED, AdcvsrError
from .logs import logger
from .signals import EXIT_BROKEN_PIPE, EXIT_SIGTERM, Terminated, install, silence_stdout

if TYPE_CHECKING:
    from .report import Reporter

EXIT_CODES_HELP = (
    "Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, "
    "130 interrupted (143 on SIGTERM), 141 standard output closed by its reader."
)


class _Group(TyperGroup):
    """Ctrl-C and SIGTERM in any command: one line and exit 130 or 143 (rather than click's
    "Aborted!" and exit 1). ``upscale`` handles them itself, with its summary."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Whole one-line summaries (click would cut them at about 45 characters with "...").
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.short_help and cmd.help:
                cmd.short_help = " ".join(cmd.help.split("\n\n", 1)[0].split())
        super().format_commands(ctx, formatter)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("adcvsr: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            typer.echo("adcvsr: terminated", err=True)
            raise typer.Exit(EXIT_SIGTERM) from None


app = typer.Typer(
    name="adcvsr",
    cls=_Group,
    help="Fast x4 real-world video super-resolution (AdcVSR / AdcSR) that keeps everything of "
    "the input but its resolution.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
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
