"""Decoding one video stream per packet into frames; the other streams' packets set aside.

Feeds every packet (``dts=None`` ones and the final flush too), counts per-packet decode
errors instead of stopping, and deinterlaces with bwdif when a frame says it is interlaced.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any

import av
import av.error
import numpy as np

from ..errors import VideoError
from .common import MATRIX_NAMES, SWS_COLORSPACES, _err_text

# WebM keeps a VP8/VP9 alpha plane beside the picture (BlockAdditional, ALPHA_MODE=1); FFmpeg's
# own decoders ignore it, libvpx's read it.
_ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}


def video_decoder(vstream: Any) -> Any:
    """The codec context that decodes ``vstream``: the stream's own, except for VP8/VP9 with
    an alpha channel, which libvpx decodes with its alpha plane (yuva420p)."""
    cc = vstream.codec_context
    tags = {str(k).lower(): v for k, v in (vstream.metadata or {}).items()}
    lib = _ALPHA_DECODERS.get(cc.name if cc is not None else "")
    if lib is None or tags.get("alpha_mode") != "1" or lib not in av.codecs_available:
        return cc
    alt = av.CodecContext.create(lib, "r")
    if cc.extradata:
        alt.extradata = cc.extradata
    return alt


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
        self.codec = video_decoder(vstream)
        self.side_streams = side_streams
        self.side = side
        self.deinterlace = deinterlace
        self.strict = strict
        self.name = name
        self.bad_packets = 0
        self.last_bad: str | None = None
        self.read_error: str | None = None
        self.frames_decoded = 0
        # Packets an edit list cuts away (MP4/MOV: B-frame delay, a copy cut at a
        # non-keyframe): decoded for their references, never shown, so never counted.
        self.discarded = 0
        self.min_pts: int | None = None  # of the decoded frames, in the stream time base
        self.max_pts: int | None = None
        self.last_step = 0  # pts step to the latest frame (the frame duration near the end)
        self.deinterlacing = False
        self.deinterlace_error: str | None = None  # why bwdif could not be set up
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

    @property
    def next_frame(self) -> Any | None:
        """The frame :meth:`frames` hands out next, when it is already decoded."""
        return self._pending[0][0] if self._pending else None

    @property
    def at_start(self) -> bool:
        """Only the first frame decoded, and kept for :meth:`frames` (nothing handed out)."""
        return self.frames_decoded == 1 and len(self._pending) == 1

    def drop_before(self, pts: int) -> tuple[int | None, int]:
        """Decode and drop the frames before timestamp ``pts``: the timestamp of the frame now
        next (kept for :meth:`frames`; None: none left) and how many were dropped."""
        dropped = 0
        while True:
            while self._pending:
                fpts = self._pending[0][1]
                if fpts is not None and fpts >= pts:
                    return int(fpts), dropped
                self._pending.pop(0)
                dropped += 1
            if self.first_frame() is None:
                return None, dropped

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
            return list(self.codec.decode(pkt))
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
                elif pkt.is_discard:
                    self.discarded += 1
                yield from self._decode(pkt)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError, IndexError) as e:
            # A read error in the middle of the file: keep what was decoded, then flush.
            self.read_error = _err_text(e)
            if self.strict:
                raise VideoError(
                    f"{self.name}: read error after {self.frames_decoded} frames "
                    f"({self.read_error}); --strict stops here"
                ) from e
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
                except (av.error.FFmpegError, ValueError) as e:
                    # bwdif refuses this frame's format: the fields are kept (Source warns)
                    self._graph = None
                    self.deinterlace = False
                    self.deinterlace_error = _err_text(e)
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


def unconvertible_matrix(frame: Any) -> str | None:
    """The name of a YUV frame's colour matrix when swscale cannot convert with it (YCgCo,
    ICtCp, ...): :func:`_to_rgb` then reads it as BT.601, and the caller says so."""
    cs = int(frame.colorspace or 2)
    if cs in (0, 2, *SWS_COLORSPACES) or frame.format.is_rgb:
        return None
    return MATRIX_NAMES.get(cs, f"matrix {cs}")


def _to_rgb(frame: Any, deep: bool, want_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB array (uint8, or uint16 when ``deep``) plus the alpha plane when asked for."""
    kw: dict[str, Any] = {}
    if unconvertible_matrix(frame) is not None:
        kw["src_colorspace"] = 5  # swscale refuses the frame's own matrix: BT.601
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
