"""The container sink: encodes the processed frames into a file, standard output or a file
object, muxes the side streams beside them, and verifies what was written.

Every sink (this one, and the image and sequence sinks of :mod:`.images`) has the same
methods, called in this order: ``open()`` (main thread), ``write(frame)`` for every frame and
``finish()`` (the encoder thread), then ``close()`` and ``verify(...)`` (main thread), or
``abort()`` on any failure.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from ..errors import UsageError, VideoError
from .avlog import libav_quiet
from .codecs import (
    _codec_options,
    _parse_bitrate,
    choose_encoder,
    quiet_encoder_logs,
)
from .common import BT601, MATRIX_NAMES, OPEN_OPTIONS, SWS_COLORSPACES, _err_text
from .hdr import HdrMetadata, hdr_lost, hdr_options
from .outputs import _FRAGMENTED_MOVFLAGS, _MP4_FAMILY, _wrap_write_error
from .sides import (
    _DROP_CONTAINER_TAGS,
    _DROP_STREAM_TAGS,
    Side,
    SideMuxer,
    _copy_tags,
    input_timecode,
    timecode_of,
)
from .types import EncodeOptions, Frame, MediaInfo

YuvTarget = tuple[str, int | None, bool]
"""What an encoder takes Y'CbCr frames in: (pixel format, colour matrix, full range)."""


