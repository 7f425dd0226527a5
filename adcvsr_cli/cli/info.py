"""``adcvsr info``: what a media file holds."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import AdcvsrError
from .app import app, fail


@app.command(
    help="Print what a media file holds: streams, codecs, frame rate (and whether it varies), duration, rotation, colour tags.\n\nExample:\n\n  adcvsr info in.mp4 --json"
)
def info(
    file: Annotated[str, typer.Argument(help="A video or image file.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    count_frames: Annotated[
        bool, typer.Option("--count-frames", help="Count frames exactly (reads the whole file).")
    ] = False,
) -> None:
    from ..media import probe

    try:
        mi = probe(file, count_frames=count_frames)
    except AdcvsrError as e:
        raise fail(None, e) from None
    d = mi.to_dict()
    if as_json:
        typer.echo(json.dumps(d, indent=2, default=str))
        return
    rate = f"{d['avg_rate']} fps" if d.get("avg_rate") else "?"
    lines = [
        f"{file}: {d['format']}{' (image)' if d['is_image'] else ''}",
        f"  video   {d['codec']} {d['width']}x{d['height']} {d['pix_fmt']} ({d['bit_depth']}-bit){' alpha' if d['has_alpha'] else ''}",
        f"  frames  {d['frames'] if d['frames'] is not None else '?'}{'' if d['frames_exact'] else ' (estimate)'}, rate {rate}"
        f"{', variable' if d['vfr'] else ''}, duration {d['duration'] if d['duration'] is not None else '?'} s",
        f"  display rotation {d['rotation']}, sample aspect {d['sar'] or '1'}, interlaced {d['interlaced']}",
        f"  colour  primaries {d['color_primaries']}, transfer {d['color_trc']}, matrix {d['colorspace']}, range {d['color_range']}",
    ]
    for s in d["streams"]:
        lines.append(
            "  stream  " + ", ".join(f"{k}={v}" for k, v in s.items() if v not in (None, "", {}))
        )
    typer.echo("\n".join(lines))
