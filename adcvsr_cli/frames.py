"""Decoded RGB frames of a video, exactly as ``adcvsr upscale`` hands them to the network.

The flicker meter and the preview read frames without writing a file; they decode through the
media layer's own decoder (same stream choice, deinterlacing, colour range and bit depth), so a
frame here is the frame the upscaler saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av.error
import numpy as np

from .errors import VideoError
from .media.common import _bits, _err_text
from .media.decode import _Decoder, _to_rgb
from .media.inputs import _open_input, _pick_video_stream
from .media.probe import _no_frame_message
from .media.seek import seek_frame


@dataclass(frozen=True)
class DecodedFrame:
    """One frame: its index in decode order, its time in seconds (None if unknown), RGB pixels."""

    index: int
    time: float | None
    rgb: np.ndarray


def read_frames(
    path: str | os.PathLike[str],
    *,
    deinterlace: bool = True,
    start: int = 0,
    pts: Sequence[int] | None = None,
) -> Iterator[DecodedFrame]:
    """The video frames of ``path`` in presentation order, as (H, W, 3) uint8 or uint16 RGB,
    from frame ``start`` on (a seek to the keyframe before it: give ``pts``, the frame
    timestamps of :func:`frame_pts`, when ``start`` > 0).

    Raises :class:`VideoError` naming the file when it cannot be opened or has no decodable
    video frame.
    """
    container, name, _ = _open_input(os.fspath(path))
    with container:
        try:
            vstream = _pick_video_stream(container, name)
            vstream.thread_type = "SLICE"

            def new_decoder(_sought: bool = False) -> _Decoder:
                return _Decoder(
                    container, vstream, [], deinterlace=deinterlace, strict=False, name=name
                )

            dec = new_decoder()
            first = dec.first_frame()
            if first is None:
                raise VideoError(_no_frame_message(name, vstream, dec))
            deep = _bits(first.format) > 8
            if start > 0:
                assert pts is not None, "read_frames(start=...) needs the frame timestamps"
                dec = seek_frame(
                    container, vstream, pts[start], new_decoder, first_pts=pts[0], name=name
                )
            tb = vstream.time_base
            for i, (frame, t_pts) in enumerate(dec.frames(), start):
                rgb, _ = _to_rgb(frame, deep, False)
                t = float(t_pts * tb) if t_pts is not None and tb is not None else None
                yield DecodedFrame(i, t, rgb)
        except VideoError:
            raise
        except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
            raise VideoError(f"{name}: corrupt or unreadable input: {_err_text(e)}") from e


def frame_times(path: str | os.PathLike[str]) -> list[float]:
    """Presentation times (seconds, from the first frame) of every video frame: a demux pass,
    no decoding. Index ``i`` is the time of the ``i``-th frame :func:`read_frames` yields."""
    pts, tb = frame_pts(path)
    if not pts:
        raise VideoError(f"{os.fspath(path)}: no video frame with a timestamp")
    return [float((p - pts[0]) * tb) for p in pts]


def frame_pts(path: str | os.PathLike[str]) -> tuple[list[int], Fraction]:
    """Sorted presentation timestamps of the video packets (a demux pass) and their time base."""
    container, name, _ = _open_input(os.fspath(path))
    with container:
        try:
            vstream = _pick_video_stream(container, name)
            pts = sorted(p.pts for p in container.demux(vstream) if p.size and p.pts is not None)
        except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
            raise VideoError(f"{name}: corrupt or unreadable input: {_err_text(e)}") from e
        return pts, vstream.time_base
