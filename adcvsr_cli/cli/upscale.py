"""``adcvsr upscale``: options -> checks -> job plan -> dry run or run."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperCommand

from ..errors import AdcvsrError, UsageError
from .app import EXIT_CODES_HELP, app, fail
from .options import UpscaleArgs, encode_options, takes, upscale_options
from .report import Reporter

UPSCALE_HELP = f"""Upscale videos or images x4 (or to any --scale/--width/--height).

INPUT... OUTPUT: one file to one file; a file into an existing folder; a folder (or several
inputs) into a folder (created; names keep the input's, changed by --suffix and --ext;
non-media files are counted and skipped; finished outputs are skipped unless --overwrite);
'-' reads standard input (a streamable container: mkv, ts, nut, y4m, fragmented mp4) or
writes standard output (--format matroska, nut, mpegts or mp4, written fragmented). The
model is loaded once per run. A file that fails is reported and the batch goes on.

Progress bars go to standard error when it is a terminal (-q: none); --json writes one JSON
object per line to standard error (--json-file: to a file) with the events run_start, model,
start, progress, file_done, file_skipped, file_failed, warning, error and summary.

Examples:

\b
  adcvsr upscale in.mp4 out.mp4
  adcvsr upscale clips/ upscaled/ --recursive --suffix _x4 --ext mkv
  adcvsr upscale a.mp4 b.mov c.mkv upscaled/ --overwrite --json-file log.jsonl
  adcvsr upscale clips/ upscaled/ -r --glob '*.mp4' --exclude 'raw/*'
  cat in.mkv | adcvsr upscale - - --format matroska > out.mkv
  adcvsr upscale in.mp4 - --format mp4 --no-audio | other-program
  adcvsr upscale photo.png photo_x4.png --color-fix adain
  adcvsr upscale clips/ upscaled/ --dry-run

{EXIT_CODES_HELP}
"""


class _UpscaleCommand(TyperCommand):
    """Shows ``INPUT... OUTPUT`` on the usage line (Typer would write ``{INPUT... OUTPUT}...``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar or "[OPTIONS]", "INPUT...", "OUTPUT"]


@app.command(help=UPSCALE_HELP, no_args_is_help=True, cls=_UpscaleCommand)
@takes(UpscaleArgs)
def upscale(args: UpscaleArgs) -> None:
    from ..batch import plan_jobs
    from ..pipeline import resolve_device, resolve_precision
    from ..workers import parse_devices
    from .dryrun import dry_run
    from .jobs import Scale, run_jobs

    if len(args.paths) < 2:
        raise typer.BadParameter(
            "give at least one INPUT and an OUTPUT", param_hint="INPUT... OUTPUT"
        )
    try:
        reporter = Reporter(
            quiet=args.quiet,
            verbose=args.verbose,
            json_out=args.json_lines,
            json_file=args.json_file,
            hub_logs=True,
            libav_logs=True,
        )
    except UsageError as e:
        raise fail(None, e) from None
    try:
        if args.skip_existing and args.overwrite:
            raise UsageError(
                "--skip-existing and --overwrite/-y contradict each other: give one of them"
            )
        opts = upscale_options(args)
        # Device and precision are checked before any input is read or model resolved.
        resolve_precision(args.precision, resolve_device(args.device))
        if args.segment < 0:
            raise UsageError(
                f"--segment must be 0 (never cut) or a number of frames, got {args.segment}"
            )
        devices = parse_devices(args.devices) if args.devices else [args.device]
        for d in devices:
            resolve_device(d)
        enc = encode_options(args)
        check_pipes(args.inputs, args.output, args.format)
        plan = plan_jobs(
            args.inputs,
            args.output,
            recursive=args.recursive,
            include=args.glob or [],
            exclude=args.exclude or [],
            suffix=args.suffix,
            ext=args.ext,
            overwrite=args.overwrite,
            skip_existing=args.skip_existing,
        )
    except AdcvsrError as e:
        raise fail(reporter, e) from None
    if args.dry_run:
        raise typer.Exit(
            dry_run(
                plan,
                opts,
                enc,
                args.device,
                args.precision,
                args.weights,
                args.cache_dir,
                reporter,
            )
        )
    with reporter:
        code = run_jobs(
            plan,
            opts,
            enc,
            reporter,
            weights=args.weights,
            cache_dir=args.cache_dir,
            offline=args.offline,
            device=args.device,
            precision=args.precision,
            compile=args.compile,
            fastpath=args.fastpath,
            scale=Scale(segment=args.segment, restart=args.restart, devices=devices, ray=args.ray),
        )
    raise typer.Exit(code)


STREAMABLE_FORMATS = ("matroska", "nut", "mpegts", "mp4")


def check_pipes(inputs: list[str], output: str, fmt: str | None) -> None:
    if output == "-":
        if fmt is not None and fmt not in STREAMABLE_FORMATS:
            raise UsageError(
                f"--format {fmt} cannot be written to a pipe: use one of {', '.join(STREAMABLE_FORMATS)} (mp4 is written fragmented)"
            )
        if sys.stdout.isatty():
            raise UsageError(
                "refusing to write video to a terminal: redirect standard output (> out.mkv) or give an output file"
            )
    elif fmt is not None and fmt not in STREAMABLE_FORMATS:
        pass  # a container override for a file: the media layer validates it
    if "-" in inputs and sys.stdin.isatty():
        raise UsageError(
            "'-' reads video from standard input, which is a terminal: pipe a file in (cat in.mkv | adcvsr upscale - out.mkv)"
        )
