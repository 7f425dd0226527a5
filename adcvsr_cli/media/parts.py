"""Media work of a segmented run: scan the input, decode one segment, encode it, join them.

- :func:`scan` decodes the whole input once (video only, as the normal run decodes it) and
  records each frame's timestamp, the keyframes and the scene cuts: the plan needs exact frame
  indices, and a resumed run must find the same frames again.
- :func:`decode_range` opens the input, seeks to the keyframe before a segment's first decoded
  frame and discards frames up to it, so each segment starts without reading what lies before.
- :func:`encode_segment` writes a segment's frames to its own file with the output's encoder.
- :func:`join` copies the segments' video packets into the output, muxes the source's audio,
  subtitles, chapters and tags once, verifies it and publishes it atomically.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..errors import VideoError
from ..workdir import temp_name
from .decode import _Decoder, _to_rgb
from .encode import ContainerSink, YuvTarget
from .hdr import hdr_lost, hdr_options
from .inputs import _open_input, _pick_video_stream
from .outputs import _create_temp_file, _fsync_dir, _publish, _wrap_write_error
from .probe import _info_from
from .seek import seek_frame
from .sides import (
    _DROP_CONTAINER_TAGS,
    _DROP_STREAM_TAGS,
    Side,
    SideMuxer,
    _copy_tags,
    _plan_sides,
)
from .types import EncodeOptions, Frame, MediaInfo

Warn = Callable[[str], None]


@dataclass
class Scan:
    """The input's frames as a normal run decodes them (``pts`` in the stream's time base)."""

    info: MediaInfo
    pts: list[int]
    keyframes: list[int]  # frame indices of keyframes, ascending
    cuts: list[int] = field(default_factory=list)
    unsegmentable: str | None = None  # why this input must run in one piece, if it must

    @property
    def frames(self) -> int:
        return len(self.pts)


def _open_video(src: str) -> tuple[Any, Any, str]:
    container, name, _ = _open_input(src)
    vstream = _pick_video_stream(container, name)
    vstream.thread_type = "SLICE"
    return container, vstream, name


def _decoder(container: Any, vstream: Any, name: str, opts: EncodeOptions) -> _Decoder:
    return _Decoder(
        container, vstream, [], deinterlace=opts.deinterlace, strict=opts.strict, name=name
    )


def scan(
    src: str, opts: EncodeOptions, on_frame: Callable[[np.ndarray], bool] | None = None
) -> Scan:
    """Decode ``src`` once. ``on_frame(rgb)`` sees every frame and returns True at a scene cut."""
    container, vstream, name = _open_video(src)
    try:
        dec = _decoder(container, vstream, name, opts)
        first = dec.first_frame()
        if first is None:
            raise VideoError(f"{name}: no video frame could be decoded")
        info = _info_from(container, vstream, first, name, None, False)
        out = Scan(info=info, pts=[], keyframes=[])
        deep = info.bit_depth > 8
        for frame, pts in dec.frames():
            i = len(out.pts)
            if pts is None:
                out.unsegmentable = "frames without timestamps"
                pts = out.pts[-1] + 1 if out.pts else 0
            elif out.pts and pts <= out.pts[-1]:
                out.unsegmentable = "timestamps that do not increase"
            out.pts.append(int(pts))
            if frame.key_frame:
                out.keyframes.append(i)
            if on_frame is not None and on_frame(_to_rgb(frame, deep, False)[0]):
                out.cuts.append(i)
        if dec.deinterlacing:
            out.unsegmentable = "interlaced input (the deinterlacer looks across frames)"
        elif dec.bad_packets or dec.read_error:
            out.unsegmentable = "corrupt packets"
        if not out.keyframes or out.keyframes[0] != 0:
            out.unsegmentable = out.unsegmentable or "no keyframe at the first frame"
        return out
    finally:
        container.close()


def decode_range(
    src: str, scan_: Scan, start: int, end: int, opts: EncodeOptions
) -> Iterator[np.ndarray]:
    """RGB frames ``start .. end-1`` of ``src`` (indices of ``scan_``), decoded from the keyframe
    before ``start`` (:func:`.seek.seek_frame`). Raises VideoError when the frames found are not
    the scanned ones."""
    deep = scan_.info.bit_depth > 8
    container, vstream, name = _open_video(src)
    try:
        dec = seek_frame(
            container,
            vstream,
            scan_.pts[start],
            lambda _sought: _decoder(container, vstream, name, opts),
            first_pts=scan_.pts[0],
            fresh=True,
            name=name,
        )
        i = start
        for frame, pts in dec.frames():
            if i >= end:
                return
            if pts != scan_.pts[i]:
                raise VideoError(
                    f"{name}: frame {i} has timestamp {pts} on this read, {scan_.pts[i]} when "
                    "the input was scanned; the file changed or decodes differently after a seek"
                )
            yield _to_rgb(frame, deep, False)[0]
            i += 1
        if i < end:
            raise VideoError(f"{name}: the input ended at frame {i}, before {end}")
    finally:
        container.close()


def encode_segment(
    src: str,
    final_path: str,
    frames_for: Callable[[YuvTarget | None], Iterable[tuple[Any, int]]],
    *,
    fmt: str,
    info: MediaInfo,
    size: tuple[int, int],
    opts: EncodeOptions,
    warn: Warn,
) -> int:
    """Encode ``(frame, pts)`` pairs into ``final_path`` (via a temp file); returns frames written.

    ``frames_for(yuv)`` gives the pairs once the encoder is open: ``yuv`` is what it takes as
    planes (``ContainerSink.yuv_target``), so the frames can be those planes, made as a run in
    one piece makes them (bit for bit the same), or else (H, W, 3) RGB arrays."""
    tmp = str(temp_name(Path(final_path)))
    container, vstream, _ = _open_video(src)
    sink = ContainerSink(
        target=tmp,
        pipe=None,
        fmt=fmt,
        name=final_path,
        info=info,
        in_container=container,
        vstream=vstream,
        sides=[],
        opts=opts,
        out_w=size[0],
        out_h=size[1],
        side_queue=collections.deque(),
        warn=warn,
    )
    sink.name_hdr_loss = False  # join() names it once, for the output
    try:
        sink.open()
        for arr, pts in frames_for(sink.yuv_target()):
            sink.write(Frame(arr, pts))
        sink.finish()
        sink.close()
        if sink.pts_fixed:
            raise VideoError(f"{final_path}: {sink.pts_fixed} timestamps had to be changed")
        sink.verify(sink.frames, sink.first_pts, sink.last_pts)
        os.replace(tmp, final_path)
        tmp = ""
        _fsync_dir(os.path.dirname(final_path))
        return sink.frames
    except BaseException:
        sink.abort()
        raise
    finally:
        container.close()
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class _JoinSink(ContainerSink):
    """A container sink whose video is copied from segment files instead of encoded."""

    def __init__(self, template: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.template = template
        self.last_dts: int | None = None

    def open(self) -> None:
        try:
            self.out = av.open(self.target, "w", format=self.fmt)
        except (av.error.FFmpegError, OSError) as e:
            raise _wrap_write_error(e, self.name) from e
        out, info = self.out, self.info
        _copy_tags(out.metadata, dict(self.in_container.metadata or {}), _DROP_CONTAINER_TAGS)
        try:
            chapters = self.in_container.chapters()
            if chapters:
                out.set_chapters(chapters)
        except (av.error.FFmpegError, ValueError) as e:
            self.warn(f"{self.name}: chapters not copied ({e})")
        self.ostream = out.add_stream_from_template(self.template)
        with contextlib.suppress(ValueError):
            self.ostream.time_base = self.template.time_base
        _copy_tags(self.ostream.metadata, dict(self.vstream.metadata or {}), _DROP_STREAM_TAGS)
        self.codec = self.template.codec_context.name
        self.pix_fmt = self.template.codec_context.pix_fmt or ""
        self.tb = info.time_base or self.tb
        self.muxer = SideMuxer(
            self.out, self.fmt, self.name, self.sides, self.side_queue, self.opts, self.warn
        )
        self.sides, self.dropped = self.muxer.sides, self.muxer.dropped
        try:
            out.start_encoding()
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.name}: cannot start writing {self.fmt}: {e}") from e

    def copy(self, pkt: Any) -> None:
        """Mux one video packet of a segment (its pts kept; dts kept increasing across joins)."""
        if self.last_dts is not None and pkt.dts <= self.last_dts:
            # Segments whose encoders reordered by different depths: keep dts increasing.
            pkt.dts = self.last_dts + 1
            if pkt.dts > pkt.pts:
                raise VideoError(
                    f"{self.name}: the segments' frame orders do not join (a packet would be "
                    "decoded after it is shown); rerun with --segment 0"
                )
        self.last_dts = pkt.dts
        t = pkt.pts if pkt.pts is not None else pkt.dts
        if t is not None:
            seconds = float(t * pkt.time_base)
            assert self.muxer is not None
            self.muxer.mux_upto(seconds)
            t = round(Fraction(t) * pkt.time_base / self.tb)  # in the source's time base
            self.first_pts = t if self.first_pts is None else min(self.first_pts, t)
            self.last_pts = t if self.last_pts is None else max(self.last_pts, t)
        pkt.stream = self.ostream
        self.out.mux(pkt)
        self.frames += 1

    def finish(self) -> None:
        assert self.muxer is not None
        self.muxer.finish()


def _side_packets(container: Any, vstream: Any, sides: list[Side]) -> Iterator[Any]:
    streams = [s.stream for s in sides]
    if not streams:
        return
    for pkt in container.demux(streams):
        if pkt.size and pkt.stream.index != vstream.index:
            yield pkt


class _Feed:
    """A deque-like view of the source's side packets, read as the join needs them."""

    def __init__(self, packets: Iterator[Any]) -> None:
        self._it = packets
        self._head: list[Any] = []

    def __bool__(self) -> bool:
        if not self._head:
            nxt = next(self._it, None)
            if nxt is not None:
                self._head.append(nxt)
        return bool(self._head)

    def __getitem__(self, i: int) -> Any:
        return self._head[i]

    def popleft(self) -> Any:
        return self._head.pop(0)


