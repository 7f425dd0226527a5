"""Seeking to one exact frame: the keyframe at or before it, then decode and drop up to it.

Used by every partial read of a video: a ``--start`` range, a segment of a segmented run, the
preview's frames and the scene scan around a range. A container's index may point a little late
(B-frames, an index built from decode timestamps), so a seek that lands after the frame is
retried from further back, twice as far each time (one second, two, four, ...; from a ``lead``
the caller asked for: that lead, twice it, four times it, ...) down to the first frame; so is one
that lands on the frame itself when it is deinterlaced (bwdif needs the frame before it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import VideoError
from .avlog import libav_quiet
from .decode import _Decoder


def seek_frame(
    container: Any,
    vstream: Any,
    pts: int,
    new_decoder: Callable[[bool], _Decoder],
    *,
    first_pts: int,
    fresh: bool = False,
    lead: int = 0,
    name: str = "",
) -> _Decoder:
    """A decoder, made by ``new_decoder(sought)`` after the seek, whose next frame has timestamp
    ``pts``.

    ``first_pts``: the timestamp of the stream's first frame; a retry that reaches it decodes
    from the start. ``fresh``: ``container`` stands at its start (nothing read, or only the first
    frame by a decoder ``new_decoder(False)`` may give back), so decoding from the start needs no
    seek: some inputs cannot seek to their start, and a seek to the first keyframe skips the side
    packets stored before it. ``lead``: the first seek goes that many ticks before ``pts``, so
    that side packets stored early reach the caller. The frames before ``pts`` are decoded (they
    are the references of the frames after them) and dropped. Raises :class:`VideoError` naming
    the file when no frame has that timestamp.
    """
    tb = vstream.time_base
    back = max(0, lead)
    while True:
        target = pts - back
        at_start = target <= first_pts
        sought = not (fresh and at_start)
        # libav's complaints while decoding from a keyframe up to the frame (references not
        # there yet, a retry's overshoot) are the seek's business, not the user's news
        with libav_quiet():
            if sought:
                container.seek(
                    max(target, first_pts), stream=vstream, backward=True, any_frame=False
                )
                fresh = False
            dec = new_decoder(sought)
            found, dropped = dec.drop_before(pts)
        # bwdif looks at the frame before: a deinterlaced frame is the full run's only when the
        # decoder saw one before it (or it is the first frame of the file).
        if found == pts and (dropped or at_start or not dec.deinterlacing):
            return dec
        if at_start:
            raise VideoError(f"{name}: no frame at timestamp {pts} after seeking")
        # further back: twice as far each time, from 1 s (or from ``lead``)
        back = 2 * back if back else max(1, round(1 / tb))
