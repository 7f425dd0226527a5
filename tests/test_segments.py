"""Segment plans: each segment, run alone on its decode range, emits the unsegmented run's frames."""

import pytest
import torch

from adcvsr_cli.engine.chunking import run_chunked
from adcvsr_cli.segments import Rules, Segment, plan_segments


def chunk_mixer(x: torch.Tensor) -> torch.Tensor:
    """A stand-in network whose output depends on every frame it is run with (and their order)."""
    w = torch.arange(1, x.shape[0] + 1, dtype=x.dtype)[:, None, None, None]
    return x + (x * w).mean(dim=0, keepdim=True)


def run_all(frames, rules, cuts):
    if rules.temporal:
        return run_chunked(chunk_mixer, frames, rules.chunk, rules.overlap, cuts, full_last=True)
    return run_chunked(chunk_mixer, frames, rules.batch, 0, (), full_last=False)


def run_segment(frames, rules, cuts, seg: Segment):
    part = frames[seg.decode_start : seg.decode_end]
    rel = [c - seg.decode_start for c in cuts if seg.decode_start < c < seg.decode_end]
    out = run_all(part, rules, rel)
    return out[seg.start - seg.decode_start : seg.end - seg.decode_start]


RULES = {
    "temporal": Rules(temporal=True, chunk=25, overlap=4, batch=2, temporal_color=False),
    "temporal-small": Rules(temporal=True, chunk=6, overlap=2, batch=2, temporal_color=False),
    "image": Rules(temporal=False, chunk=25, overlap=4, batch=3, temporal_color=False),
    "image-b1": Rules(temporal=False, chunk=25, overlap=4, batch=1, temporal_color=False),
}


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize(
    "n,cuts,segment",
    [(200, [], 40), (200, [57, 130], 40), (97, [30], 20), (61, [], 10), (300, [5, 6, 150], 33)],
)
def test_segments_reproduce_the_unsegmented_run(name, n, cuts, segment):
    rules = RULES[name]
    frames = torch.randn(
        n, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(n)
    )
    whole = run_all(frames, rules, cuts)
    segs = plan_segments(n, cuts, segment, rules)
    assert segs[0].start == 0 and segs[-1].end == n
    assert all(a.end == b.start for a, b in zip(segs, segs[1:], strict=False))
    assert len(segs) > 1
    joined = torch.cat([run_segment(frames, rules, cuts, s) for s in segs])
    assert torch.equal(joined, whole)  # bit for bit


def test_boundaries_prefer_cuts_and_respect_the_size():
    rules = RULES["temporal"]
    segs = plan_segments(14_000, [2990, 6100], 3000, rules)
    starts = [s.start for s in segs]
    assert 2990 in starts and 6100 in starts
    assert all(1500 <= len(s) <= 4500 for s in segs)
    cut_seg = next(s for s in segs if s.start == 2990)
    assert cut_seg.decode_start == 2990  # a shot starts there: no context needed
    inner = next(s for s in segs if s.start not in (0, 2990, 6100))
    assert inner.decode_start == inner.start - rules.overlap
    # On the chunk grid of its shot (which starts at the cut 6100), just after a blend zone.
    assert (inner.start - rules.overlap - 6100) % (rules.chunk - rules.overlap) == 0
    assert segs[-1].decode_end == segs[-1].end == 14_000
    before = segs[inner.index - 1]
    assert before.decode_end == inner.start - rules.overlap + rules.chunk


def test_short_video_and_temporal_color_fix():
    rules = RULES["temporal"]
    assert plan_segments(4000, [], 3000, rules) == [Segment(0, 0, 4000, 0, 4000)]
    tc = Rules(temporal=True, chunk=25, overlap=4, batch=2, temporal_color=True)
    # Statistics are smoothed over a whole shot: only cuts can be boundaries.
    segs = plan_segments(10_000, [8000], 3000, tc)
    assert [(s.start, s.end) for s in segs] == [(0, 8000), (8000, 10_000)]
    assert all(s.decode_start == s.start and s.decode_end == s.end for s in segs)
    assert len(plan_segments(10_000, [], 3000, tc)) == 1
    with pytest.raises(ValueError):
        plan_segments(10, [], 0, rules)


def test_image_model_boundaries_keep_batches_whole():
    rules = RULES["image"]
    segs = plan_segments(1000, [101, 300], 100, rules)
    assert all(s.start % 3 == 0 for s in segs)
    assert 300 in [s.start for s in segs]  # a cut on the batch grid is preferred
    assert all(s.decode_start == s.start and s.decode_end == s.end for s in segs)


def test_round_trip_to_dict():
    s = Segment(2, 10, 20, 6, 37)
    assert Segment.from_dict(s.to_dict()) == s