class ContainerSink:
    """Writes the video (and the side streams) into a container: a file, a pipe or an object."""

    def __init__(
        self,
        *,
        target: str,
        pipe: Any,
        fmt: str,
        name: str,
        info: MediaInfo,
        in_container: Any,
        vstream: Any,
        sides: list[Side],
        side_queue: collections.deque[Any],
        opts: EncodeOptions,
        out_w: int,
        out_h: int,
        warn: Callable[[str], None],
        cut: Any = None,
        hdr: HdrMetadata | None = None,
    ):
        self.cut = cut  # a ranges.Cut: side streams and chapters are cut to its span
        self.hdr = hdr if hdr is not None else info.hdr
        # A segment's sink leaves the warning to the join, which names the output once.
        self.name_hdr_loss = True
        self.target = target  # path of the temp file, or "" for a pipe
        self.pipe = pipe
        self.fmt = fmt
        self.name = name
        self.info = info
        self.in_container = in_container
        self.vstream = vstream
        self.sides = sides
        self.side_queue = side_queue
        self.opts = opts
        self.out_w, self.out_h = out_w, out_h
        self.warn = warn
        self.out: Any = None
        self.ostream: Any = None
        self.muxer: SideMuxer | None = None
        self.dropped: list[str] = []
        self.attached: list[str] = []
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
        codec, pix = choose_encoder(
            self.opts, self.fmt, self.info, self.out_w, self.out_h, self.warn
        )
        self.codec, self.pix_fmt = codec, pix
        self.out = self._open_container()
        self._copy_container_metadata()
        self.ostream = self._add_video_stream(codec, pix)
        self.muxer = SideMuxer(
            self.out,
            self.fmt,
            self.name,
            self.sides,
            self.side_queue,
            self.opts,
            self.warn,
            cut=self.cut,
        )
        self.sides = self.muxer.sides
        self.dropped = self.muxer.dropped
        if self.info.icc is not None and self.info.icc.problem:
            self.warn(f"{self.info.icc.source}: {self.info.icc.problem}")
        elif self.info.icc is not None:
            self.warn(
                f"{self.name}: the ICC colour profile '{self.info.icc.name}' of "
                f"{self.info.path} is not kept (a video output has no place for it); write "
                "a .png or .jpg image to keep it"
            )
        self.attached = self.muxer.attached  # covers written as Matroska attachments
        try:
            self.out.start_encoding()
        except (av.error.FFmpegError, ValueError) as e:
            raise VideoError(
                f"{self.name}: cannot start writing {self.fmt} with {codec} {pix} "
                f"{self.out_w}x{self.out_h}: {_err_text(e)}"
            ) from e
        except OSError as e:  # the pipe or file object the header goes to
            raise _wrap_write_error(e, self.name) from e

    def _open_container(self) -> Any:
        container_options: dict[str, str] = {}
        if self.pipe is not None and self.fmt in _MP4_FAMILY:
            container_options["movflags"] = _FRAGMENTED_MOVFLAGS
        where = self.pipe if self.pipe is not None else self.target
        try:
            return av.open(where, "w", format=self.fmt, container_options=container_options)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise _wrap_write_error(e, self.name) from e

    def _copy_container_metadata(self) -> None:
        _copy_tags(self.out.metadata, dict(self.in_container.metadata or {}), _DROP_CONTAINER_TAGS)
        try:
            chapters = self.in_container.chapters()
            if chapters and self.cut is not None:
                chapters = cut_chapters(chapters, self.cut.t_from, self.cut.t_to)
            if chapters:
                self.out.set_chapters(chapters)
        except (av.error.FFmpegError, ValueError, KeyError, TypeError) as e:
            self.warn(f"{self.name}: chapters not copied ({_err_text(e)})")

    def _add_video_stream(self, codec: str, pix: str) -> Any:
        opts, info = self.opts, self.info
        rate = info.avg_rate or Fraction(25)
        if rate.denominator > 1_000_000:
            rate = rate.limit_denominator(1001)
        quiet_encoder_logs(codec)
        options = self._hdr_options(codec, _codec_options(opts, codec))
        try:
            ost = self.out.add_stream(codec, rate=rate, options=options)
        except ValueError as e:
            raise UsageError(
                f"{self.name}: the {self.fmt} container cannot hold {codec} video ({e})"
            ) from e
        except av.error.FFmpegError as e:
            raise UsageError(f"cannot use video encoder '{codec}': {_err_text(e)}") from e
        cc = ost.codec_context
        ost.width, ost.height, ost.pix_fmt = self.out_w, self.out_h, pix
        cc.time_base = self.tb
        # Refused, nothing is lost: the muxer picks its own time base and rescales the pts.
        with contextlib.suppress(OverflowError, ValueError):
            ost.time_base = self.tb
        if opts.bitrate:
            cc.bit_rate = _parse_bitrate(opts.bitrate)
        if info.sar and info.sar != 1:
            cc.sample_aspect_ratio = info.sar
        self._set_colour(cc, pix)
        if info.rotation:
            try:
                ost.set_display_rotation(info.rotation)
            except (av.error.FFmpegError, ValueError, OverflowError) as e:
                self.warn(f"{self.name}: rotation {info.rotation} not kept ({_err_text(e)})")
        _copy_tags(ost.metadata, dict(self.vstream.metadata or {}), _DROP_STREAM_TAGS)
        timecode = input_timecode(self.in_container)
        if timecode is not None and timecode_of(ost) is None:
            ost.metadata["timecode"] = timecode
        return ost

    def _hdr_options(self, codec: str, options: dict[str, str]) -> dict[str, str]:
        if self.hdr is None:
            return options
        kept = hdr_options(codec, self.hdr, options)
        if kept is not None:
            return kept
        if self.name_hdr_loss:
            self.warn(hdr_lost(self.name, codec))
        return options

    def _set_colour(self, cc: Any, pix: str) -> None:
        """Colour tags, and the matrix/range the RGB -> YUV conversion must use. The matrix
        tag is the one the conversion used: an RGB output has none, and a matrix swscale
        cannot convert with (YCgCo, ICtCp, ...) is written and tagged as BT.601, said in a
        warning."""
        info = self.info
        rgb = av.VideoFormat(pix).is_rgb
        cs = info.colorspace if info.colorspace != 2 else None  # 2: unspecified
        if not rgb and cs == 0:  # an RGB input has no matrix: the tag says the one used
            cs = BT601
        if not rgb and cs is not None and cs not in SWS_COLORSPACES:
            self.warn(
                f"{self.name}: the input's colour matrix "
                f"({MATRIX_NAMES.get(cs, cs)}) cannot be used to write {pix}; written and "
                "tagged as BT.601 (smpte170m)"
            )
            cs = BT601
        for attr, val, unset in (
            ("color_primaries", info.color_primaries, 2),
            ("color_trc", info.color_trc, 2),
            ("colorspace", None if rgb else cs, 2),
        ):
            if val and val != unset:
                try:
                    setattr(cc, attr, val)
                except (OverflowError, ValueError) as e:
                    self.warn(f"{self.name}: colour tag {attr}={val} not kept ({e})")
        if rgb:
            return
        full_range = info.color_range == 2 or info.pix_fmt.startswith("yuvj")
        if full_range:
            cc.color_range = 2
            self.dst_range = 2
        else:
            if info.color_range == 1:
                cc.color_range = 1
            self.dst_range = 1
        if cs in SWS_COLORSPACES:
            self.dst_cs = cs

    def yuv_target(self) -> YuvTarget | None:
        """What frames given as planes must be: ``(pix_fmt, colour matrix or None for the
        converter's default, full range)``; None when the encoder takes RGB."""
        if self.dst_range is None:
            return None
        return self.pix_fmt, self.dst_cs, self.dst_range == 2

    # -- encoder thread ------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        arr = frame.array
        if isinstance(arr, tuple):  # planes already in the encoder's format (yuv_target)
            vf = frame_from_planes(arr, self.pix_fmt, self.out_w, self.out_h)
            if self.dst_cs is not None:
                vf.colorspace = self.dst_cs
            if self.dst_range is not None:
                vf.color_range = self.dst_range
        else:
            vf = self._from_rgb(arr)
        pts = self._next_pts(frame.pts)
        vf.pts = pts
        vf.time_base = self.tb
        assert self.muxer is not None
        for p in self.ostream.encode(vf):
            self.muxer.put(p)
        self.frames += 1
        self.muxer.mux_upto(float(pts * self.tb))

    def _from_rgb(self, arr: np.ndarray) -> Any:
        fmt = "rgb48le" if arr.dtype == np.uint16 else "rgb24"
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
        # One thread: with slice threads swscale 9 (FFmpeg 8) now and then leaves the first
        # samples of a slice's first row wrong (garbage, seen at widths not a multiple of 16).
        kw: dict[str, Any] = {"format": self.pix_fmt, "threads": 1}
        if self.dst_cs is not None:
            kw["dst_colorspace"] = self.dst_cs
        if self.dst_range is not None:
            kw["dst_color_range"] = self.dst_range
        return vf.reformat(**kw)

    def _next_pts(self, pts: int | None) -> int:
        if pts is None:
            pts = 0 if self.last_pts is None else self.last_pts + 1
        if self.last_pts is not None and pts <= self.last_pts:
            # The encoder and muxer need strictly increasing pts; only broken inputs get here.
            pts = self.last_pts + 1
            self.pts_fixed += 1
        self.last_pts = pts
        if self.first_pts is None:
            self.first_pts = pts
        return pts

    def finish(self) -> None:
        assert self.muxer is not None
        for p in self.ostream.encode(None):
            self.muxer.put(p)
        self.muxer.finish()

    # -- main thread after the encoder thread ended ----------------------------------------
    def close(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            out.close()
        if self.pipe is not None:
            flush = getattr(self.pipe, "flush", None)
            if flush is not None:
                flush()  # an OSError here (a closed pipe, a full disk) fails the run, named
        elif self.target:
            with open(self.target, "rb+") as fh:
                os.fsync(fh.fileno())

    def verify(self, frames_in: int, first_pts: int | None, last_pts: int | None) -> list[str]:
        """Demux the written file and compare it with what was meant to be written."""
        if self.pipe is not None or not self.target:
            return self._pipe_shift(first_pts)
        if os.path.getsize(self.target) == 0:
            raise VideoError(f"{self.name}: verification failed: the written file is empty")
        # what reading back finds wrong is said by the checks below, in the tool's words
        with libav_quiet(), av.open(self.target, **OPEN_OPTIONS) as c:
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
            if (vs.codec_context.width, vs.codec_context.height) != (self.out_w, self.out_h):
                raise VideoError(f"{self.name}: verification failed: wrong frame size written")
            notes = self._check_times(vpts, vs.time_base, first_pts, last_pts)
            self._check_side_counts(counts)
        return notes

    def _check_times(
        self, vpts: list[int], otb: Fraction, first_pts: int | None, last_pts: int | None
    ) -> list[str]:
        if not vpts or first_pts is None or last_pts is None:
            return []
        tol = float(max(otb, self.tb)) + 1e-6
        span_out = float((max(vpts) - min(vpts)) * otb)
        span_in = float((last_pts - first_pts) * self.tb)
        if abs(span_out - span_in) > 2 * tol:
            raise VideoError(
                f"{self.name}: verification failed: video spans {span_out:.3f} s, "
                f"input spans {span_in:.3f} s"
            )
        shift = float(min(vpts) * otb) - float(first_pts * self.tb)
        return self._shift_note(shift, max(2 * tol, 0.001))

    def _shift_note(self, shift: float, tol: float) -> list[str]:
        if abs(shift) <= tol:
            return []
        return [
            f"timestamps shifted by {shift * 1000:+.0f} ms by the {self.fmt} muxer (it "
            "stores no times before zero; audio and video stay in sync)"
        ]

    def _pipe_shift(self, first_pts: int | None) -> list[str]:
        """What a pipe output cannot be read back for: Matroska and WebM store no times below
        zero beyond a stream's codec delay, so their muxer moves every stream later by what a
        packet has below that (an AAC priming packet; see :func:`.sides._muxer_shift`).
        Fragmented MP4 keeps edit lists (delay_moov), as a file does."""
        if self.muxer is None or first_pts is None:
            return []
        return self._shift_note(self.muxer.shift, max(float(self.tb), 0.001))

    def _check_side_counts(self, counts: dict[int, int]) -> None:
        for side in self.sides:
            if side.mode != "copy" or side.out_index is None:
                continue
            got = counts.get(side.out_index, 0)
            if side.stream.type in ("audio", "subtitle") and got != side.muxed:
                raise VideoError(
                    f"{self.name}: verification failed: stream {side.label} has {got} "
                    f"packets, {side.muxed} were copied"
                )

    def abort(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            # Closing writes the trailer into a file that is deleted next: its errors (a
            # full disk, a closed pipe) change nothing the user keeps.
            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
                out.close()


PlaneSpec = list[tuple[tuple[int, int], np.dtype]]


def plane_spec(pix_fmt: str, width: int, height: int) -> PlaneSpec:
    """(shape, dtype) of each plane of a ``pix_fmt`` frame of ``width`` x ``height``: uint8,
    or little-endian uint16 for more than 8 bits."""
    fmt = av.VideoFormat(pix_fmt)
    dtype = np.dtype("<u2") if fmt.components[0].bits > 8 else np.dtype(np.uint8)
    chroma = (fmt.chroma_height(height), fmt.chroma_width(width))
    return [((height, width), dtype)] + [(chroma, dtype)] * (len(fmt.components) - 1)


def frame_from_planes(planes: tuple[np.ndarray, ...], pix_fmt: str, width: int, height: int) -> Any:
    """A ``pix_fmt`` frame of ``width`` x ``height`` filled from its planes (:func:`plane_spec`),
    copied row by row into the frame's padded lines."""
    want = plane_spec(pix_fmt, width, height)
    got = [(p.shape, p.dtype) for p in planes]
    if got != want:
        raise ValueError(f"{pix_fmt} {width}x{height} takes planes {want}, got {got}")
    vf = av.VideoFrame(width, height, pix_fmt)
    for plane, src in zip(vf.planes, planes, strict=True):
        # line_size (bytes) covers the width plus the alignment padding of each line
        dst = np.frombuffer(memoryview(plane), dtype=src.dtype).reshape(plane.height, -1)
        dst[:, : plane.width] = src
    return vf


def cut_chapters(
    chapters: list[dict[str, Any]], t0: float, t1: float | None
) -> list[dict[str, Any]]:
    """Chapters overlapping ``t0 .. t1`` seconds, clipped to it and moved to start at zero."""
    out = []
    for ch in chapters:
        tb = ch["time_base"]
        start, end = float(ch["start"] * tb), float(ch["end"] * tb)
        if end <= t0 or (t1 is not None and start >= t1):
            continue
        new = dict(ch)
        new["start"] = round((max(start, t0) - t0) / tb)
        new["end"] = round(((min(end, t1) if t1 is not None else end) - t0) / tb)
        out.append(new)
    return out
