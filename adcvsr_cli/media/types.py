"""The media layer's public data types: what a probe learns, how to encode, what a run did."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import UsageError, VideoError
from .hdr import HdrMetadata
from .icc import IccProfile

FrameProcessor = Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]
"""Turns decoded RGB frames into output frames, one for one and in order.

Input frames are ``(H, W, 3)`` arrays, ``uint8`` for 8-bit sources and ``uint16`` (full 16-bit
range) for deeper ones. The function must yield exactly one ``(out_h, out_w, 3)`` frame of the
same dtype per input frame, in order; it may read ahead (hold frames back) as far as it likes.
Where the session's encoder takes Y'CbCr (``Session.yuv_target()``), a frame may instead be its
``(Y, U, V)`` planes in that format.
"""


class BrokenOutputPipe(VideoError, BrokenPipeError):
    """The reader of the output pipe (stdout) went away before the end.

    It is both a :class:`VideoError` and a :class:`BrokenPipeError`, so a command line can
    catch ``BrokenPipeError`` and exit quietly.
    """


class OutputExists(UsageError):
    """The output file exists and ``overwrite`` was not requested (exit code 2)."""


# Demuxers we accept. Playlists (hls), concat and dash are left out on purpose: they make


@dataclass
class Frame:
    """One picture on its way through the layer: RGB ``(H, W, 3)`` uint8 (uint16 for deeper
    sources), or for a container sink with a ``yuv_target()`` its ``(Y, U, V)`` planes already
    in that format; its presentation timestamp in the input video stream's time base, and the
    alpha plane ``(H, W)`` when the output keeps one."""

    array: np.ndarray
    pts: int | None
    alpha: np.ndarray | None = None


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
    icc: IccProfile | None = field(default=None, repr=False)
    """An image's ICC colour profile (PNG, JPEG and WebP inputs)."""
    hdr: HdrMetadata | None = None
    """HDR10 mastering-display and content-light metadata of a PQ or HLG input."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("time_base", "avg_rate", "sar"):
            if d[k] is not None:
                d[k] = str(d[k])
        d["icc"] = self.icc.to_dict() if self.icc is not None else None
        d["hdr"] = self.hdr.to_dict() if self.hdr is not None else None
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
    cut: dict[str, Any] | None = None
    """The range written (``--start`` and the like): first frame, frames, start and end (s)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
