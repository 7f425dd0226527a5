"""Media layer: probe a file, decode it to RGB arrays, and write it back at a new size.

Everything but the resolution of the main video track is kept: timestamps (VFR stays VFR),
colour tags, sample aspect ratio, rotation, bit depth (10-bit stays 10-bit), audio, subtitle,
data and attachment streams (copied packet for packet), tags and chapters.

The caller supplies the frame processing as a function from an iterator of input frames to an
iterator of output frames (see :data:`FrameProcessor`). Decoding and encoding each run in their
own thread and talk to the caller's thread through bounded queues, so the three overlap.

Nothing is lost: output goes to a temporary file beside the target, is verified (demux only),
and only then published with ``os.replace``. On any error or interruption the temporary file
is removed and an existing output is left untouched.

The module never prints. It reports through an ``on_event`` callback and raises the typed
errors of :mod:`adcvsr_cli.errors` (plus the subclasses defined here).

Events (plain dicts, always delivered on the thread that called :func:`transcode`):

- ``{"type": "start", "input", "output", "frames" (estimate or None), "width", "height",
  "out_width", "out_height", "fps", "duration", "bit_depth", "dtype" ("uint8"/"uint16"),
  "rotation", "interlaced", "codec", "pix_fmt", "container", "streams_copied",
  "streams_dropped"}``
- ``{"type": "progress", "frames_done": n, "frames_total": estimate or None}``, at most about
  ten a second, and once more at the end with the exact total.
- ``{"type": "warning", "message": str}`` (also collected in ``TranscodeReport.warnings``).
- ``{"type": "done", "report": TranscodeReport.to_dict()}``.

A truncated input is processed as far as it decodes, with a warning "input ends early" (an
error with ``strict``): MP4/MOV headers count the frames; for Matroska, WebM, AVI and the
like the last decoded frame is compared with the video track's own duration (never the
container's, which includes the audio). MPEG-TS has no header to compare with.

Output sizes over 8192 pixels on a side get a warning (beyond most codec levels); over 16384
they are refused unless ``EncodeOptions.force`` is set.

Errors: :class:`VideoError` for unusable inputs, outputs too large and unwritable outputs;
:class:`BrokenOutputPipe` (a ``VideoError`` *and* a ``BrokenPipeError``) when the reader of
standard output goes away; :class:`OutputExists` (a ``UsageError``, exit code 2) and
``UsageError`` for impossible requests; ``Interrupted`` when ``cancel`` is set.
``KeyboardInterrupt`` and the frame processor's own exceptions pass through unchanged, after
the cleanup.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import os
import queue
import re
import secrets
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import av.error
import numpy as np

from .errors import AdcvsrError, Interrupted, UsageError, VideoError

__all__ = [
    "BrokenOutputPipe",
    "EncodeOptions",
    "FrameProcessor",
    "MediaInfo",
    "OutputExists",
    "TranscodeReport",
    "is_image_path",
    "is_sequence_pattern",
    "probe",
    "read_image",
    "remove_stale_parts",
    "resolve_output_path",
    "transcode",
    "write_image",
]

FrameProcessor = Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]
"""Turns decoded RGB frames into output frames, one for one and in order.

Input frames are ``(H, W, 3)`` arrays, ``uint8`` for 8-bit sources and ``uint16`` (full 16-bit
range) for deeper ones. The function must yield exactly one ``(out_h, out_w, 3)`` frame of the
same dtype per input frame, in order; it may read ahead (hold frames back) as far as it likes.
"""


class BrokenOutputPipe(VideoError, BrokenPipeError):
    """The reader of the output pipe (stdout) went away before the end.

    It is both a :class:`VideoError` and a :class:`BrokenPipeError`, so a command line can
    catch ``BrokenPipeError`` and exit quietly.
    """


class OutputExists(UsageError):
    """The output file exists and ``overwrite`` was not requested (exit code 2)."""


# Demuxers we accept. Playlists (hls), concat and dash are left out on purpose: they make
# FFmpeg open other files named inside the input (reliability.md F28).
_DEMUXER_WHITELIST = ",".join(
    [
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "avi",
        "mpegts",
        "mpeg",
        "mpegvideo",
        "m4v",
        "flv",
        "asf",
        "ogg",
        "nut",
        "mxf",
        "dv",
        "gif",
        "apng",
        "image2",
        "png_pipe",
        "jpeg_pipe",
        "webp_pipe",
        "bmp_pipe",
        "tiff_pipe",
        "h264",
        "hevc",
        "ivf",
        "obu",
        "yuv4mpegpipe",
        # Audio-only formats, so that such an input gets "no video stream", not "unknown".
        "wav",
        "mp3",
        "aac",
        "flac",
        "w64",
        "caf",
    ]
)
_INPUT_OPTIONS = {"format_whitelist": _DEMUXER_WHITELIST, "pattern_type": "none"}

_IMAGE_DEMUXERS = {
    "image2",
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
    "bmp_pipe",
    "tiff_pipe",
}
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
_WRITABLE_IMAGE_EXTS = {".png", ".jpg", ".jpeg"}

# Container chosen for an output extension.
_EXT_FORMAT = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".mts": "mpegts",
    ".nut": "nut",
    ".flv": "flv",
    ".3gp": "3gp",
}
_MP4_FAMILY = {"mp4", "mov", "3gp", "3g2", "ipod", "ismv"}
_FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"

# Tags a muxer writes itself, or that would be wrong after re-encoding the video.
_DROP_CONTAINER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands"}
_DROP_STREAM_TAGS = {
    "encoder",
    "duration",
    "number_of_frames",
    "number_of_bytes",
    "bps",
    "_statistics_tags",
    "_statistics_writing_app",
    "_statistics_writing_date_utc",
    "handler_name",
    "vendor_id",
}

_SUBSAMPLED_TO_444 = {
    "yuv420p": "yuv444p",
    "yuv422p": "yuv444p",
    "yuvj420p": "yuvj444p",
    "yuvj422p": "yuvj444p",
    "nv12": "yuv444p",
    "yuv420p10le": "yuv444p10le",
    "yuv422p10le": "yuv444p10le",
    "yuv420p12le": "yuv444p12le",
    "yuv422p12le": "yuv444p12le",
}

_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}

# Output sizes (reliability.md §8 decision 6): above the first, most codec levels and players
# give up (a warning); above the second, refused unless EncodeOptions.force.
_WARN_SIDE = 8192
_MAX_SIDE = 16384

_PROGRESS_INTERVAL_S = 0.1
_QUEUE_POLL_S = 0.05
_JOIN_TIMEOUT_S = 10.0
_ABORT_JOIN_S = 1.5  # Ctrl-C must end the run within about 2 s (reliability.md §1.11)
_IN_QUEUE_BYTES = 256 << 20
_OUT_QUEUE_BYTES = 512 << 20


# --------------------------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------------------------


@dataclass
class MediaInfo:
    """What :func:`probe` learned about a media file."""

    path: str
    format: str
    is_image: bool
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    has_alpha: bool
    frames: int | None
    """Frame count: exact when ``count_frames`` was asked (or the header is reliable), an
    estimate from duration and rate otherwise, ``None`` when unknown."""
    frames_exact: bool
    duration: float | None
    time_base: Fraction | None
    avg_rate: Fraction | None
    vfr: bool | None
    rotation: int
    sar: Fraction | None
    color_primaries: int
    color_trc: int
    colorspace: int
    color_range: int
    interlaced: bool | None
    codec: str
    video_stream: int
    streams: list[dict[str, Any]] = field(default_factory=list)
    start_time: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("time_base", "avg_rate", "sar"):
            if d[k] is not None:
                d[k] = str(d[k])
        return d


@dataclass
class EncodeOptions:
    """How :func:`transcode` writes its output. ``None`` means "choose from the input"."""

    codec: str | None = None
    """Video encoder; default libx264 (libvpx-vp9 for .webm, png for image sequences)."""
    crf: int | None = None
    """Constant rate factor; default 18 unless a bitrate is given."""
    preset: str | None = None
    """Encoder preset; default medium for x264/x265."""
    pix_fmt: str | None = None
    """Output pixel format; default follows the input (yuv420p, yuv420p10le for >8-bit)."""
    bitrate: str | None = None
    """Target bitrate such as ``"8M"`` or ``"2500k"``."""
    encoder_options: dict[str, str] = field(default_factory=dict)
    """Extra encoder options (``-e key=value``), passed to FFmpeg as they are."""
    format: str | None = None
    """Container override; for ``"-"`` (stdout) the default is matroska, and mp4/mov are
    written fragmented."""
    no_audio: bool = False
    no_subs: bool = False
    audio_codec: str | None = None
    """Transcode audio to this codec (e.g. ``"aac"``) instead of copying it."""
    overwrite: bool = False
    deinterlace: bool = True
    strict: bool = False
    """Corrupt packets and early ends of input become errors instead of warnings."""
    force: bool = False
    """Write outputs over 16384 pixels on a side (refused otherwise: beyond every codec level)."""


@dataclass
class TranscodeReport:
    """What :func:`transcode` did."""

    input: str
    output: str
    frames_in: int = 0
    frames_out: int = 0
    bad_packets: int = 0
    width: int = 0
    height: int = 0
    out_width: int = 0
    out_height: int = 0
    codec: str = ""
    pix_fmt: str = ""
    container: str = ""
    streams_copied: list[str] = field(default_factory=list)
    streams_dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deinterlaced: bool = False
    bytes_written: int = 0
    seconds_decode: float = 0.0
    seconds_process: float = 0.0
    seconds_encode: float = 0.0
    seconds_total: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the name ends in an image extension (and is not a ``%d`` sequence pattern)."""
    p = os.fspath(path)
    return Path(p).suffix.lower() in _IMAGE_EXTS and not is_sequence_pattern(p)


