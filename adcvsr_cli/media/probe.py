"""Probing: what a media file holds (size, timing, colour, streams), and whether it ended early."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import av
import av.error

from ..errors import VideoError
from .common import INPUT_ERRORS, _bits, _err_text, _frac, _has_alpha
from .decode import _Decoder
from .hdr import hdr_metadata, reads_hdr
from .icc import input_icc
from .inputs import _IMAGE_DEMUXERS, _open_input, _pick_video_stream
from .types import MediaInfo

_TAG_DURATION_RE = re.compile(r"^\s*(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)\s*$")


def _tag_duration(stream: Any) -> float | None:
    """The per-stream ``DURATION`` tag of Matroska/WebM ("00:00:06.000000000"), in seconds.

    Matroska has no per-stream duration field; FFmpeg and mkvmerge write this tag instead. It
    holds the end time of the track (the largest pts plus that frame's duration), so it counts
    from 0, not from the stream's start time.
    """
    for key, value in dict(stream.metadata or {}).items():
        if key.lower() != "duration" or not isinstance(value, str):
            continue
        m = _TAG_DURATION_RE.match(value)
        if m:
            secs = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            return secs if secs > 0 else None
    return None


def _stream_start(vstream: Any) -> float:
    tb = _frac(vstream.time_base)
    if vstream.start_time is None or not tb:
        return 0.0
    return float(vstream.start_time * tb)


def _video_end(vstream: Any) -> float | None:
    """Where the video track ends by its header, in seconds from 0: the Matroska DURATION tag,
    else the stream's duration (counted from its start time). ``None`` when the container
    gives neither (the container duration would include the audio).

    The tag comes first: Matroska has no stream duration field, so FFmpeg fills one in only
    when it cannot read the index (a truncated file), copying the container's, audio included.
    """
    tag = _tag_duration(vstream)
    if tag is not None:
        return tag
    tb = _frac(vstream.time_base)
    if vstream.duration and tb:
        return _stream_start(vstream) + float(vstream.duration * tb)
    return None


def _stream_dicts(container: Any) -> list[dict[str, Any]]:
    out = []
    for s in container.streams:
        md = dict(s.metadata or {})
        codec = s.codec_context.name if s.codec_context is not None else None
        if codec is None:
            try:
                codec = s.codec.name
            except AttributeError:  # a data stream has no codec
                codec = None
        entry = {
            "index": s.index,
            "type": s.type,
            "codec": codec,
            "language": md.get("language"),
            "title": md.get("title"),
            "tags": md,
        }
        if s.type == "audio" and s.codec_context is not None:
            cc = s.codec_context
            layout = cc.layout.name if cc.layout is not None else None
            entry.update(sample_rate=cc.sample_rate, channels=cc.channels, layout=layout)
        out.append(entry)
    return out


def _info_from(
    container: Any, vstream: Any, first: Any, name: str, frames: int | None, exact: bool
) -> MediaInfo:
    cc = vstream.codec_context
    fmt = first.format if first is not None else cc.format
    tb = _frac(vstream.time_base)
    rate = _frac(vstream.average_rate) or _frac(vstream.guessed_rate)
    # The video track's own duration first: the container's includes audio that runs longer.
    duration = None
    end = _video_end(vstream)
    if end is not None:
        begin = _stream_start(vstream)
        if vstream.start_time is None and first is not None and first.pts is not None and tb:
            begin = float(first.pts * tb)  # a truncated Matroska file may lose its start time
        duration = end - begin
        if duration <= 0:
            duration = None
    if duration is None and container.duration:
        duration = container.duration / av.time_base
    if frames is None:
        if vstream.frames:
            frames, exact = int(vstream.frames), container.format.name.startswith("mov")
        elif duration and rate:
            frames = max(1, round(duration * rate))
    base = _frac(vstream.base_rate)
    vfr = None
    if rate and base and abs(float(rate) - float(base)) > 0.01 * float(base):
        vfr = True
    interlaced = None
    fo = getattr(cc, "field_order", None)
    if first is not None and first.interlaced_frame:
        interlaced = True
    elif fo:
        interlaced = str(fo).lower() not in ("1", "progressive", "fieldorder.progressive")
        if isinstance(fo, int):
            interlaced = fo not in (0, 1)
    elif first is not None:
        interlaced = False
    is_image = container.format.name in _IMAGE_DEMUXERS or (
        container.format.name == "apng" and (frames or 1) <= 1
    )
    src = first if first is not None else cc
    start = None
    if vstream.start_time is not None and tb:
        start = float(vstream.start_time * tb)
    return MediaInfo(
        path=name,
        format=container.format.name,
        is_image=is_image,
        width=(first.width if first is not None else cc.width),
        height=(first.height if first is not None else cc.height),
        pix_fmt=fmt.name if fmt is not None else "unknown",
        bit_depth=_bits(fmt) if fmt is not None else 8,
        has_alpha=_has_alpha(fmt) if fmt is not None else False,
        frames=frames,
        frames_exact=exact,
        duration=duration,
        time_base=tb,
        avg_rate=rate,
        vfr=vfr,
        rotation=int(first.rotation) if first is not None and first.rotation else 0,
        sar=_frac(vstream.sample_aspect_ratio) or _frac(cc.sample_aspect_ratio),
        color_primaries=int(src.color_primaries or 2),
        color_trc=int(src.color_trc or 2),
        colorspace=int(src.colorspace or 2),
        color_range=int(src.color_range or 0),
        interlaced=interlaced,
        codec=cc.name,
        video_stream=vstream.index,
        streams=_stream_dicts(container),
        start_time=start,
        hdr=hdr_metadata(first) if first is not None and reads_hdr(src.color_trc) else None,
    )


def probe(src: str | os.PathLike[str], *, count_frames: bool = False) -> MediaInfo:
    """Describe a media file, and check that its first video frame decodes.

    With ``count_frames`` the video packets are counted (a demux pass, no decoding), which
    also tells whether the timing is variable. Raises :class:`VideoError` naming the file for
    a missing, empty, unreadable or truncated file, one without video, or one whose first
    frame cannot be decoded.
    """

    def describe(container: Any, vstream: Any, first: Any, name: str) -> MediaInfo:
        frames, exact, vfr = None, False, None
        if count_frames:
            frames, vfr = _count_packets(container, vstream)
            exact = True
        info = _info_from(container, vstream, first, name, frames, exact)
        if count_frames:
            info.vfr = vfr
        if info.is_image and os.fspath(src) != "-":
            info.icc = input_icc(os.path.abspath(os.fspath(src)), None, name)
        return info

    return with_first_frame(src, describe, "input")


T = TypeVar("T")


def with_first_frame(src: Any, use: Callable[[Any, Any, Any, str], T], what: str) -> T:
    """Open ``src``, pick its main video stream, decode its first frame and return
    ``use(container, vstream, first_frame, name)``; the input is closed after. Raises
    :class:`VideoError` naming the file (and ``what`` it is) when any step fails."""
    container, name, _ = _open_input(src)
    try:
        with container:
            vstream = _pick_video_stream(container, name)
            dec = _Decoder(container, vstream, [], deinterlace=False, strict=False, name=name)
            first = dec.first_frame()
            if first is None:
                raise VideoError(_no_frame_message(name, vstream, dec))
            return use(container, vstream, first, name)
    except VideoError:
        raise
    except INPUT_ERRORS as e:
        raise VideoError(f"{name}: corrupt or unreadable {what}: {_err_text(e)}") from e


def _no_frame_message(name: str, vstream: Any, dec: _Decoder) -> str:
    codec = vstream.codec_context.name if vstream.codec_context is not None else "unknown"
    why = (
        f"; {dec.bad_packets} packet(s) failed to decode ({dec.last_bad})"
        if dec.bad_packets
        else ""
    )
    return f"{name}: no decodable video frame (codec {codec}{why}); truncated or unsupported file?"


def _count_packets(container: Any, vstream: Any) -> tuple[int, bool | None]:
    container.seek(0)
    pts: list[int] = []
    n = 0
    for pkt in container.demux(vstream):
        if pkt.size == 0 or pkt.is_discard:  # an edit list hides discarded samples
            continue
        n += 1
        if pkt.pts is not None and len(pts) < 100_000:
            pts.append(pkt.pts)
    pts.sort()
    deltas = {b - a for a, b in zip(pts, pts[1:], strict=False)}
    vfr = None
    if len(deltas) >= 1:
        lo, hi = min(deltas), max(deltas)
        vfr = hi - lo > 1
    return n, vfr


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _early_end_message(
    name: str, info: MediaInfo, container: Any, vstream: Any, dec: _Decoder, frames_in: int
) -> str | None:
    """Whether the input stopped before its header says it should (a truncated file).

    MP4/MOV headers count the frames. Elsewhere (Matroska, WebM, AVI, ...) the end of the last
    decoded frame is compared with the video track's own duration, never the container's, which
    includes audio that may run longer: a shortfall of more than 1.5 frame durations (plus one
    per corrupt packet, reported separately) is an early end. MPEG-TS has no header: FFmpeg
    measures a truncated TS from what is there, so its early end cannot be told.
    """
    header = int(vstream.frames or 0)
    if header and info.format.startswith("mov"):
        # The header counts the samples an edit list discards too: the file presents fewer.
        presented = header - dec.discarded
        if frames_in + dec.bad_packets >= presented or dec.deinterlacing:
            return None
        # An edit list may also end before the last sample (a copy cut with a duration): the
        # track's edited duration is then reached, and the file is complete.
        ended = _time_shortfall(name, info, container, vstream, dec, frames_in) is None
        if _video_end(vstream) is not None and ended:
            return None
        return f"{name}: input ends early: {frames_in} frames decoded, header says {presented}"
    return _time_shortfall(name, info, container, vstream, dec, frames_in)


def _time_shortfall(
    name: str, info: MediaInfo, container: Any, vstream: Any, dec: _Decoder, frames_in: int
) -> str | None:
    """The early-end message when the decoded video stops short of the track's duration."""
    tb = _frac(vstream.time_base)
    expected = _video_end(vstream)
    if expected is None and container.duration and len(container.streams) == 1:
        expected = container.duration / av.time_base  # only video: nothing else to include
    if expected is None or dec.max_pts is None or not tb:
        return None
    frame_s = float(dec.last_step * tb)
    if info.avg_rate:
        frame_s = max(frame_s, float(1 / info.avg_rate))
    if frame_s <= 0:
        return None
    end = float(dec.max_pts * tb) + frame_s
    if expected - end <= (1.5 + dec.bad_packets) * frame_s:
        return None
    # A truncated file may lose its start time; the first decoded frame stands in for it.
    start = _stream_start(vstream)
    if vstream.start_time is None and dec.min_pts is not None:
        start = float(dec.min_pts * tb)
    about = round((expected - start) / frame_s)
    return (
        f"{name}: input ends early: {frames_in} frames decoded, header says "
        f"{expected - start:.2f} s (about {about} frames); the decodable video stops at "
        f"{end - start:.2f} s"
    )
