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
import re
from collections.abc import Sequence

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