def is_sequence_pattern(path: str | os.PathLike[str]) -> bool:
    """True for an image-sequence pattern such as ``frames/%06d.png``."""
    name = os.path.basename(os.fspath(path))
    if Path(name).suffix.lower() not in _IMAGE_EXTS:
        return False
    try:
        a, b = name % 1, name % 2
    except (TypeError, ValueError):
        return False
    return a != b


def _display(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        s = os.fspath(src)
        return "<stdin>" if s == "-" else s
    name = getattr(src, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _err_text(e: BaseException) -> str:
    if isinstance(e, av.error.FFmpegError):
        msg = e.strerror or str(e)
        return msg.rstrip(".")
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _is_broken_pipe(e: BaseException) -> bool:
    return any(
        isinstance(x, BrokenPipeError) or getattr(x, "errno", None) == errno.EPIPE
        for x in _chain(e)
    )


def _os_errno(e: BaseException) -> int | None:
    for x in _chain(e):
        n = getattr(x, "errno", None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def _bits(fmt: av.VideoFormat) -> int:
    try:
        return max(c.bits for c in fmt.components) if fmt.components else 8
    except Exception:
        return 8


def _has_alpha(fmt: av.VideoFormat) -> bool:
    try:
        return any(c.is_alpha for c in fmt.components)
    except Exception:
        return False


def _frac(x: Any) -> Fraction | None:
    if not x:
        return None
    try:
        f = Fraction(x)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f > 0 else None


_TAG_DURATION_RE = re.compile(r"^\s*(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)\s*$")


def _tag_duration(stream: Any) -> float | None:
    """The per-stream ``DURATION`` tag of Matroska/WebM ("00:00:06.000000000"), in seconds.

    Matroska has no per-stream duration field; FFmpeg and mkvmerge write this tag instead. It
    holds the end time of the track (the largest pts plus that frame's duration), so it counts
    from 0, not from the stream's start time.
    """
    try:
        md = dict(stream.metadata or {})
    except Exception:
        return None
    for key, value in md.items():
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


def _moov_missing(path: str) -> bool:
    """Walk top-level MP4 boxes: an ``ftyp`` file without ``moov`` lost its index."""
    try:
        size_total = os.path.getsize(path)
        seen: list[bytes] = []
        with open(path, "rb") as fh:
            pos = 0
            while pos + 8 <= size_total and len(seen) < 10000:
                fh.seek(pos)
                hdr = fh.read(8)
                size = int.from_bytes(hdr[:4], "big")
                kind = hdr[4:8]
                if size == 1:
                    size = int.from_bytes(fh.read(8), "big")
                elif size == 0:
                    size = size_total - pos
                seen.append(kind)
                if size < 8:
                    break
                pos += size
        return bool(seen) and seen[0] == b"ftyp" and b"moov" not in seen
    except OSError:
        return False


# Messages name the command-line flags first: the library is mostly driven by the CLI.
_EXISTS_HINT = "use --overwrite / -y, or overwrite=True, to replace it"

_MP4_PIPE_MESSAGE = (
    "{name}: cannot read this MP4 from a pipe: its index (moov) is at the end. Pass the file "
    "path instead, or remux it with '+faststart', or pipe Matroska"
)


class _HeadRecorder:
    """A read-only file wrapper that remembers the first bytes (to word errors about pipes)."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if len(self.head) < 64:
            self.head += data[: 64 - len(self.head)]
        return data

    def seekable(self) -> bool:
        try:
            return bool(self._raw.seekable())
        except Exception:
            return False

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


# --------------------------------------------------------------------------------------------
# Opening inputs and probing
# --------------------------------------------------------------------------------------------


def _check_input_path(path: str) -> None:
    name = path
    if not os.path.lexists(path):
        raise VideoError(f"{name}: no such file")
    if not os.path.exists(path):
        raise VideoError(f"{name}: broken symbolic link")
    if os.path.isdir(path):
        raise VideoError(f"{name}: is a directory, not a video file")
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise VideoError(f"{name}: input is empty (0 bytes)")


def _open_input(src: Any) -> tuple[Any, str, Any]:
    """Open ``src`` (path, ``"-"`` or binary file object). Returns (container, name, raw)."""
    name = _display(src)
    kwargs: dict[str, Any] = {"metadata_errors": "replace", "container_options": _INPUT_OPTIONS}
    if isinstance(src, (str, os.PathLike)) and os.fspath(src) != "-":
        path = os.path.abspath(os.fspath(src))
        _check_input_path(path)
        try:
            return av.open(path, **kwargs), name, None
        except av.error.FFmpegError as e:
            if _moov_missing(path):
                raise VideoError(
                    f"{name}: MP4 index (moov) missing - the file is truncated (an interrupted "
                    "recording?) and cannot be read"
                ) from e
            if isinstance(e, (av.error.InvalidDataError, av.error.ArgumentError)):
                raise VideoError(f"{name}: not a recognised media file ({_err_text(e)})") from e
            raise VideoError(f"{name}: cannot open: {_err_text(e)}") from e
        except (OSError, UnicodeDecodeError, IndexError, ValueError) as e:
            raise VideoError(f"{name}: cannot open: {_err_text(e)}") from e
    raw = sys.stdin.buffer if isinstance(src, (str, os.PathLike)) else src
    rec = _HeadRecorder(raw)
    try:
        return av.open(rec, **kwargs), name, rec
    except Exception as e:
        if not rec.head:
            raise VideoError(f"{name}: input is empty") from e
        if rec.head[4:8] == b"ftyp" and not rec.seekable():
            raise VideoError(_MP4_PIPE_MESSAGE.format(name=name)) from e
        raise VideoError(f"{name}: not a recognised media file ({_err_text(e)})") from e


def _pick_video_stream(container: Any, name: str) -> Any:
    candidates = []
    for s in container.streams.video:
        disp = s.disposition
        cover = bool(disp & av.stream.Disposition.attached_pic) if disp is not None else False
        if cover:
            continue
        area = (s.codec_context.width * s.codec_context.height) if s.codec_context else 0
        default = bool(disp & av.stream.Disposition.default) if disp is not None else False
        candidates.append((default, area, -s.index, s))
    if not candidates:
        if container.streams.video:
            raise VideoError(f"{name}: no video stream (only cover art)")
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"{name}: no video stream (streams: {', '.join(kinds)})")
    candidates.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    s = candidates[0][3]
    if s.codec_context is None:
        raise VideoError(f"{name}: no decodable video (the stream has no codec parameters)")
    return s


def _stream_dicts(container: Any) -> list[dict[str, Any]]:
    out = []
    for s in container.streams:
        md = dict(s.metadata or {})
        codec = s.codec_context.name if s.codec_context is not None else None
        if codec is None:
            try:
                codec = s.codec.name
            except Exception:
                codec = None
        out.append(
            {
                "index": s.index,
                "type": s.type,
                "codec": codec,
                "language": md.get("language"),
                "title": md.get("title"),
                "tags": md,
            }
        )
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
    )


def probe(src: str | os.PathLike[str], *, count_frames: bool = False) -> MediaInfo:
    """Describe a media file, and check that its first video frame decodes.

    With ``count_frames`` the video packets are counted (a demux pass, no decoding), which
    also tells whether the timing is variable. Raises :class:`VideoError` naming the file for
    a missing, empty, unreadable or truncated file, one without video, or one whose first
    frame cannot be decoded.
    """
    container, name, _ = _open_input(src)
    try:
        with container:
            vstream = _pick_video_stream(container, name)
            dec = _Decoder(container, vstream, [], deinterlace=False, strict=False, name=name)
            first = dec.first_frame()
            if first is None:
                raise VideoError(_no_frame_message(name, vstream, dec))
            frames, exact, vfr = None, False, None
            if count_frames:
                frames, vfr = _count_packets(container, vstream)
                exact = True
            info = _info_from(container, vstream, first, name, frames, exact)
            if count_frames:
                info.vfr = vfr
            return info
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{name}: corrupt or unreadable input: {_err_text(e)}") from e


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
        if pkt.size == 0:
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


@dataclass
class _Frame:
    array: np.ndarray
    pts: int | None
    alpha: np.ndarray | None = None


class _Decoder:
    """Per-packet decoding of one video stream; other streams' packets go to ``side``.

    Feeds every packet to the decoder, including ``dts=None`` ones and the final empty flush
    packet, and counts (instead of raising) per-packet decode errors, so that one damaged
    packet neither stops the decode nor shifts the timing of the frames after it.
    """

    def __init__(
        self,
        container: Any,
        vstream: Any,
        side_streams: list[Any],
        *,
        deinterlace: bool,
        strict: bool,
        name: str,
        side: collections.deque[Any] | None = None,
    ):
        self.container = container
        self.vstream = vstream
        self.side_streams = side_streams
        self.side = side
        self.deinterlace = deinterlace
        self.strict = strict
        self.name = name
        self.bad_packets = 0
        self.last_bad: str | None = None
        self.read_error: str | None = None
        self.frames_decoded = 0
        self.min_pts: int | None = None  # of the decoded frames, in the stream time base
        self.max_pts: int | None = None
        self.last_step = 0  # pts step to the latest frame (the frame duration near the end)
        self.deinterlacing = False
        self.stop = threading.Event()
        self._gen = self._frames()
        self._pending: list[Any] = []
        self._graph: Any = None

    def first_frame(self) -> Any | None:
        """Decode up to the first frame (kept for :meth:`frames`)."""
        for item in self._gen:
            self._pending.append(item)
            return item[0]
        return None

    def frames(self) -> Iterator[tuple[Any, int | None]]:
        """``(frame, pts)`` pairs in presentation order; ``pts`` is in the stream time base."""
        while self._pending:
            yield self._pending.pop(0)
        yield from self._gen

    def _bad(self, e: BaseException) -> None:
        self.bad_packets += 1
        self.last_bad = _err_text(e)
        if self.strict:
            raise VideoError(
                f"{self.name}: corrupt video packet ({self.last_bad}); --strict stops here"
            ) from e

    def _decode(self, pkt: Any) -> list[Any]:
        try:
            return list(self.vstream.codec_context.decode(pkt))
        except av.error.EOFError:
            return []
        except (av.error.FFmpegError, ValueError, IndexError) as e:
            self._bad(e)
            return []

    def _raw_frames(self) -> Iterator[Any]:
        streams = [self.vstream, *self.side_streams]
        vindex = self.vstream.index
        flushed = False
        try:
            for pkt in self.container.demux(streams):
                if self.stop.is_set():
                    return
                if pkt.stream.index != vindex:
                    if pkt.size and self.side is not None:
                        self.side.append(pkt)
                    continue
                if pkt.size == 0:
                    flushed = True
                yield from self._decode(pkt)
        except VideoError:
            raise
        except Exception as e:
            # A read error in the middle of the file: keep what was decoded, then flush.
            if isinstance(e, (av.error.FFmpegError, OSError, UnicodeDecodeError, IndexError)):
                self.read_error = _err_text(e)
                if self.strict:
                    raise VideoError(
                        f"{self.name}: read error after {self.frames_decoded} frames "
                        f"({self.read_error}); --strict stops here"
                    ) from e
            else:
                raise
        if not flushed and not self.stop.is_set():
            yield from self._decode(None)

    def _setup_graph(self, frame: Any) -> None:
        g = av.filter.Graph()
        src = g.add_buffer(template=self.vstream)
        bw = g.add("bwdif", "mode=send_frame:parity=auto:deint=interlaced")
        sink = g.add("buffersink")
        src.link_to(bw)
        bw.link_to(sink)
        g.configure()
        self._graph = g

    def _pull(self) -> Iterator[Any]:
        while True:
            try:
                yield self._graph.pull()
            except (av.error.BlockingIOError, BlockingIOError, av.error.EOFError):
                return

    def _frames(self) -> Iterator[tuple[Any, int | None]]:
        # bwdif in send_frame mode gives one frame per frame in order, in its own time base:
        # the input pts travel beside it in a FIFO.
        fifo: collections.deque[int | None] = collections.deque()
        for frame in self._raw_frames():
            self.frames_decoded += 1
            pts = frame.pts
            if pts is not None and (self.max_pts is None or pts > self.max_pts):
                if self.max_pts is not None:
                    self.last_step = pts - self.max_pts
                self.max_pts = pts
            if pts is not None and (self.min_pts is None or pts < self.min_pts):
                self.min_pts = pts
            if self._graph is None and self.deinterlace and frame.interlaced_frame:
                try:
                    self._setup_graph(frame)
                    self.deinterlacing = True
                except Exception:
                    self._graph = None
                    self.deinterlace = False
            if self._graph is not None:
                fifo.append(frame.pts)
                self._graph.push(frame)
                for out in self._pull():
                    yield out, fifo.popleft()
            else:
                yield frame, frame.pts
        if self._graph is not None and not self.stop.is_set():
            self._graph.push(None)
            for out in self._pull():
                yield out, fifo.popleft()


def _to_rgb(frame: Any, deep: bool, want_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB array (uint8, or uint16 when ``deep``) plus the alpha plane when asked for."""
    kw: dict[str, Any] = {}
    rng = int(frame.color_range or 0)
    if rng in (1, 2) and frame.format.name not in ("rgb24", "rgba", "bgra", "rgb48le", "gbrp"):
        kw["src_color_range"] = rng
    if want_alpha:
        fmt = "rgba64le" if deep else "rgba"
        arr = frame.to_ndarray(format=fmt, **kw)
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    return frame.to_ndarray(format="rgb48le" if deep else "rgb24", **kw), None


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a still image (PNG, JPEG, WebP, BMP, TIFF) as RGB plus optional alpha.

    Returns ``(rgb, alpha)``: ``rgb`` is ``(H, W, 3)`` uint8, or uint16 for 16-bit images;
    ``alpha`` is ``(H, W)`` of the same dtype, or ``None`` when the image has none.
    """
    container, name, _ = _open_input(path)
    try:
        with container:
            vstream = _pick_video_stream(container, name)
            dec = _Decoder(container, vstream, [], deinterlace=False, strict=False, name=name)
            frame = dec.first_frame()
            if frame is None:
                raise VideoError(f"{name}: no decodable image")
            deep = _bits(frame.format) > 8
            return _to_rgb(frame, deep, _has_alpha(frame.format))
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{name}: corrupt or unreadable image: {_err_text(e)}") from e


def _encode_image_bytes(
    ext: str, rgb: np.ndarray, alpha: np.ndarray | None, name: str
) -> tuple[bytes, list[str]]:
    warnings: list[str] = []
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16):
        raise UsageError(
            f"{name}: image must be (H, W, 3) uint8 or uint16, got {rgb.shape} {rgb.dtype}"
        )
    h, w = rgb.shape[:2]
    deep = rgb.dtype == np.uint16
    if alpha is not None and alpha.shape != (h, w):
        raise UsageError(f"{name}: alpha shape {alpha.shape} does not match image {(h, w)}")
    if ext == ".png":
        if alpha is not None:
            a = alpha.astype(rgb.dtype)
            arr = np.ascontiguousarray(np.dstack([rgb, a]))
            src_fmt, dst_fmt = ("rgba64le", "rgba64be") if deep else ("rgba", "rgba")
        else:
            arr = np.ascontiguousarray(rgb)
            src_fmt, dst_fmt = ("rgb48le", "rgb48be") if deep else ("rgb24", "rgb24")
        frame = av.VideoFrame.from_ndarray(arr, format=src_fmt)
        if dst_fmt != src_fmt:
            frame = frame.reformat(format=dst_fmt)
        cc = av.CodecContext.create("png", "w")
        cc.width, cc.height, cc.pix_fmt = w, h, dst_fmt
    elif ext in (".jpg", ".jpeg"):
        if alpha is not None:
            warnings.append(f"{name}: JPEG has no alpha channel; alpha dropped")
        if deep:
            warnings.append(f"{name}: JPEG is 8-bit; 16-bit image reduced to 8 bits")
            rgb = (rgb.astype(np.uint32) * 255 + 32767) // 65535
            rgb = rgb.astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuvj444p" if (w % 2 or h % 2) else "yuvj420p")
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt = w, h, frame.format.name
        cc.qscale = True
        cc.global_quality = 2 * 118  # q=2 (FF_QP2LAMBDA = 118): visually lossless
    else:
        raise UsageError(f"{name}: cannot write images of type '{ext}' (use .png or .jpg)")
    cc.time_base = Fraction(1, 25)
    frame.pts = 0
    frame.time_base = cc.time_base
    packets = list(cc.encode(frame)) + list(cc.encode(None))
    data = b"".join(bytes(p) for p in packets)
    if not data:
        raise VideoError(f"{name}: the image encoder produced no data")
    return data, warnings


def _write_atomic_bytes(path: str, data: bytes, *, overwrite: bool = True) -> None:
    d = os.path.dirname(os.path.abspath(path)) or "."
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite)
        _fsync_dir(d)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_image(
    path: str | os.PathLike[str], rgb: np.ndarray, alpha: np.ndarray | None = None
) -> None:
    """Write ``rgb`` (and ``alpha``) as PNG or JPEG, chosen by the extension, atomically.

    16-bit arrays make 16-bit PNGs (JPEG is reduced to 8 bits). The file appears complete
    or not at all. Raises :class:`VideoError` when the folder is not writable.
    """
    p = os.fspath(path)
    data, _ = _encode_image_bytes(Path(p).suffix.lower(), rgb, alpha, p)
    try:
        _write_atomic_bytes(p, data)
    except OSError as e:
        raise VideoError(f"{p}: cannot write: {_err_text(e)}") from e


def _resize_plane(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear (triangle filter, area-like when shrinking is not needed) plane resize."""
    if a.shape == (h, w):
        return a.copy()
    src = a.astype(np.float32)

    def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        i0 = np.floor(x).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        t = (x - i0).astype(np.float32)
        return i0, i1, t

    r0, r1, rt = axis_weights(a.shape[0], h)
    c0, c1, ct = axis_weights(a.shape[1], w)
    rows = src[r0] * (1 - rt)[:, None] + src[r1] * rt[:, None]
    out = rows[:, c0] * (1 - ct)[None, :] + rows[:, c1] * ct[None, :]
    info = np.iinfo(a.dtype) if np.issubdtype(a.dtype, np.integer) else None
    if info is not None:
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(a.dtype)


# --------------------------------------------------------------------------------------------
# Output paths
# --------------------------------------------------------------------------------------------


def resolve_output_path(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None) -> Path:
    """Where the output of ``src`` goes.

    - ``dst`` is ``None``: beside the input, as ``<stem>_x4<ext>``.
    - ``dst`` is an existing folder, or ends with a path separator: inside it, under the
      input's file name.
    - ``"-"`` stays ``"-"`` (standard output); anything else is taken as the file name.
    """
    s = os.fspath(src)
    if dst is None:
        if s == "-":
            raise UsageError("reading from standard input needs an output path (or '-')")
        p = Path(s)
        return p.with_name(f"{p.stem}_x4{p.suffix}")
    d = os.fspath(dst)
    if d == "-":
        return Path("-")
    if os.path.isdir(d) or d.endswith((os.sep, "/")):
        if s == "-":
            raise UsageError("reading from standard input: give an output file name, not a folder")
        return Path(d) / Path(s).name
    return Path(d)


_LIVE_TEMPS: set[str] = set()
_LIVE_TEMPS_LOCK = threading.Lock()


def _temp_path(final: str) -> str:
    p = Path(os.path.abspath(final))
    token = secrets.token_hex(4)
    tmp = str(p.with_name(f".{p.stem}.adcvsr-{os.getpid()}-{token}.part{p.suffix}"))
    with _LIVE_TEMPS_LOCK:
        _LIVE_TEMPS.add(tmp)
    return tmp


def remove_live_temps() -> list[str]:
    """Delete the temporary outputs this process has made and not yet published or removed.

    For a last-resort exit (a signal arrived while the main thread is stuck in one long native
    call and cannot run its own cleanup): published temps were renamed away and no longer exist
    under their temporary names, so only unfinished ones are touched. Safe from any thread.
    """
    removed = []
    with _LIVE_TEMPS_LOCK:
        paths = sorted(_LIVE_TEMPS)
        _LIVE_TEMPS.clear()
    for tmp in paths:
        try:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.unlink(tmp)
            removed.append(tmp)
        except FileNotFoundError:
            pass
        except OSError:
            pass
    return removed


def _publish(tmp: str, final: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails with EEXIST if something appeared meanwhile
    except FileExistsError:
        raise OutputExists(f"{final}: output exists ({_EXISTS_HINT})") from None
    except OSError:
        if os.path.lexists(final):
            raise OutputExists(f"{final}: output exists ({_EXISTS_HINT})") from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


_PART_RE = re.compile(r"^\..*\.adcvsr-(\d+)-[0-9a-f]{8}\.part(\.[^.]*)?$")


def remove_stale_parts(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary ``.adcvsr-<pid>-*.part`` files (or sequence folders) left in
    ``folder`` by runs whose process is gone (a kill -9, a power cut). Returns what was
    removed; files of live processes are left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PART_RE.match(entry.name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                for child in os.scandir(path):
                    os.unlink(child.path)
                os.rmdir(path)
            else:
                os.unlink(path)
            removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _fsync_dir(d: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Encoding choices
# --------------------------------------------------------------------------------------------


def _parse_bitrate(text: str) -> int:
    t = text.strip().lower()
    mult = 1
    if t.endswith("k"):
        mult, t = 1000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    elif t.endswith("g"):
        mult, t = 1_000_000_000, t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise UsageError(f"bitrate '{text}' is not a number such as 8M or 2500k") from None
    if value <= 0:
        raise UsageError(f"bitrate '{text}' must be positive")
    return int(value)


def _codec_formats(codec: str) -> list[str]:
    try:
        c = av.Codec(codec, "w")
    except Exception:
        raise UsageError(f"unknown video encoder '{codec}'") from None
    if c.type != "video":
        raise UsageError(f"'{codec}' is not a video encoder")
    return [f.name for f in (c.video_formats or [])]


def _chroma(fmt_name: str) -> str:
    try:
        f = av.VideoFormat(fmt_name, 16, 16)
    except Exception:
        return "420"
    if f.is_rgb or len(f.components) < 3:
        return "420"
    cw, ch = f.chroma_width(), f.chroma_height()
    if cw == 16 and ch == 16:
        return "444"
    if ch == 16:
        return "422"
    return "420"


def _choose_pix_fmt(
    opts: EncodeOptions,
    codec: str,
    info: MediaInfo,
    out_w: int,
    out_h: int,
    warn: Callable[[str], None],
) -> str:
    formats = _codec_formats(codec)
    if opts.pix_fmt:
        pix = opts.pix_fmt
        if formats and pix not in formats:
            raise UsageError(
                f"encoder {codec} cannot write pixel format {pix} (it can: {', '.join(formats)})"
            )
        with contextlib.suppress(Exception):
            if _bits(av.VideoFormat(pix)) < info.bit_depth:
                warn(f"pixel format {pix} has fewer bits than the {info.bit_depth}-bit input")
    else:
        deep = info.bit_depth > 8
        chroma = _chroma(info.pix_fmt)
        base = {"420": "yuv420p", "422": "yuv422p", "444": "yuv444p"}[chroma]
        wanted = []
        if deep:
            bits = 12 if info.bit_depth >= 12 else 10
            wanted += [f"{base}{bits}le", f"{base}10le", "yuv420p10le"]
        wanted += [base, "yuv420p"]
        pix = next((p for p in wanted if not formats or p in formats), formats[0])
        if deep and _bits(av.VideoFormat(pix)) < min(info.bit_depth, 10):
            warn(
                f"encoder {codec} has no >8-bit format; the {info.bit_depth}-bit input is written as {pix}"
            )
        elif deep and _bits(av.VideoFormat(pix)) < info.bit_depth:
            warn(
                f"encoder {codec} writes at most {_bits(av.VideoFormat(pix))} bits; {info.bit_depth}-bit input reduced"
            )
    try:
        fmt = av.VideoFormat(pix, 16, 16)
    except Exception:
        raise UsageError(f"unknown pixel format '{pix}'") from None
    # Odd sizes: 4:2:0 / 4:2:2 encoders refuse to open (reliability.md F17).
    if len(fmt.components) >= 3 and not fmt.is_rgb:
        need_w = fmt.chroma_width() != 16
        need_h = fmt.chroma_height() != 16
        if (need_w and out_w % 2) or (need_h and out_h % 2):
            alt = _SUBSAMPLED_TO_444.get(pix)
            if alt and (not formats or alt in formats):
                warn(f"output size {out_w}x{out_h} is odd; writing {alt} instead of {pix}")
                pix = alt
            else:
                raise UsageError(
                    f"output size {out_w}x{out_h} is odd and {codec} cannot use {pix} for it"
                )
    return pix


def _codec_options(opts: EncodeOptions, codec: str) -> dict[str, str]:
    o: dict[str, str] = {}
    crf = opts.crf if opts.crf is not None else (None if opts.bitrate else 18)
    if codec in ("libx264", "libx264rgb", "libx265", "h264", "hevc"):
        if crf is not None:
            o["crf"] = str(crf)
        o["preset"] = opts.preset or "medium"
        if codec in ("libx265", "hevc"):
            o["x265-params"] = "log-level=error"
    elif codec in ("libvpx-vp9", "libvpx"):
        if crf is not None:
            o["crf"] = str(crf)
            if not opts.bitrate:
                o["b"] = "0"
        o["row-mt"] = "1"
        if opts.preset:
            o["deadline"] = opts.preset
    elif codec in ("libsvtav1", "av1"):
        if crf is not None:
            o["crf"] = str(crf)
        if opts.preset:
            o["preset"] = opts.preset
        o["svtav1-params"] = "log-level=1"
    else:
        if opts.crf is not None:
            o["crf"] = str(opts.crf)
        if opts.preset:
            o["preset"] = opts.preset
    o.update({str(k): str(v) for k, v in opts.encoder_options.items()})
    return o


def _default_codec(fmt: str, bit_depth: int = 8) -> str:
    if fmt == "webm":
        # The wheel's libvpx is 8-bit only; AV1 (also valid in WebM) keeps 10 bits.
        return "libsvtav1" if bit_depth > 8 else "libvpx-vp9"
    return "libx264"


def _stream_label(s: Any) -> str:
    md = s.metadata or {}
    codec = s.codec_context.name if s.codec_context is not None else None
    if codec is None:
        with contextlib.suppress(Exception):
            codec = s.codec.name
    parts = [f"#{s.index} {s.type} ({codec or 'unknown codec'}"]
    if md.get("language") and md.get("language") != "und":
        parts.append(f", {md['language']}")
    if md.get("title"):
        parts.append(f", '{md['title']}'")
    if md.get("filename"):
        parts.append(f", '{md['filename']}'")
    return "".join(parts) + ")"


def _copy_tags(dst: Any, src: dict[str, str], drop: set[str]) -> None:
    for k, v in (src or {}).items():
        if k.lower() in drop or k.lower().startswith("_statistics"):
            continue
        with contextlib.suppress(Exception):
            dst[k] = v


# --------------------------------------------------------------------------------------------
# Sinks: where the processed frames go
# --------------------------------------------------------------------------------------------


class _Side:
    """A non-video input stream and what we do with it."""

    def __init__(self, stream: Any, mode: str, optional: bool = False):
        self.stream = stream
        self.mode = mode  # "copy" or "transcode"
        self.optional = (
            optional  # data, attachments, cover art: dropped (with a warning) if refused
        )
        self.out: Any = None
        self.muxed = 0
        self.label = _stream_label(stream)


class _Shared:
    """State shared by the threads of one transcode."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.meta: collections.deque[tuple[int | None, np.ndarray | None]] = collections.deque()
        self.side: collections.deque[Any] = collections.deque()
        self.seconds_decode = 0.0
        self.seconds_encode = 0.0

    def fail(self, e: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = e
        self.stop.set()


class _ContainerSink:
    """Writes the video (and the copied streams) into a container: a file, stdout or an
    object."""

    def __init__(
        self,
        *,
        target: str,
        final: str | None,
        pipe: Any,
        fmt: str,
        name: str,
        info: MediaInfo,
        in_container: Any,
        vstream: Any,
        sides: list[_Side],
        opts: EncodeOptions,
        out_w: int,
        out_h: int,
        shared: _Shared,
        warn: Callable[[str], None],
    ):
        self.target = target  # path of the temp file, or "" for a pipe
        self.final = final
        self.pipe = pipe
        self.fmt = fmt
        self.name = name
        self.info = info
        self.in_container = in_container
        self.vstream = vstream
        self.sides = sides
        self.opts = opts
        self.out_w, self.out_h = out_w, out_h
        self.shared = shared
        self.warn = warn
        self.out: Any = None
        self.ostream: Any = None
        self.dropped: list[str] = []
        self._sbi: dict[int, _Side] | None = None
        self.tb = info.time_base or Fraction(1, 90000)
        self.last_pts: int | None = None
        self.frames = 0
        self.pts_fixed = 0
        self.codec = ""
        self.pix_fmt = ""
        self.dst_cs: int | None = None
        self.dst_range: int | None = None
        self.first_pts: int | None = None

    # -- setup (main thread) -------------------------------------------------------------
    def open(self) -> None:
        opts, info = self.opts, self.info
        codec = opts.codec or _default_codec(self.fmt, info.bit_depth)
        pix = _choose_pix_fmt(opts, codec, info, self.out_w, self.out_h, self.warn)
        self.codec, self.pix_fmt = codec, pix
        container_options: dict[str, str] = {}
        if self.pipe is not None and self.fmt in _MP4_FAMILY:
            container_options["movflags"] = _FRAGMENTED_MOVFLAGS
        try:
            if self.pipe is not None:
                self.out = av.open(
                    self.pipe, "w", format=self.fmt, container_options=container_options
                )
            else:
                self.out = av.open(
                    self.target, "w", format=self.fmt, container_options=container_options
                )
        except Exception as e:
            raise _wrap_write_error(e, self.name) from e
        out = self.out
        _copy_tags(out.metadata, dict(self.in_container.metadata or {}), _DROP_CONTAINER_TAGS)
        try:
            chapters = self.in_container.chapters()
            if chapters:
                out.set_chapters(chapters)
        except Exception as e:
            self.warn(f"{self.name}: chapters not copied ({_err_text(e)})")

        rate = info.avg_rate or Fraction(25)
        if rate.denominator > 1_000_000:
            rate = rate.limit_denominator(1001)
        try:
            ost = out.add_stream(codec, rate=rate, options=_codec_options(opts, codec))
        except ValueError as e:
            raise UsageError(
                f"{self.name}: the {self.fmt} container cannot hold {codec} video ({e})"
            ) from e
        except Exception as e:
            raise UsageError(f"cannot use video encoder '{codec}': {_err_text(e)}") from e
        cc = ost.codec_context
        ost.width, ost.height, ost.pix_fmt = self.out_w, self.out_h, pix
        cc.time_base = self.tb
        with contextlib.suppress(Exception):
            ost.time_base = self.tb
        if opts.bitrate:
            cc.bit_rate = _parse_bitrate(opts.bitrate)
        if info.sar and info.sar != 1:
            cc.sample_aspect_ratio = info.sar
        # Colour tags, and the matrix/range the RGB -> YUV conversion must use.
        for attr, val, unset in (
            ("color_primaries", info.color_primaries, 2),
            ("color_trc", info.color_trc, 2),
            ("colorspace", info.colorspace, 2),
        ):
            if val and val != unset:
                with contextlib.suppress(Exception):
                    setattr(cc, attr, val)
        full_range = info.color_range == 2 or info.pix_fmt.startswith("yuvj")
        if not av.VideoFormat(pix).is_rgb:
            if full_range:
                with contextlib.suppress(Exception):
                    cc.color_range = 2
                self.dst_range = 2
            else:
                if info.color_range == 1:
                    with contextlib.suppress(Exception):
                        cc.color_range = 1
                self.dst_range = 1
            if info.colorspace in (1, 4, 5, 6, 7, 9, 10):
                self.dst_cs = info.colorspace
        if info.rotation:
            try:
                ost.set_display_rotation(info.rotation)
            except Exception as e:
                self.warn(f"{self.name}: rotation {info.rotation} not kept ({_err_text(e)})")
        _copy_tags(ost.metadata, dict(self.vstream.metadata or {}), _DROP_STREAM_TAGS)
        self.ostream = ost
        self._add_sides()
        try:
            out.start_encoding()
        except Exception as e:
            if isinstance(e, (OSError,)) and not isinstance(e, av.error.FFmpegError):
                raise _wrap_write_error(e, self.name) from e
            raise VideoError(
                f"{self.name}: cannot start writing {self.fmt} with {codec} {pix} "
                f"{self.out_w}x{self.out_h}: {_err_text(e)}"
            ) from e

    def _add_sides(self) -> None:
        kept = []
        for side in self.sides:
            s = side.stream
            if side.mode == "copy":
                problem = _container_refuses(self.fmt, s)
                if problem is not None and side.optional:
                    self.dropped.append(side.label)
                    self.warn(
                        f"{side.label}: the {self.fmt} container cannot hold this stream; dropped"
                    )
                    continue
                if problem is not None:
                    raise _cannot_hold(self.name, self.fmt, side, problem)
            kept.append(side)
            try:
                if side.mode == "transcode":
                    acodec = self.opts.audio_codec or "aac"
                    icc = s.codec_context
                    # A layout with no channel order ("2 channels") makes aac refuse to open.
                    channels = icc.layout.nb_channels if icc.layout is not None else 2
                    side.out = self.out.add_stream(
                        acodec,
                        rate=icc.sample_rate or 48000,
                        layout=_DEFAULT_LAYOUTS.get(channels, "stereo"),
                    )
                else:
                    side.out = self.out.add_stream_from_template(s)
            except Exception as e:
                if side.mode == "transcode":
                    raise UsageError(
                        f"{self.name}: cannot transcode {side.label} to "
                        f"{self.opts.audio_codec}: {_err_text(e)}"
                    ) from e
                raise _cannot_hold(self.name, self.fmt, side, e) from e
            _copy_tags(side.out.metadata, dict(s.metadata or {}), _DROP_STREAM_TAGS)
            with contextlib.suppress(Exception):
                side.out.disposition = s.disposition
        self.sides = kept
        self._sbi = None

    # -- encoder thread ------------------------------------------------------------------
    def write(self, arr: np.ndarray, pts: int | None, alpha: np.ndarray | None) -> None:
        fmt = "rgb48le" if arr.dtype == np.uint16 else "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
        kw: dict[str, Any] = {"format": self.pix_fmt}
        if self.dst_cs is not None:
            kw["dst_colorspace"] = self.dst_cs
        if self.dst_range is not None:
            kw["dst_color_range"] = self.dst_range
        frame = frame.reformat(**kw)
        if pts is None:
            pts = 0 if self.last_pts is None else self.last_pts + 1
        if self.last_pts is not None and pts <= self.last_pts:
            # The encoder and muxer need strictly increasing pts; only broken inputs get here.
            pts = self.last_pts + 1
            self.pts_fixed += 1
        self.last_pts = pts
        if self.first_pts is None:
            self.first_pts = pts
        frame.pts = pts
        frame.time_base = self.tb
        for p in self.ostream.encode(frame):
            self.out.mux(p)
        self.frames += 1
        self.mux_side(float(pts * self.tb))

    def mux_side(self, upto: float | None) -> None:
        side_q = self.shared.side
        while side_q:
            pkt = side_q[0]
            if upto is not None:
                t = pkt.dts if pkt.dts is not None else pkt.pts
                if t is not None and pkt.time_base and float(t * pkt.time_base) > upto:
                    return
            side_q.popleft()
            self._mux_packet(pkt)

    def _mux_packet(self, pkt: Any) -> None:
        side = self._side_by_index.get(pkt.stream.index)
        if side is None:
            return
        if side.mode == "copy":
            pkt.stream = side.out
            self.out.mux(pkt)
            side.muxed += 1
            return
        try:
            frames = side.stream.codec_context.decode(pkt)
        except av.error.FFmpegError:
            return
        for f in frames:
            f.pts = None
            for p in side.out.encode(f):
                self.out.mux(p)
                side.muxed += 1

    @property
    def _side_by_index(self) -> dict[int, _Side]:
        d = self._sbi
        if d is None:
            d = {s.stream.index: s for s in self.sides}
            self._sbi = d
        return d

    def finish(self) -> None:
        for p in self.ostream.encode(None):
            self.out.mux(p)
        self.mux_side(None)
        for side in self.sides:
            if side.mode == "transcode":
                with contextlib.suppress(av.error.FFmpegError):
                    for f in side.stream.codec_context.decode(None):
                        f.pts = None
                        for p in side.out.encode(f):
                            self.out.mux(p)
                            side.muxed += 1
                for p in side.out.encode(None):
                    self.out.mux(p)
                    side.muxed += 1

    # -- main thread after the encoder thread ended ----------------------------------------
    def close(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            out.close()
        if self.pipe is not None:
            with contextlib.suppress(Exception):
                self.pipe.flush()
        elif self.target:
            with open(self.target, "rb+") as fh:
                os.fsync(fh.fileno())

    def verify(self, frames_in: int, first_pts: int | None, last_pts: int | None) -> list[str]:
        """Demux the written file and compare it with what was meant to be written."""
        notes: list[str] = []
        if self.pipe is not None or not self.target:
            return notes
        size = os.path.getsize(self.target)
        if size == 0:
            raise VideoError(f"{self.name}: verification failed: the written file is empty")
        with av.open(self.target, metadata_errors="replace") as c:
            vs = c.streams.video[0]
            counts: dict[int, int] = collections.Counter()
            vpts: list[int] = []
            for pkt in c.demux():
                if pkt.size == 0:
                    continue
                counts[pkt.stream.index] += 1
                if pkt.stream.index == vs.index and pkt.pts is not None:
                    vpts.append(pkt.pts)
            if counts[vs.index] != frames_in:
                raise VideoError(
                    f"{self.name}: verification failed: {counts[vs.index]} video packets written "
                    f"for {frames_in} frames"
                )
            if (
                c.streams.video[0].codec_context.width,
                c.streams.video[0].codec_context.height,
            ) != (
                self.out_w,
                self.out_h,
            ):
                raise VideoError(f"{self.name}: verification failed: wrong frame size written")
            if vpts and first_pts is not None and last_pts is not None:
                otb = vs.time_base
                tol = float(max(otb, self.tb)) + 1e-6
                span_out = float((max(vpts) - min(vpts)) * otb)
                span_in = float((last_pts - first_pts) * self.tb)
                if abs(span_out - span_in) > 2 * tol:
                    raise VideoError(
                        f"{self.name}: verification failed: video spans {span_out:.3f} s, "
                        f"input spans {span_in:.3f} s"
                    )
                shift = float(min(vpts) * otb) - float(first_pts * self.tb)
                if abs(shift) > max(2 * tol, 0.001):
                    notes.append(f"timestamps shifted by {shift:+.3f} s by the {self.fmt} muxer")
            for side in self.sides:
                if side.mode != "copy" or side.out is None:
                    continue
                got = counts.get(side.out.index, 0)
                if side.stream.type in ("audio", "subtitle") and got != side.muxed:
                    raise VideoError(
                        f"{self.name}: verification failed: stream {side.label} has {got} "
                        f"packets, {side.muxed} were copied"
                    )
        return notes

    def abort(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            with contextlib.suppress(BaseException):
                out.close()


def _container_refuses(fmt: str, stream: Any) -> BaseException | None:
    """Try the stream alone in a scratch container in memory: ``supported_codecs`` is not
    strict enough (mp4 lists pcm_s16be, then fails to write its header)."""
    import io

    scratch = None
    try:
        scratch = av.open(io.BytesIO(), "w", format=fmt)
        ost = scratch.add_stream_from_template(stream)
        scratch.start_encoding()
        name = stream.codec_context.name if stream.codec_context is not None else ""
        if name.startswith("pcm_"):
            # PCM payloads are plain samples, so a silent packet is valid; the mp4 muxer only
            # fails at the trailer once it has seen one.
            pkt = av.Packet(bytes(4096))
            pkt.pts = pkt.dts = 0
            pkt.time_base = stream.time_base
            pkt.stream = ost
            scratch.mux(pkt)
        out, scratch = scratch, None
        out.close()
    except Exception as e:
        return e
    finally:
        if scratch is not None:
            with contextlib.suppress(Exception):
                scratch.close()
    return None


def _cannot_hold(name: str, fmt: str, side: _Side, e: BaseException) -> VideoError:
    kind = side.stream.type
    ways = []
    if kind == "audio":
        ways = ["--audio-codec aac to transcode it", "--no-audio to drop audio"]
    elif kind == "subtitle":
        ways = ["--no-subs to drop subtitles"]
    ways.append("another container such as .mkv")
    return VideoError(
        f"{name}: the {fmt} container cannot hold input stream {side.label} ({_err_text(e)}); "
        f"use {', or '.join(ways)}"
    )


def _wrap_write_error(e: BaseException, name: str) -> VideoError:
    if isinstance(e, VideoError):
        return e
    if _is_broken_pipe(e):
        return BrokenOutputPipe(f"{name}: the reader closed the output pipe early")
    n = _os_errno(e)
    if n == errno.ENOSPC:
        return VideoError(f"{name}: no space left on device while writing")
    if n == errno.EFBIG:
        return VideoError(f"{name}: file too large (file size limit reached) while writing")
    if n == errno.EROFS:
        return VideoError(f"{name}: read-only file system")
    if n in (errno.EACCES, errno.EPERM):
        return VideoError(f"{name}: permission denied")
    return VideoError(f"{name}: cannot write: {_err_text(e)}")


class _ImageSink:
    """One frame in, one still image out (PNG or JPEG)."""

    def __init__(
        self, *, target: str, name: str, out_w: int, out_h: int, warn: Callable[[str], None]
    ):
        self.target = target
        self.name = name
        self.out_w, self.out_h = out_w, out_h
        self.warn = warn
        self.frames = 0
        self.codec = "png" if target.lower().endswith(".png") else "mjpeg"
        self.pix_fmt = ""
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.pts_fixed = 0

    def open(self) -> None:
        pass

    def write(self, arr: np.ndarray, pts: int | None, alpha: np.ndarray | None) -> None:
        if self.frames:
            raise VideoError(f"{self.name}: an image output takes one frame; the input has more")
        if alpha is not None:
            alpha = _resize_plane(alpha, self.out_h, self.out_w)
        data, warns = _encode_image_bytes(Path(self.name).suffix.lower(), arr, alpha, self.name)
        for w in warns:
            self.warn(w)
        with open(self.target, "wb") as fh:
            fh.write(data)
        self.frames = 1

    def finish(self) -> None:
        pass

    def close(self) -> None:
        with open(self.target, "rb+") as fh:
            os.fsync(fh.fileno())

    def verify(self, frames_in: int, first_pts: int | None, last_pts: int | None) -> list[str]:
        rgb, _ = read_image(self.target)
        if rgb.shape[:2] != (self.out_h, self.out_w):
            raise VideoError(f"{self.name}: verification failed: wrong image size written")
        return []

    def abort(self) -> None:
        pass


class _SequenceSink:
    """Frames written as numbered PNG files (pattern such as ``out/%06d.png``)."""

    def __init__(
        self,
        *,
        pattern: str,
        tmpdir: str,
        name: str,
        out_w: int,
        out_h: int,
        warn: Callable[[str], None],
    ):
        self.pattern = pattern
        self.tmpdir = tmpdir
        self.name = name
        self.out_w, self.out_h = out_w, out_h
        self.warn = warn
        self.frames = 0
        self.codec = "png"
        self.pix_fmt = ""
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.pts_fixed = 0
        self.ext = Path(pattern).suffix.lower()

    def open(self) -> None:
        pass

    def file_name(self, i: int) -> str:
        return os.path.basename(self.pattern) % i

    def write(self, arr: np.ndarray, pts: int | None, alpha: np.ndarray | None) -> None:
        if alpha is not None:
            alpha = _resize_plane(alpha, self.out_h, self.out_w)
        data, warns = _encode_image_bytes(self.ext, arr, alpha, self.name)
        if self.frames == 0:
            for w in warns:
                self.warn(w)
        with open(os.path.join(self.tmpdir, self.file_name(self.frames + 1)), "wb") as fh:
            fh.write(data)
        self.frames += 1

    def finish(self) -> None:
        pass

    def close(self) -> None:
        _fsync_dir(self.tmpdir)

    def verify(self, frames_in: int, first_pts: int | None, last_pts: int | None) -> list[str]:
        names = set(os.listdir(self.tmpdir))
        want = {self.file_name(i) for i in range(1, frames_in + 1)}
        if names != want:
            raise VideoError(
                f"{self.name}: verification failed: {len(names)} files for {frames_in} frames"
            )
        return []

    def publish(self, overwrite: bool) -> None:
        d = os.path.dirname(os.path.abspath(self.pattern))
        names = [self.file_name(i) for i in range(1, self.frames + 1)]
        if not overwrite:
            clash = [n for n in names if os.path.lexists(os.path.join(d, n))]
            if clash:
                raise OutputExists(f"{os.path.join(d, clash[0])}: output exists ({_EXISTS_HINT})")
        for n in names:
            os.replace(os.path.join(self.tmpdir, n), os.path.join(d, n))
        os.rmdir(self.tmpdir)
        _fsync_dir(d)

    def abort(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# transcode
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
        if frames_in + dec.bad_packets < header and not dec.deinterlacing:
            return f"{name}: input ends early: {frames_in} frames decoded, header says {header}"
        return None
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


_END = object()


class _Stopped(Exception):
    """A worker thread was told to stop."""


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_QUEUE_POLL_S)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_QUEUE_POLL_S)
        except queue.Empty:
            continue


def _drain(q: queue.Queue[Any]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def _queue_len(frame_bytes: int, budget: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, budget // max(1, frame_bytes)))


def _create_temp_file(final: str, name: str) -> str:
    tmp = _temp_path(final)
    folder = os.path.dirname(tmp)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
    except FileNotFoundError as e:
        raise VideoError(f"{name}: output folder {folder} does not exist") from e
    except NotADirectoryError as e:
        raise VideoError(f"{name}: output folder {folder} is not a folder") from e
    except OSError as e:
        raise _wrap_write_error(e, name) from e
    return tmp


def _plan_sides(
    container: Any, vstream: Any, opts: EncodeOptions, warn: Callable[[str], None]
) -> tuple[list[_Side], list[_Side], list[str]]:
    """Split the other input streams into (required, optional) sides and dropped labels."""
    required: list[_Side] = []
    optional: list[_Side] = []
    dropped: list[str] = []
    for s in container.streams:
        if s.index == vstream.index:
            continue
        label = _stream_label(s)
        if s.type == "video":
            cover = s.disposition is not None and bool(
                s.disposition & av.stream.Disposition.attached_pic
            )
            if cover:
                optional.append(_Side(s, "copy", optional=True))
            else:
                dropped.append(label)
                warn(f"{label}: only one video track is upscaled; this one is dropped")
        elif s.type == "audio":
            if opts.no_audio:
                dropped.append(label)
            elif s.codec_context is None:
                dropped.append(label)
                warn(f"{label}: audio stream without codec parameters dropped")
            else:
                required.append(_Side(s, "transcode" if opts.audio_codec else "copy"))
        elif s.type == "subtitle":
            if opts.no_subs:
                dropped.append(label)
            else:
                required.append(_Side(s, "copy"))
        elif s.type in ("data", "attachment"):
            optional.append(_Side(s, "copy", optional=True))
        else:
            dropped.append(label)
            warn(f"{label}: stream of unknown type dropped")
    return required, optional, dropped


def transcode(
    src: str | os.PathLike[str] | IO[bytes],
    dst: str | os.PathLike[str] | IO[bytes],
    process: FrameProcessor,
    *,
    out_size: tuple[int, int] | Callable[[MediaInfo], tuple[int, int]],
    options: EncodeOptions | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    cancel: threading.Event | None = None,
) -> TranscodeReport:
    """Decode ``src``, pass its frames through ``process`` and write them to ``dst``.

    ``src``: a path, ``"-"`` (standard input) or a readable binary file object.
    ``dst``: a path (the container follows the extension; ``.png``/``.jpg`` for an image
    input; a pattern such as ``out/%06d.png`` for a PNG sequence), ``"-"`` (standard output,
    Matroska unless ``options.format`` says otherwise) or a writable binary file object.
    ``out_size``: ``(width, height)`` of the output frames, or a function of the probed
    :class:`MediaInfo` returning it.

    Raises :class:`VideoError` (bad input, unwritable output, verification failure),
    :class:`BrokenOutputPipe` (a ``BrokenPipeError``: the stdout reader went away),
    :class:`OutputExists` / :class:`UsageError` (exit code 2), :class:`Interrupted` when
    ``cancel`` is set, and lets ``KeyboardInterrupt`` and the processor's own exceptions
    through unchanged. In every failure case no temporary file is left and an existing output
    is untouched.
    """
    opts = options or EncodeOptions()
    t_start = time.monotonic()
    emit = on_event or (lambda event: None)
    warnings: list[str] = []
    caller = threading.get_ident()
    deferred: collections.deque[str] = collections.deque()

    def warn(msg: str) -> None:
        # on_event is only ever called from the caller's thread; the workers defer.
        if threading.get_ident() != caller:
            deferred.append(msg)
            return
        flush_warnings()
        warnings.append(msg)
        emit({"type": "warning", "message": msg})

    def flush_warnings() -> None:
        while deferred:
            msg = deferred.popleft()
            warnings.append(msg)
            emit({"type": "warning", "message": msg})

    # ---- where the output goes ---------------------------------------------------------
    name_in = _display(src)
    src_path: str | None = None
    if isinstance(src, (str, os.PathLike)) and os.fspath(src) != "-":
        src_path = os.path.abspath(os.fspath(src))
        _check_input_path(src_path)
    pipe: Any = None
    own_pipe = False
    kind = "file"
    final: str | None = None
    bad_image_ext = False
    if not isinstance(dst, (str, os.PathLike)):
        pipe, kind, name_out = dst, "pipe", _display(dst)
    elif os.fspath(dst) == "-":
        kind, name_out = "pipe", "<stdout>"
        out_buf = sys.stdout.buffer
        try:
            tty = out_buf.isatty()
        except (AttributeError, ValueError, OSError):
            tty = False
        if tty:
            raise UsageError("refusing to write video to a terminal; redirect standard output")
        pipe = out_buf
    else:
        final = os.path.abspath(os.fspath(dst))
        name_out = os.fspath(dst)
        if is_sequence_pattern(final):
            kind = "sequence"
            if Path(final).suffix.lower() != ".png":
                raise UsageError(f"{name_out}: image sequences are written as PNG (use %06d.png)")
        elif is_image_path(final):
            kind = "image"
            # Refused once the input is known: a video gets another message than an image.
            bad_image_ext = Path(final).suffix.lower() not in _WRITABLE_IMAGE_EXTS
        if os.path.isdir(final):
            raise UsageError(f"{name_out}: is a folder; give an output file name inside it")
        if src_path and os.path.exists(final) and _same_file(src_path, final):
            raise VideoError(
                f"{name_out}: output is the input file {name_in}; refusing to overwrite it"
            )
        if os.path.exists(final) and not stat.S_ISREG(os.stat(final).st_mode):
            # A FIFO or a device (/dev/null): written directly, nothing to make atomic.
            kind, own_pipe = "pipe", True
        elif kind != "sequence" and os.path.lexists(final) and not opts.overwrite:
            raise OutputExists(f"{name_out}: output exists ({_EXISTS_HINT})")
        elif kind == "sequence" and not opts.overwrite:
            first_file = os.path.join(os.path.dirname(final), os.path.basename(final) % 1)
            if os.path.lexists(first_file):
                raise OutputExists(f"{first_file}: output exists ({_EXISTS_HINT})")
    fmt = ""
    if kind in ("file", "pipe"):
        if opts.format:
            fmt = opts.format
        elif final is not None:
            ext = Path(final).suffix.lower()
            fmt = _EXT_FORMAT.get(ext, "")
            if not fmt:
                raise UsageError(
                    f"{name_out}: cannot tell the container from '{ext or 'no extension'}'; use one "
                    f"of {', '.join(sorted(_EXT_FORMAT))}, or choose the container with "
                    "--format (format= in EncodeOptions)"
                )
        else:
            fmt = "matroska"
        if fmt not in av.formats_available:
            raise UsageError(f"unknown container format '{fmt}'")
        if own_pipe and fmt in _MP4_FAMILY:
            raise UsageError(
                f"{name_out}: plain MP4 cannot be written to a pipe or device; write to '-' with "
                "--format mp4 (fragmented MP4) or use .mkv"
            )

    # ---- temp output first: fail fast on an unwritable folder ------------------------------
    tmp: str | None = None
    tmpdir: str | None = None
    if kind in ("file", "image"):
        assert final is not None
        tmp = _create_temp_file(final, name_out)
    elif kind == "sequence":
        assert final is not None
        base = _temp_path(os.path.join(os.path.dirname(final), "frames"))
        tmpdir = base[: -len(Path(base).suffix)] if Path(base).suffix else base
        try:
            os.mkdir(tmpdir)
        except FileNotFoundError as e:
            raise VideoError(
                f"{name_out}: output folder {os.path.dirname(final)} does not exist"
            ) from e
        except NotADirectoryError as e:
            raise VideoError(
                f"{name_out}: output folder {os.path.dirname(final)} is not a folder"
            ) from e
        except OSError as e:
            raise _wrap_write_error(e, name_out) from e

    shared = _Shared()
    container: Any = None
    decoder: _Decoder | None = None
    sink: Any = None
    threads: list[threading.Thread] = []
    out_iter: Any = None
    report = TranscodeReport(input=name_in, output=name_out)
    try:
        if own_pipe:
            assert final is not None
            try:
                pipe = open(final, "wb")  # noqa: SIM115 - closed in finally
            except OSError as e:
                raise _wrap_write_error(e, name_out) from e
        # ---- input ---------------------------------------------------------------------
        container, name_in, rec = _open_input(src if src_path is None else src_path)
        name_in = _display(src)
        try:
            vstream = _pick_video_stream(container, name_in)
            vstream.thread_type = "SLICE"
            decoder = _Decoder(
                container,
                vstream,
                [s for s in container.streams if s.index != vstream.index],
                deinterlace=opts.deinterlace,
                strict=opts.strict,
                name=name_in,
                side=shared.side,
            )
            first = decoder.first_frame()
            if first is None:
                if rec is not None and rec.head[4:8] == b"ftyp" and not rec.seekable():
                    raise VideoError(_MP4_PIPE_MESSAGE.format(name=name_in))
                raise VideoError(_no_frame_message(name_in, vstream, decoder))
            info = _info_from(container, vstream, first, name_in, None, False)
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(f"{name_in}: corrupt or unreadable input: {_err_text(e)}") from e
        if kind == "image" and not info.is_image:
            raise UsageError(
                f"{name_out}: {name_in} is a video, and a video cannot be written to an image "
                f"file; write it to a video container such as {Path(name_out).stem}.mkv or "
                f".mp4, or to numbered images with a pattern such as {Path(name_out).stem}_%06d.png"
            )
        if bad_image_ext:
            raise UsageError(
                f"{name_out}: images are written as .png or .jpg, not "
                f"{Path(name_out).suffix.lower()}"
            )
        size = out_size(info) if callable(out_size) else out_size
        out_w, out_h = int(size[0]), int(size[1])
        if out_w <= 0 or out_h <= 0:
            raise UsageError(f"output size {out_w}x{out_h} is not positive")
        if max(out_w, out_h) > _MAX_SIDE and not opts.force:
            raise VideoError(
                f"{name_in}: the output would be {out_w}x{out_h}, over {_MAX_SIDE} pixels on a "
                "side (beyond every codec level); use --force (force=True) to try anyway"
            )
        if max(out_w, out_h) > _WARN_SIDE:
            warn(
                f"{name_in}: the output is {out_w}x{out_h}, over {_WARN_SIDE} pixels on a side: "
                "beyond the levels of most codecs; many players and hardware decoders refuse it"
            )
        if info.interlaced and opts.deinterlace:
            pass  # announced once bwdif actually engages (a flagged frame)
        elif info.interlaced:
            warn(f"{name_in}: interlaced input kept as fields (deinterlacing is off)")
        if info.has_alpha and kind not in ("image", "sequence"):
            _, a0 = _to_rgb(first, False, True)
            if a0 is not None and a0.min() < 255:
                warn(f"{name_in}: the alpha channel is dropped (the output video has none)")

        # ---- output --------------------------------------------------------------------
        dropped: list[str] = []
        if kind in ("file", "pipe"):
            required, optional, dropped = _plan_sides(container, vstream, opts, warn)

            def make_sink(sides: list[_Side]) -> _ContainerSink:
                return _ContainerSink(
                    target=tmp or "",
                    final=final,
                    pipe=pipe,
                    fmt=fmt,
                    name=name_out,
                    info=info,
                    in_container=container,
                    vstream=vstream,
                    sides=sides,
                    opts=opts,
                    out_w=out_w,
                    out_h=out_h,
                    shared=shared,
                    warn=warn,
                )

            sink = make_sink(required + optional)
            try:
                sink.open()
            except VideoError as e:
                # Some muxers refuse a data stream only when the header is written.
                if not optional or kind == "pipe" or isinstance(e, BrokenOutputPipe):
                    raise
                sink.abort()
                for side in optional:
                    dropped.append(side.label)
                    warn(f"{side.label}: the {fmt} container cannot hold this stream; dropped")
                sink = make_sink([_Side(s.stream, s.mode) for s in required])
                sink.open()
            dropped.extend(sink.dropped)
            report.codec, report.pix_fmt, report.container = sink.codec, sink.pix_fmt, fmt
            report.streams_copied = [s.label for s in sink.sides]
        elif kind == "image":
            assert tmp is not None
            sink = _ImageSink(target=tmp, name=name_out, out_w=out_w, out_h=out_h, warn=warn)
            report.codec, report.container = sink.codec, "image"
            for s in container.streams:
                if s.index != vstream.index:
                    dropped.append(_stream_label(s))
        else:
            assert tmpdir is not None and final is not None
            sink = _SequenceSink(
                pattern=final, tmpdir=tmpdir, name=name_out, out_w=out_w, out_h=out_h, warn=warn
            )
            report.codec, report.container = "png", "image2"
            for s in container.streams:
                if s.index != vstream.index:
                    dropped.append(_stream_label(s))
            if dropped:
                warn(
                    f"{name_out}: an image sequence holds video only; dropped {', '.join(dropped)}"
                )
        report.streams_dropped = dropped
        report.width, report.height, report.out_width, report.out_height = (
            info.width,
            info.height,
            out_w,
            out_h,
        )
        deep = info.bit_depth > 8
        want_alpha = info.has_alpha and kind in ("image", "sequence")
        if kind == "image" and Path(name_out).suffix.lower() != ".png":
            want_alpha = False
        emit(
            {
                "type": "start",
                "input": name_in,
                "output": name_out,
                "frames": info.frames,
                "width": info.width,
                "height": info.height,
                "out_width": out_w,
                "out_height": out_h,
                "fps": float(info.avg_rate) if info.avg_rate else None,
                "duration": info.duration,
                "bit_depth": info.bit_depth,
                "dtype": "uint16" if deep else "uint8",
                "rotation": info.rotation,
                "interlaced": info.interlaced,
                "codec": report.codec,
                "pix_fmt": report.pix_fmt,
                "container": report.container,
                "streams_copied": list(report.streams_copied),
                "streams_dropped": list(report.streams_dropped),
            }
        )

        # ---- threads -------------------------------------------------------------------
        frame_bytes = info.width * info.height * 3 * (2 if deep else 1)
        in_q: queue.Queue[Any] = queue.Queue(_queue_len(frame_bytes, _IN_QUEUE_BYTES, 2, 32))
        enc_q: queue.Queue[Any] = queue.Queue(
            _queue_len(out_w * out_h * 3 * (2 if deep else 1), _OUT_QUEUE_BYTES, 2, 16)
        )
        rate = info.avg_rate or Fraction(25)
        step = max(1, round(1 / (rate * info.time_base))) if info.time_base else 1
        dec = decoder
        stop = shared.stop

        def decode_worker() -> None:
            prev: int | None = None
            warned_pts = False
            busy = 0.0
            t0 = time.monotonic()
            try:
                for frame, pts in dec.frames():
                    arr, alpha = _to_rgb(frame, deep, want_alpha)
                    if pts is None:
                        pts = 0 if prev is None else prev + step
                        if not warned_pts:
                            warned_pts = True
                            warn(
                                f"{name_in}: frames without timestamps; timing made up at {float(rate):g} fps"
                            )
                    prev = pts
                    shared.meta.append((pts, alpha))
                    busy += time.monotonic() - t0
                    _put(in_q, arr, stop)
                    t0 = time.monotonic()
                _put(in_q, _END, stop)
            except _Stopped:
                pass
            except BaseException as e:
                if isinstance(e, AdcvsrError):
                    shared.fail(e)
                else:
                    err = VideoError(f"{name_in}: corrupt or unreadable input: {_err_text(e)}")
                    err.__cause__ = e
                    shared.fail(err)
            finally:
                shared.seconds_decode = busy

        def encode_worker() -> None:
            busy = 0.0
            try:
                while True:
                    item = _get(enc_q, stop)
                    if item is _END:
                        break
                    pts, alpha = shared.meta.popleft()
                    t0 = time.monotonic()
                    sink.write(item, pts, alpha)
                    busy += time.monotonic() - t0
                t0 = time.monotonic()
                sink.finish()
                busy += time.monotonic() - t0
            except _Stopped:
                pass
            except BaseException as e:
                if isinstance(e, AdcvsrError):
                    shared.fail(e)
                else:
                    err = _wrap_write_error(e, name_out)
                    err.__cause__ = e
                    shared.fail(err)
            finally:
                shared.seconds_encode = busy

        threads = [
            threading.Thread(target=decode_worker, name="adcvsr-decode", daemon=True),
            threading.Thread(target=encode_worker, name="adcvsr-encode", daemon=True),
        ]
        for t in threads:
            t.start()

        counts = {"in": 0, "out": 0}
        exhausted = False

        def check() -> None:
            if shared.error is not None:
                raise shared.error
            if cancel is not None and cancel.is_set():
                raise Interrupted(f"{name_in}: cancelled")

        def frames_in() -> Iterator[np.ndarray]:
            nonlocal exhausted
            while True:
                try:
                    item = in_q.get(timeout=_QUEUE_POLL_S)
                except queue.Empty:
                    check()
                    continue
                if item is _END:
                    exhausted = True
                    return
                counts["in"] += 1
                yield item

        t_proc = time.monotonic()
        last_emit = 0.0
        announced_deint = False
        want_dtype = np.uint16 if deep else np.uint8
        out_iter = iter(process(frames_in()))
        for out in out_iter:
            check()
            if (
                not isinstance(out, np.ndarray)
                or out.shape != (out_h, out_w, 3)
                or out.dtype != want_dtype
            ):
                got = f"{getattr(out, 'shape', None)} {getattr(out, 'dtype', type(out).__name__)}"
                raise VideoError(
                    f"{name_in}: the frame processor returned {got}, expected "
                    f"({out_h}, {out_w}, 3) {np.dtype(want_dtype).name}"
                )
            counts["out"] += 1
            if counts["out"] > counts["in"]:
                raise VideoError(
                    f"{name_in}: the frame processor returned more frames than it was given"
                )
            while True:
                try:
                    enc_q.put(out, timeout=_QUEUE_POLL_S)
                    break
                except queue.Full:
                    check()
            if not announced_deint and dec.deinterlacing:
                announced_deint = True
                report.deinterlaced = True
                warn(f"{name_in}: interlaced input, deinterlaced with bwdif")
            flush_warnings()
            now = time.monotonic()
            if now - last_emit >= _PROGRESS_INTERVAL_S:
                last_emit = now
                emit(
                    {"type": "progress", "frames_done": counts["out"], "frames_total": info.frames}
                )
        check()
        if not exhausted:
            raise VideoError(
                f"{name_in}: the frame processor stopped after {counts['out']} frames before "
                "reading all input frames"
            )
        if counts["out"] != counts["in"]:
            raise VideoError(
                f"{name_in}: the frame processor returned {counts['out']} frames for "
                f"{counts['in']} input frames"
            )
        while True:
            try:
                enc_q.put(_END, timeout=_QUEUE_POLL_S)
                break
            except queue.Full:
                check()
        while threads[1].is_alive():
            threads[1].join(_QUEUE_POLL_S)
            check()
        threads[0].join(_JOIN_TIMEOUT_S)
        check()
        report.seconds_process = time.monotonic() - t_proc
        flush_warnings()
        emit({"type": "progress", "frames_done": counts["out"], "frames_total": counts["in"]})

        # ---- finish, verify, publish ---------------------------------------------------
        try:
            sink.close()
        except Exception as e:
            raise _wrap_write_error(e, name_out) from e
        if own_pipe and pipe is not None:
            try:
                pipe.close()
            except Exception as e:
                raise _wrap_write_error(e, name_out) from e
        report.frames_in = counts["in"]
        report.frames_out = sink.frames
        report.bad_packets = dec.bad_packets
        if sink.frames != counts["in"]:
            raise VideoError(f"{name_out}: {sink.frames} frames written for {counts['in']} decoded")
        try:
            notes = sink.verify(counts["in"], sink.first_pts, sink.last_pts)
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(f"{name_out}: verification failed: {_err_text(e)}") from e
        for n in notes:
            warn(f"{name_out}: {n}")
        if dec.bad_packets:
            warn(
                f"{name_in}: {dec.bad_packets} corrupt video packet(s) skipped "
                f"({dec.last_bad}); {counts['in']} frames decoded"
            )
        if dec.read_error:
            warn(
                f"{name_in}: read error, input ends early after {counts['in']} frames ({dec.read_error})"
            )
        # A read error already said that the input ends early.
        early = (
            None
            if dec.read_error
            else _early_end_message(name_in, info, container, vstream, dec, counts["in"])
        )
        if early is not None:
            if opts.strict:
                raise VideoError(early + "; --strict stops here")
            warn(early)
        if getattr(sink, "pts_fixed", 0):
            warn(
                f"{name_in}: {sink.pts_fixed} frame(s) had non-increasing timestamps; nudged by one tick"
            )
        if kind in ("file", "image"):
            assert tmp is not None and final is not None
            try:
                _publish(tmp, final, opts.overwrite)
            except OutputExists:
                raise
            except OSError as e:
                raise _wrap_write_error(e, name_out) from e
            tmp = None
            _fsync_dir(os.path.dirname(final))
            report.bytes_written = os.path.getsize(final)
        elif kind == "sequence":
            try:
                sink.publish(opts.overwrite)
            except OutputExists:
                raise
            except OSError as e:
                raise _wrap_write_error(e, name_out) from e
            tmpdir = None
        flush_warnings()
        report.warnings = list(warnings)
        report.seconds_decode = shared.seconds_decode
        report.seconds_encode = shared.seconds_encode
        report.seconds_total = time.monotonic() - t_start
        emit({"type": "done", "report": report.to_dict()})
        return report
    except BaseException:
        shared.stop.set()
        if decoder is not None:
            decoder.stop.set()
        if out_iter is not None:
            with contextlib.suppress(BaseException):
                out_iter.close()
        deadline = time.monotonic() + _ABORT_JOIN_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if sink is not None and not (len(threads) > 1 and threads[1].is_alive()):
            sink.abort()  # never close the output under a live encoder thread
        raise
    finally:
        if own_pipe and pipe is not None:
            with contextlib.suppress(Exception):
                pipe.close()
        if container is not None and not any(t.is_alive() for t in threads[:1]):
            with contextlib.suppress(Exception):
                container.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if tmpdir is not None:
            with contextlib.suppress(OSError):
                for n in os.listdir(tmpdir):
                    os.unlink(os.path.join(tmpdir, n))
                os.rmdir(tmpdir)