def join(
    src: str,
    parts: list[str],
    dst: str,
    *,
    fmt: str,
    info: MediaInfo,
    size: tuple[int, int],
    frames: int,
    opts: EncodeOptions,
    warn: Warn,
) -> dict[str, Any]:
    """Join segment files ``parts`` (in order) with the source's other streams into ``dst``."""
    tmp = _create_temp_file(dst, dst)
    container, vstream, _ = _open_video(src)
    sink: _JoinSink | None = None
    firsts = [av.open(p) for p in parts[:1]]
    try:
        required, optional, dropped = _plan_sides(container, vstream, opts, warn)
        sink = _JoinSink(
            firsts[0].streams.video[0],
            target=tmp,
            pipe=None,
            fmt=fmt,
            name=dst,
            info=info,
            in_container=container,
            vstream=vstream,
            sides=required + optional,
            opts=opts,
            out_w=size[0],
            out_h=size[1],
            side_queue=collections.deque(),
            warn=warn,
        )
        sink.open()
        if info.hdr is not None and hdr_options(sink.codec, info.hdr, {}) is None:
            warn(hdr_lost(dst, sink.codec))
        assert sink.muxer is not None
        sink.muxer.queue = _Feed(_side_packets(container, vstream, sink.sides))  # type: ignore[assignment]
        extradata = bytes(firsts[0].streams.video[0].codec_context.extradata or b"")
        for p in parts:
            _copy_part(sink, p, extradata)
        sink.finish()
        sink.close()
        sink.verify(frames, sink.first_pts, sink.last_pts)
        if sink.frames != frames:
            raise VideoError(f"{dst}: {sink.frames} frames joined for {frames} decoded")
        _publish(tmp, dst, opts.overwrite)
        tmp = ""
        _fsync_dir(os.path.dirname(os.path.abspath(dst)))
        return {
            "codec": sink.codec,
            "pix_fmt": sink.pix_fmt,
            "container": fmt,
            "streams_copied": [s.label for s in sink.sides],
            "streams_dropped": dropped + sink.dropped,
            "bytes_written": os.path.getsize(dst),
        }
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        for c in firsts:
            c.close()
        container.close()
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _decode_times(pts: list[int]) -> list[int]:
    """Decode timestamps for packets with these presentation timestamps (in decode order).

    Matroska keeps no dts, and a B-frame encoder's packets need them: the k-th packet is
    decoded at the k-th earliest pts, moved back by the reorder delay (the most any packet is
    shown after that), which keeps dts increasing and never after a packet's pts.
    """
    order = sorted(pts)
    shift = max(o - p for o, p in zip(order, pts, strict=True))
    return [o - shift for o in order]


def _copy_part(sink: _JoinSink, part: str, extradata: bytes) -> None:
    with av.open(part) as c:
        vs = c.streams.video[0]
        if bytes(vs.codec_context.extradata or b"") != extradata:
            raise VideoError(
                f"{part}: encoded with other codec parameters than the first segment; "
                "the segments cannot be joined"
            )
        pts = [p.pts for p in c.demux(vs) if p.size]
    if any(p is None for p in pts):
        raise VideoError(f"{part}: a video packet without a timestamp; cannot join")
    dts = iter(_decode_times(pts))
    with av.open(part) as c:
        for pkt in c.demux(c.streams.video[0]):
            if pkt.size:
                pkt.dts = next(dts)
                sink.copy(pkt)
