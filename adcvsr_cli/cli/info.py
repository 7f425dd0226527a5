"""``adcvsr info``: what a media file holds, for people (``--json``: the raw values)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ..errors import AdcvsrError
from .app import app, fail
from .report import plural

# FFmpeg's colour enums by number (libavutil/pixfmt.h), as ffprobe names them.
PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
TRANSFERS = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1 (sRGB)",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084 (PQ)",
    17: "smpte428",
    18: "arib-std-b67 (HLG)",
}
MATRICES = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
RANGES = {1: "limited", 2: "full"}


def seconds(value: float | None) -> str:
    """A duration rounded for reading: ``1.960 s``, ``2 min 5.000 s``."""
    if value is None:
        return "duration unknown"
    if value < 60:
        return f"{value:.3f} s"
    minutes, rest = divmod(value, 60)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours} h " if hours else "") + f"{minutes} min {rest:.3f} s"


def frame_rate(rate: str | None) -> str:
    """``25 fps``; ``23.976 fps (24000/1001)`` for a fraction."""
    if not rate:
        return "frame rate unknown"
    if "/" not in rate:
        return f"{rate} fps"
    num, den = (int(x) for x in rate.split("/"))
    return f"{num / den:.3f} fps ({rate})"


def colour_line(d: dict[str, Any]) -> str:
    tags = [
        (PRIMARIES, d["color_primaries"], "primaries"),
        (TRANSFERS, d["color_trc"], "transfer"),
        (MATRICES, d["colorspace"], "matrix"),
        (RANGES, d["color_range"], "range"),
    ]
    named = [f"{table[v]} {what}" for table, v, what in tags if v in table]
    return ", ".join(named) if named else "not tagged"


def stream_line(s: dict[str, Any]) -> str:
    kind = s["type"]
    parts = [str(s.get("codec") or "unknown codec")]
    if kind == "audio":
        if s.get("sample_rate"):
            parts.append(f"{s['sample_rate']} Hz")
        if s.get("channels"):
            layout = s.get("layout")
            parts.append(plural(s["channels"], "channel") + (f" ({layout})" if layout else ""))
    lang = s.get("language")
    if lang and lang != "und":
        parts.append(f"language {lang}")
    if s.get("title"):
        parts.append(f"title {s['title']!r}")
    return f"  {kind:<10}#{s['index']} " + ", ".join(parts)


def info_lines(file: str, d: dict[str, Any]) -> list[str]:
    """What ``adcvsr info`` prints."""
    kind = "image" if d["is_image"] else "video"
    alpha = ", alpha" if d["has_alpha"] else ""
    size = f"{d['width']}x{d['height']} {d['pix_fmt']}, {d['bit_depth']}-bit{alpha}"
    lines = [f"{file}: {kind} ({d['format']})", f"  {kind:<10}{d['codec']} {size}"]
    if not d["is_image"]:
        frames = plural(d["frames"], "frame") if d["frames"] is not None else "frames unknown"
        rate = frame_rate(d.get("avg_rate")) + (", variable" if d["vfr"] else "")
        estimate = "" if d["frames_exact"] else " (estimate; --count-frames counts them)"
        lines.append(f"  timing    {rate}, {frames}{estimate}, {seconds(d['duration'])}")
        sar = d["sar"] or "1"
        scan = "interlaced" if d["interlaced"] else "progressive"
        lines.append(f"  display   rotation {d['rotation']}, sample aspect {sar}, {scan}")
    lines.append(f"  colour    {colour_line(d)}")
    lines += [stream_line(s) for s in d["streams"] if s["index"] != d.get("video_stream")]
    return lines


@app.command(
    help="Print what a media file holds: streams, codecs, frame rate (and whether it varies), "
    "duration, rotation, colour tags.\n\nExample:\n\n  adcvsr info in.mp4 --json"
)
def info(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A video or image file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document with the raw values.")
    ] = False,
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
    typer.echo("\n".join(info_lines(file, d)))
