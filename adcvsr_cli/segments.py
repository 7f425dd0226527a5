"""Segments: a long video cut into pieces that can run apart and join into the unsegmented result.

A segment emits frames ``start .. end-1`` (decoded frame indices, never seconds). Its output must
equal, frame for frame, what one unsegmented run emits for those frames, so a boundary may only
fall where nothing that shapes a pixel crosses it:

- A **scene cut** is always a boundary: the chunker starts a new shot there and nothing is
  blended across it (the temporal colour fix restarts too).
- A **temporal model** inside a shot: the shot's chunks start at ``a, a+step, a+2*step, ...``
  (``step = chunk - overlap``; see :mod:`adcvsr_cli.engine.chunking`). A boundary sits just after the
  blend zone at the start of a regular chunk ``k >= 1`` (``s = a + k*step + overlap``), where
  chunk ``k`` alone covers the frame. The segment that starts at ``s`` also decodes the
  ``overlap`` frames before it (context, discarded), so its first chunk is chunk ``k``; the
  segment that ends at ``s`` decodes on to the end of chunk ``k`` (``s - overlap + chunk``), so
  its last blend is the global one. Chunk ``k`` must be a regular chunk (it ends inside the shot).
- An **image model** has no temporal context, but the frames it runs together (a batch) are
  kept: boundaries sit on multiples of the batch, so every batch is the unsegmented run's.
- ``adain-temporal`` smooths statistics over a whole shot: only cuts are boundaries then (a shot
  longer than a segment stays one segment).

:func:`plan_segments` is pure: it takes the frame count and the cuts and returns the plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .engine.chunking import shot_bounds

DEFAULT_SEGMENT = 3000  # frames: two minutes at 25 fps; a long film gives tens of segments


@dataclass(frozen=True)
class Segment:
    """Frames ``start .. end-1`` are emitted; ``decode_start .. decode_end-1`` are decoded."""

    index: int
    start: int
    end: int
    decode_start: int
    decode_end: int

    def __len__(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(
            **{k: int(d[k]) for k in ("index", "start", "end", "decode_start", "decode_end")}
        )


@dataclass(frozen=True)
class Rules:
    """What may cross a boundary, from the model and the options (see the module docstring)."""

    temporal: bool  # the network sees chunks of frames together
    chunk: int
    overlap: int
    batch: int  # frames per network call of an image model
    temporal_color: bool  # --color-fix adain-temporal

    def lead_in(self) -> int:
        """Context frames decoded before a boundary inside a shot."""
        return self.overlap if self.temporal else 0

    def lead_out(self) -> int:
        """Frames decoded after a boundary inside a shot (the rest of the chunk there)."""
        return self.chunk - self.overlap if self.temporal else 0


def inner_boundaries(n_frames: int, cuts: list[int], rules: Rules) -> list[int]:
    """Every index where a segment may start without touching a cut (inside shots)."""
    if rules.temporal_color:
        return []
    if not rules.temporal:
        return list(range(rules.batch, n_frames, rules.batch))
    step = rules.chunk - rules.overlap
    out: list[int] = []
    for a, b in shot_bounds(n_frames, cuts):
        k = 1
        while a + k * step + rules.chunk <= b:  # chunk k is a regular chunk of this shot
            out.append(a + k * step + rules.overlap)
            k += 1
    return out


def _pick(lo: int, hi: int, target: int, cuts: list[int], inner: list[int]) -> int | None:
    """A boundary in ``[lo, hi]``: the cut nearest ``target``, else the inner one nearest."""
    for pool in (cuts, inner):
        near = [c for c in pool if lo <= c <= hi]
        if near:
            return min(near, key=lambda c: (abs(c - target), c))
    return None


def plan_segments(n_frames: int, cuts: list[int], segment: int, rules: Rules) -> list[Segment]:
    """Cut ``0 .. n_frames-1`` into segments of about ``segment`` frames (see the module text).

    A boundary is chosen between half and one and a half ``segment`` frames after the previous
    one, a scene cut preferred; when none fits there (a long shot under ``adain-temporal``) the
    next possible one is taken. A video no longer than one and a half segments is one segment.
    """
    if segment < 1:
        raise ValueError(f"segment must be >= 1 frame, got {segment}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    cut_list = sorted({int(c) for c in cuts if 0 < int(c) < n_frames})
    if not rules.temporal and not rules.temporal_color:
        cut_list = [c for c in cut_list if c % rules.batch == 0]  # keep every batch whole
    inner = inner_boundaries(n_frames, cut_list, rules)
    starts = [0]
    while n_frames - starts[-1] > segment + segment // 2:
        p = starts[-1]
        lo, hi = p + max(1, segment // 2), p + segment + segment // 2
        b = _pick(lo, hi, p + segment, cut_list, inner)
        if b is None:
            later = [c for c in (*cut_list, *inner) if c > hi]
            if not later:
                break
            b = min(later)
        if n_frames - b < 1:
            break
        starts.append(b)
    cut_set = set(cut_list)
    bounds = [*starts, n_frames]
    segs = []
    for i, (s, e) in enumerate(zip(bounds, bounds[1:], strict=False)):
        ds = s if (s == 0 or s in cut_set) else s - rules.lead_in()
        de = e if (e == n_frames or e in cut_set) else e + rules.lead_out()
        segs.append(Segment(i, s, e, ds, de))
    return segs


__all__ = ["DEFAULT_SEGMENT", "Rules", "Segment", "plan_segments"]
