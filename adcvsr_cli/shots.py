"""The scene cuts a part of a video needs, found by decoding only around that part.

A full run detects cuts as it decodes (:class:`~adcvsr_cli.engine.scenes.SceneDetector`), and
they shape a temporal model's frames: a shot's chunks start at its first frame (the grid of
:mod:`adcvsr_cli.engine.chunking`), and ``adain-temporal`` restarts its colour history there. A
range or a preview frame equals the full run's only when it is run with the same cuts, so it
must know them without decoding the whole video:

- The detector's decision at a frame depends only on the last ``window + 1`` frames before it
  (the running median of ``window`` scores, and the previous frame to score against). A
  detector started at frame ``a`` therefore decides every frame from ``a + WARMUP`` on as the
  full run does (from ``a`` on when ``a`` is 0): a scan of ``[a, b)`` makes ``[a + WARMUP, b)``
  *known*.
- The shot a frame lies in starts at the last cut at or before it: :meth:`CutMap.shot_start`
  scans backwards from the frame, in blocks that double in length, until a known stretch holds a
  cut or reaches frame 0. A long shot costs a long scan; nothing else can say where it starts.
- Frames are only decoded for a scan (at the input size, one thumbnail each), never upscaled.
  :attr:`CutMap.scanned` counts them, for the report.

:func:`part_window` turns the cuts into the frames to decode and upscale around a part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .engine.scenes import DEFAULT_WINDOW, SceneDetector
from .errors import VideoError
from .ranges import context_window
from .segments import Rules

# Frames a fresh detector must see before it decides as the full run's does (see above).
WARMUP = DEFAULT_WINDOW + 1
FIRST_BLOCK = 64  # frames scanned back from a part before the block doubles


class CutMap:
    """The full run's scene cuts over the stretches of ``src`` scanned so far.

    ``pts``: the frame timestamps (:func:`~adcvsr_cli.frames.frame_pts`), for seeking. With
    ``detect`` False (``--no-scene-split``) the full run has no cuts and nothing is scanned.
    ``deinterlace``: the run's (``--no-deinterlace`` makes it False): the scan must score the
    frames the full run's detector scores, fields and all.
    """

    def __init__(
        self,
        src: str | os.PathLike[str],
        pts: Sequence[int],
        detect: bool = True,
        deinterlace: bool = True,
    ):
        self.src = os.fspath(src)
        self.pts = list(pts)
        self.detect = detect
        self.deinterlace = deinterlace
        self.known: list[tuple[int, int]] = []  # disjoint, sorted: stretches whose cuts are known
        self.cuts: set[int] = set()
        self.scanned = 0  # frames decoded for scans

    @property
    def n(self) -> int:
        return len(self.pts)

    def _gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        gaps, at = [], lo
        for a, b in self.known:
            if b <= at or a >= hi:
                continue
            if a > at:
                gaps.append((at, a))
            at = max(at, b)
        if at < hi:
            gaps.append((at, hi))
        return gaps

    def _scan(self, lo: int, hi: int) -> None:
        """Decode ``[lo - WARMUP, hi)`` and learn the cuts of ``[lo, hi)``."""
        from .frames import read_frames

        a = max(0, lo - WARMUP)
        det = SceneDetector()
        i = a
        for f in read_frames(self.src, deinterlace=self.deinterlace, start=a, pts=self.pts):
            if f.index >= hi:
                break
            if det.feed(f.rgb) and f.index >= lo:
                self.cuts.add(f.index)
            self.scanned += 1
            i = f.index + 1
        if i < hi:
            raise VideoError(f"{self.src}: frame {i} did not decode (the file ends early)")
        merged = sorted([*self.known, (lo, hi)])
        self.known = []
        for s, e in merged:
            if self.known and s <= self.known[-1][1]:
                self.known[-1] = (self.known[-1][0], max(e, self.known[-1][1]))
            else:
                self.known.append((s, e))

    def ensure(self, lo: int, hi: int) -> None:
        """Scan so that the cuts of frames ``lo .. hi-1`` are known."""
        if not self.detect:
            return
        for a, b in self._gaps(max(0, lo), min(self.n, hi)):
            self._scan(a, b)

    def shot_start(self, i: int) -> int:
        """The first frame of the shot frame ``i`` lies in (scanning back as far as needed)."""
        if not self.detect:
            return 0
        lo, block = i, FIRST_BLOCK
        while True:
            self.ensure(lo, i + 1)
            inside = [c for c in self.cuts if lo <= c <= i]
            if inside:
                return max(inside)
            if lo == 0:
                return 0
            lo, block = max(0, lo - block), 2 * block

    def cuts_in(self, lo: int, hi: int) -> list[int]:
        """The known cuts among frames ``lo .. hi-1``, sorted."""
        return sorted(c for c in self.cuts if lo <= c < hi)


@dataclass(frozen=True)
class Window:
    """Frames ``start .. end-1`` of a part, run as frames ``decode_start .. decode_end-1`` with
    shots starting at ``cuts`` (indices relative to ``decode_start``; None: let the run detect
    them, which changes no pixel for an image model without ``adain-temporal``)."""

    start: int
    end: int
    decode_start: int
    decode_end: int
    cuts: tuple[int, ...] | None

    @property
    def context_frames(self) -> int:
        return (self.start - self.decode_start) + (self.decode_end - self.end)


def rules_for(upscaler: Any, options: Any, height: int, width: int) -> Rules:
    """What shapes a frame in a run of ``upscaler`` with ``options`` on ``height`` x ``width``
    frames: the model's kind, the chunks, the plan's batch, and ``adain-temporal``."""
    plan = upscaler.initial_plan(height, width, options)
    return Rules(
        upscaler.temporal,
        options.chunk,
        options.chunk_overlap,
        plan.batch,
        options.color_fix == "adain-temporal",
    )


def part_window(cmap: CutMap, start: int, end: int, rules: Rules) -> Window:
    """The frames to decode and upscale so that frames ``start .. end-1`` equal the full run's.

    The chunk and batch grid comes from :func:`~adcvsr_cli.ranges.context_window` with the
    known cuts. A temporal model needs the cuts from the start of the shot of ``start`` (its
    grid starts there) to a chunk and a step past ``end`` (where the last chunk may be moved
    back to a shot's end). ``adain-temporal`` smooths colour from the start of the shot: the
    part is run from there (for an image model, from the batch that holds it).
    """
    n = cmap.n
    grid = replace(rules, temporal_color=False)
    if not cmap.detect or not (rules.temporal or rules.temporal_color):
        seg = context_window(start, end, n, grid)
        return Window(start, end, seg.decode_start, seg.decode_end, () if not cmap.detect else None)
    reach = min(n, end + 2 * rules.chunk) if rules.temporal else end
    cmap.ensure(start - FIRST_BLOCK, reach)  # one scan when a cut is near (a warmup per scan)
    shot = cmap.shot_start(start)
    cmap.ensure(shot, reach)
    cuts = cmap.cuts_in(shot, reach)
    seg = context_window(start, end, n, grid, cuts if rules.temporal else ())
    ds = seg.decode_start
    if rules.temporal_color:
        ds = min(ds, shot if rules.temporal else shot // rules.batch * rules.batch)
    rel = tuple(c - ds for c in cuts if ds < c < seg.decode_end)
    return Window(start, end, ds, seg.decode_end, rel)


def windows_for(
    cmap: CutMap, indices: Sequence[int], rules: Rules
) -> list[tuple[Window, list[int]]]:
    """One window per picked frame (preview), windows merged when equal, in order."""
    groups: dict[Window, list[int]] = {}
    for i in sorted(set(indices)):
        w = part_window(cmap, i, i + 1, rules)
        key = replace(w, start=0, end=0)
        groups.setdefault(key, []).append(i)
    return [(k, idx) for k, idx in sorted(groups.items(), key=lambda kv: kv[0].decode_start)]


__all__ = ["WARMUP", "CutMap", "Window", "part_window", "rules_for", "windows_for"]
