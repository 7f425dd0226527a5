"""``adcvsr preview IN -o preview.png``: a contact sheet of what ``upscale`` would give."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import AdcvsrError
from .app import app, fail
from .options import UpscaleArgs, takes, upscale_options
from .report import Reporter

PREVIEW_HELP = """Draw a contact sheet of a few frames of INPUT upscaled as 'adcvsr upscale' would.

For each frame (evenly spaced, or at --at times) the bicubic upscale of the input beside the
network's output, as whole frames and as 1:1 crops of the most detailed region, labelled with
the time, the model and the plan. The frames go through the same plan, tiles and colour fix as
a full run (with the neighbouring frames a full run gives them), so the crops are the pixels
the full run writes. Only those frames are upscaled. Needs Pillow: pip install 'adcvsr[preview]'.

Examples:

\b
  adcvsr preview in.mp4 -o preview.png
  adcvsr preview in.mp4 -o preview.png --at 00:01:30 --at 95.5 --crop 256
  adcvsr preview in.mp4 -o preview.png --tile 128 --color-fix adain-temporal
"""

# The options of upscale that shape the picture (same flags, same help, same defaults).
SHARED = (
    "scale",
    "width",
    "height",
    "weights",
    "cache_dir",
    "offline",
    "device",
    "precision",
    "compile",
    "fastpath",
    "color_fix",
    "tile",
    "tile_overlap",
    "chunk",
    "chunk_overlap",
    "batch_frames",
    "no_scene_split",
    "overwrite",
    "quiet",
    "verbose",
)


def _shared_fields() -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(UpscaleArgs, include_extras=True)
    by_name = {f.name: f for f in dataclasses.fields(UpscaleArgs)}
    return [(n, hints[n], dataclasses.field(default=by_name[n].default)) for n in SHARED]


PreviewArgs = dataclasses.make_dataclass(
    "PreviewArgs",
    [
        ("input", Annotated[str, typer.Argument(metavar="INPUT", help="A video (or image).")]),
        (
            "out",
            Annotated[Path, typer.Option("-o", "--output", help="The sheet, a .png file.")],
        ),
        (
            "at",
            Annotated[
                list[str] | None,
                typer.Option("--at", help="A time to show: seconds or HH:MM:SS.mmm (repeatable)."),
            ],
            dataclasses.field(default=None),
        ),
        (
            "count",
            Annotated[int, typer.Option(help="Frames to show, evenly spaced (without --at).")],
            dataclasses.field(default=4),
        ),
        (
            "crop",
            Annotated[int, typer.Option(help="Side of the 1:1 crops, output pixels.")],
            dataclasses.field(default=160),
        ),
        (
            "thumb",
            Annotated[int, typer.Option(help="Width of the whole frames on the sheet, pixels.")],
            dataclasses.field(default=480),
        ),
        *_shared_fields(),
    ],
)


@app.command(help=PREVIEW_HELP, no_args_is_help=True)
@takes(PreviewArgs)
def preview(args: Any) -> None:
    from .. import pipeline
    from ..media import probe
    from ..preview import load_pil, make_preview, write_png
    from ..ranges import parse_time

    reporter = Reporter(quiet=args.quiet, verbose=args.verbose, hub_logs=True, libav_logs=True)
    try:
        opts = upscale_options(args)
        at = [parse_time(t, "--at") for t in args.at] if args.at else None
        load_pil()
        probe(args.input)  # a bad input is named before the model loads
        if args.out.exists() and not args.overwrite:
            from ..media import OutputExists

            raise OutputExists(f"{args.out}: output exists (use -y/--overwrite to replace it)")
        with reporter:
            reporter.file = args.input
            up = pipeline.load_model(
                args.weights,
                device=args.device,
                precision=args.precision,
                cache_dir=args.cache_dir,
                offline=args.offline or None,
                compile=args.compile,
                fastpath=args.fastpath,
                on_event=reporter.on_event,
            )
            result = make_preview(
                args.input,
                up,
                opts,
                count=args.count,
                at=at,
                crop=args.crop,
                thumb=args.thumb,
                on_event=reporter.on_event,
            )
        write_png(args.out, result, args.overwrite)
    except AdcvsrError as e:
        raise fail(reporter, e) from None
    times = ", ".join(f["time"] for f in result.labels["frames"])
    reporter.log(
        f"wrote {args.out}: {len(result.frames)} frames ({times}), model {up.source}, "
        f"{result.labels['plan']}"
    )
