"""The decode source: an opened input that yields RGB frames with their timestamps, and sets
the other streams' packets aside for the sink to mux.

    source = open_source("in.mkv", deinterlace=True, strict=False)
    try:
        for frame in source.frames(deep=source.info.bit_depth > 8, want_alpha=False,
                                   warn=print):
            ...  # frame.array (H, W, 3) uint8/uint16, frame.pts (input time base)
        early = source.end_message(frames_in)   # "input ends early: ..." or None
    finally:
        source.close()

``source.side`` is the deque of side packets (audio, subtitles, ...) that decoding fills; a
:class:`~adcvsr_cli.media.encode.ContainerSink` takes them from there.
"""

from __future__ import annotations

import collections
import math
import os
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import IO, Any

import av.error
import numpy as np

from ..errors import VideoError
from .common import INPUT_ERRORS, _display, _err_text
from .decode import _Decoder, _to_rgb, unconvertible_matrix
from .icc import input_icc
from .inputs import _MP4_PIPE_MESSAGE, _check_input_path, _open_input, _pick_video_stream
from .probe import _early_end_message, _info_from, _no_frame_message
from .seek import seek_frame
from .types import Frame, MediaInfo

# How far (seconds) side packets may be stored from the video frames of their time: a range reads
# this much before its first frame, and waits this long past its end for a sparse stream
# (subtitles). FFmpeg's muxers hold a packet back at most 10 s (max_interleave_delta).
SIDE_SLACK = 10.0


