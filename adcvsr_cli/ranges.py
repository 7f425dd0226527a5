"""Frame ranges of a video: times to frame indices, and the context a range needs.

A range emits frames ``start .. end-1`` (decoded frame indices). For its frames to equal those of
a full run, the network must see them in the same company: the same batch for an image model,
the same chunks (and cross-fades) for a temporal one. :func:`context_window` widens a range to
boundaries where, by the rules of :mod:`adcvsr_cli.segments`, nothing that shapes a pixel
crosses, and says which frames to decode around it (context, discarded after the run).
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .errors import UsageError
from .segments import Rules, Segment, inner_boundaries

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


def parse_time(text: str, option: str) -> float:
    """``90``, ``90.5``, ``1:30``, ``00:01:30.25`` -> seconds. UsageError naming ``option``."""
    s = text.strip()
    m = _CLOCK.match(s)
    try:
        if m:
            h, mi, sec = m.groups()
            value = int(h or 0) * 3600 + int(mi) * 60 + float(sec)
            if int(mi) >= 60 and h is not None or float(sec) >= 60:
                raise ValueError
        else:
            value = float(s)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(
            f"{option} {text!r} is not a time: use seconds (90, 2.5) or a timestamp "
            "(1:30, 00:01:30.5)"
        )
    return value


def index_at(times: Sequence[float], t: float) -> int:
    """The first frame shown at or after ``t`` seconds from the first frame (``times`` sorted,
    relative to the first frame); a time past the end gives ``len(times)``."""
    # Half a microsecond of slack: a timestamp typed from a printed time hits its frame.
    return bisect.bisect_left(times, t - 5e-7)


def context_window(
    start: int, end: int, n_frames: int, rules: Rules, cuts: Sequence[int] = ()
) -> Segment:
    """The smallest segment emitting ``start .. end-1`` whose frames equal a full run's.

    Its ``start``/``end`` are the widened boundaries; ``decode_start``/``decode_end`` include the
    context frames a temporal model needs beyond them.
    """
    if not 0 <= start < end <= n_frames:
        raise ValueError(f"range {start}..{end} is not inside 0..{n_frames}")
    cut_list = sorted({int(c) for c in cuts if 0 < int(c) < n_frames})
    inner = inner_boundaries(n_frames, cut_list, rules)
    bounds = sorted({0, n_frames, *cut_list, *inner})
    lo = bounds[bisect.bisect_right(bounds, start) - 1]
    hi = bounds[bisect.bisect_left(bounds, end)]
    cut_set = set(cut_list)
    ds = lo if lo == 0 or lo in cut_set else lo - rules.lead_in()
    de = hi if hi == n_frames or hi in cut_set else min(n_frames, hi + rules.lead_out())
    return Segment(0, lo, hi, ds, de)


# ----------------------------------------------------------------------------- partial runs


@dataclass(frozen=True)
class RangeRequest:
    """What ``--start``, ``--end``, ``--duration`` and ``--frames`` asked for (seconds from the
    first frame; ``None``: not given)."""

    start: float | None = None
    end: float | None = None
    duration: float | None = None
    frames: int | None = None

    def validate(self) -> None:
        given = [
            n for n, v in (("--end", self.end), ("--duration", self.duration)) if v is not None
        ]
        if self.frames is not None:
            given.append("--frames")
            if self.frames < 1:
                raise UsageError(f"--frames must be at least 1, got {self.frames}")
        if len(given) > 1:
            raise UsageError(
                f"give one of --end, --duration and --frames, not {' and '.join(given)}"
            )
        if self.end is not None and self.end <= (self.start or 0.0):
            raise UsageError(f"--end {self.end:g} is not after --start {self.start or 0:g}")
        if self.duration is not None and self.duration <= 0:
            raise UsageError(f"--duration must be positive, got {self.duration:g}")


@dataclass(frozen=True)
class Cut:
    """A partial run in the video stream's own timestamps (``time_base``): decode from the frame
    at ``seek_pts`` (context included) up to, not including, ``stop_pts``; write the frames from
    ``keep_from`` up to, not including, ``keep_to`` (``None``: to the end), shifted to start at
    zero. Side streams keep the packets that start inside the written span."""

    seek_pts: int
    keep_from: int
    keep_to: int | None
    stop_pts: int | None
    time_base: Fraction
    first_frame: int
    frames: int
    context_frames: int
    # Shot starts among the decoded frames (indices from the first decoded one), as the full run
    # finds them; None: the run detects them itself (they change no pixel then).
    scene_cuts: tuple[int, ...] | None = None
    scanned_frames: int = 0  # decoded (not upscaled) to find the scene cuts around the range
    first_decoded: int = 0  # the frame index ``seek_pts`` is the timestamp of

    @property
    def t_from(self) -> float:
        return float(self.keep_from * self.time_base)

    @property
    def t_to(self) -> float | None:
        return None if self.keep_to is None else float(self.keep_to * self.time_base)

    def keeps(self, pts: int | None) -> bool:
        if pts is None:
            return False
        return pts >= self.keep_from and (self.keep_to is None or pts < self.keep_to)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_frame": self.first_frame,
            "frames": self.frames,
            "start": round(self.t_from, 6),
            "end": None if self.t_to is None else round(self.t_to, 6),
            "context_frames": self.context_frames,
            "scanned_frames": self.scanned_frames,
        }


def range_indices(times: Sequence[float], req: RangeRequest) -> tuple[int, int]:
    """Frames ``start .. end-1`` for the request; ``times`` from the first frame, sorted."""
    n = len(times)
    s = index_at(times, req.start or 0.0)
    if s >= n:
        raise UsageError(
            f"--start {req.start:g}: past the end of the video (the last frame is at "
            f"{times[-1]:.3f} s)"
        )
    if req.frames is not None:
        e = min(n, s + req.frames)
    elif req.end is not None:
        e = index_at(times, req.end)
    elif req.duration is not None:
        e = index_at(times, times[s] + req.duration)
    else:
        e = n
    if e <= s:
        raise UsageError(
            f"the range from {times[s]:.3f} s holds no frame (frames are further apart)"
        )
    return s, e


def plan_cut(
    pts: Sequence[int], time_base: Fraction, req: RangeRequest, rules: Rules, cmap: Any = None
) -> Cut:
    """The :class:`Cut` of a request over a stream whose frames have timestamps ``pts``
    (sorted, presentation order), with the context ``rules`` ask for around it. ``cmap``: a
    :class:`~adcvsr_cli.shots.CutMap` of the input, to run the range with the full run's scene
    cuts (None: as if the video had none)."""
    from .shots import Window, part_window

    req.validate()
    if not pts:
        raise UsageError("the video has no frame with a timestamp to cut at")
    times = [float((p - pts[0]) * time_base) for p in pts]
    s, e = range_indices(times, req)
    n = len(pts)
    if cmap is None:
        seg = context_window(s, e, n, rules)
        w = Window(s, e, seg.decode_start, seg.decode_end, None)
    else:
        w = part_window(cmap, s, e, rules)
    return Cut(
        seek_pts=pts[w.decode_start],
        keep_from=pts[s],
        keep_to=pts[e] if e < n else None,
        stop_pts=pts[w.decode_end] if w.decode_end < n else None,
        time_base=time_base,
        first_frame=s,
        frames=e - s,
        context_frames=w.context_frames,
        scene_cuts=w.cuts,
        scanned_frames=cmap.scanned if cmap is not None else 0,
        first_decoded=w.decode_start,
    )


def cut_for(src: Any, upscaler: Any, options: Any, deinterlace: bool = True) -> Cut:
    """The cut of ``options.range`` for ``src`` and this network: frame timestamps from a demux
    pass, context from the plan (batch for an image model, chunks for a temporal one) and from
    the scene cuts around the range, found by decoding only there (:mod:`adcvsr_cli.shots`),
    deinterlaced as the run decodes (``deinterlace``: the run's media option)."""
    from .frames import frame_pts
    from .media import probe
    from .shots import CutMap, rules_for

    if not isinstance(src, (str, os.PathLike)) or os.fspath(src) == "-":
        raise UsageError("--start, --end, --duration and --frames need an input file to seek in")
    info = probe(src)
    if info.is_image:
        raise UsageError(f"{src}: --start, --end, --duration and --frames need a video")
    pts, tb = frame_pts(src)
    rules = rules_for(upscaler, options, info.height, info.width)
    cmap = CutMap(src, pts, options.scene_split, deinterlace)
    return plan_cut(pts, tb, options.range, rules, cmap)