class Source:
    """An opened input whose first video frame has been decoded (see the module docstring)."""

    def __init__(self, container: Any, vstream: Any, decoder: _Decoder, info: MediaInfo):
        self.container = container
        self.vstream = vstream
        self.decoder = decoder
        self.info = info
        self.name = info.path
        self.side: collections.deque[Any] = (
            decoder.side if decoder.side is not None else (collections.deque())
        )
        self.cut: Any = None  # a ranges.Cut when only part of the input is written
        self.halt = threading.Event()  # stop(): the run ends, side packets too
        # A still image is shown turned as its EXIF orientation says: apply it to the
        # pixels (quarter turns counter-clockwise), so the output needs no rotation tag.
        self.turns = 0
        if info.is_image and info.rotation and info.rotation % 90 == 0:
            self.turns = (info.rotation // 90) % 4
            if self.turns % 2:
                info.width, info.height = info.height, info.width
            info.rotation = 0

    @property
    def first(self) -> Any:
        """The first decoded frame (a PyAV frame), for checks before the run starts."""
        return self.decoder.next_frame

    def frames(
        self, *, deep: bool, want_alpha: bool, warn: Callable[[str], None]
    ) -> Iterator[Frame]:
        """Every frame in presentation order; frames without a timestamp get one made up from
        the frame rate (with one warning)."""
        rate = self.info.avg_rate or Fraction(25)
        tb = self.info.time_base
        step = max(1, round(1 / (rate * tb))) if tb else 1
        prev: int | None = None
        warned = told_fields = told_matrix = False
        for frame, pts in self.decoder.frames():
            matrix = None if told_matrix else unconvertible_matrix(frame)
            if matrix is not None:
                told_matrix = True
                warn(
                    f"{self.name}: its colour matrix ({matrix}) cannot be converted to RGB; "
                    "read as BT.601, so its colours are off"
                )
            if self.decoder.deinterlace_error and not told_fields:
                told_fields = True
                warn(
                    f"{self.name}: interlaced input kept as fields: the deinterlacer cannot "
                    f"take it ({self.decoder.deinterlace_error})"
                )
            arr, alpha = _to_rgb(frame, deep, want_alpha)
            if self.turns:
                arr = np.ascontiguousarray(np.rot90(arr, self.turns))
                if alpha is not None:
                    alpha = np.ascontiguousarray(np.rot90(alpha, self.turns))
            if pts is None:
                pts = 0 if prev is None else prev + step
                if not warned:
                    warned = True
                    warn(
                        f"{self.name}: frames without timestamps; timing made up at "
                        f"{float(rate):g} fps"
                    )
            prev = pts
            yield Frame(arr, pts, alpha)

    @property
    def bad_packets(self) -> int:
        return self.decoder.bad_packets

    def end_message(self, frames_in: int) -> str | None:
        """ "input ends early: ..." when the input stopped before its header says it should."""
        dec = self.decoder
        if dec.read_error:
            return None  # the read error already says that the input ends early
        return _early_end_message(
            self.name, self.info, self.container, self.vstream, dec, frames_in
        )

    def seek(self, pts: int, lead: float = 0.0) -> None:
        """Restart at the frame whose timestamp is ``pts`` (see :func:`.seek.seek_frame`); side
        packets are collected again from the keyframe before it, or ``lead`` seconds before it
        (a badly interleaved file stores audio early). Raises VideoError when no frame with that
        timestamp turns up."""
        tb = self.vstream.time_base
        old = self.decoder
        # Right after opening, the decoder stands at the start with the side packets read so
        # far: a target at the start keeps it (a seek would skip audio stored before frame 0).
        fresh = old.at_start

        def new_decoder(sought: bool) -> _Decoder:
            if not sought:
                return old
            self.side.clear()
            return _Decoder(
                self.container,
                self.vstream,
                old.side_streams,
                deinterlace=old.deinterlace,
                strict=old.strict,
                name=self.name,
                side=self.side,
            )

        first = math.floor((self.info.start_time or 0.0) / tb)
        self.decoder = seek_frame(
            self.container,
            self.vstream,
            pts,
            new_decoder,
            first_pts=first,
            fresh=fresh,
            lead=round(lead / tb),
            name=self.name,
        )

    def stop(self) -> None:
        """Stop reading: decoding, and :meth:`drain_sides` (a cancelled or failed run)."""
        self.halt.set()
        self.decoder.stop.set()

    def drain_sides(self, until: float | None) -> str | None:
        """After the last video frame a range needs: stop decoding, and demux on (packets only,
        nothing decoded) so that side packets stored after that frame still reach the output.

        A badly interleaved file stores audio late, after video frames past the range end.
        Demuxing goes on until every audio stream has a packet at or after ``until`` seconds
        (``None``: to the end of the file). Other side streams (subtitles, data) are sparse,
        and an audio track may end before ``until`` (a shorter commentary): those have no later
        packet, so demuxing ends anyway once some stream is :data:`SIDE_SLACK` seconds past
        ``until`` (what a file interleaves worse than that is lost), or at the file's end, or
        when :meth:`stop` is called. Returns the read error that ended it early, if one did
        (the side packets after it are lost).
        """
        self.decoder.stop.set()
        streams = self.decoder.side_streams
        waiting = {s.index for s in streams if s.type == "audio"}
        sparse = bool({s.index for s in streams} - waiting)
        if not streams:
            return None
        try:
            for pkt in self.container.demux([self.vstream, *streams]):
                if self.halt.is_set():
                    return None
                if pkt.stream.index != self.vstream.index and pkt.size:
                    self.side.append(pkt)
                t = pkt.pts if pkt.pts is not None else pkt.dts
                if until is None or t is None or not pkt.time_base:
                    continue
                sec = float(t * pkt.time_base)
                if sec >= until:
                    waiting.discard(pkt.stream.index)
                if sec >= until + SIDE_SLACK:
                    return None  # sparse streams and audio that ended: nothing more to wait for
                if not waiting and not sparse:
                    return None
        except (av.error.FFmpegError, OSError) as e:
            return _err_text(e)
        return None

    def close(self) -> None:
        self.container.close()


def open_source(
    src: str | os.PathLike[str] | IO[bytes], *, deinterlace: bool, strict: bool
) -> Source:
    """Open ``src`` (a path, ``"-"`` or a binary file object), pick its main video stream and
    decode the first frame. Raises :class:`VideoError` naming the file when it cannot."""
    name = _display(src)
    if isinstance(src, (str, os.PathLike)) and os.fspath(src) != "-":
        src = os.path.abspath(os.fspath(src))
        _check_input_path(src)
    container, _, rec = _open_input(src)
    try:
        vstream = _pick_video_stream(container, name)
        vstream.thread_type = "SLICE"
        decoder = _Decoder(
            container,
            vstream,
            [s for s in container.streams if s.index != vstream.index],
            deinterlace=deinterlace,
            strict=strict,
            name=name,
            side=collections.deque(),
        )
        first = decoder.first_frame()
        if first is None:
            if rec is not None and rec.head[4:8] == b"ftyp" and not rec.seekable():
                raise VideoError(_MP4_PIPE_MESSAGE.format(name=name))
            raise VideoError(_no_frame_message(name, vstream, decoder))
        info = _info_from(container, vstream, first, name, None, False)
        if info.is_image:
            head, whole = (rec.head, rec.whole) if rec is not None else (None, True)
            info.icc = input_icc(src, head, name, whole=whole)
    except BaseException as e:  # closes the input, then re-raises (a VideoError naming it)
        container.close()
        if isinstance(e, INPUT_ERRORS):
            raise VideoError(f"{name}: corrupt or unreadable input: {_err_text(e)}") from e
        raise
    return Source(container, vstream, decoder, info)
