"""Temporal chunks: plans, cross-fade weights, the streaming runner, seams, OOM back-off.

Budget: about 15 s on 2 CPU cores (tiny networks on 16x16 frames; the rest is bookkeeping).
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from adcvsr_cli.engine.chunking import (
    BackoffRunner,
    Chunk,
    Plan,
    StreamingChunker,
    crossfade_weights,
    is_out_of_memory,
    plan_chunks,
    run_chunk_plan,
    run_chunked,
    run_with_backoff,
    shot_bounds,
    smaller_plan,
)
from adcvsr_cli.errors import OutOfMemory, UsageError
from adcvsr_cli.model import (
    AdcVSR,
    AdcVSRDims,
    DecoderDims,
    TemporalBlock,
    TemporalDims,
    UNetDims,
    init_random_,
)


def tiny_model(temporal: bool = False, temporal_scale: float = 1.0, seed: int = 0) -> AdcVSR:
    dims = AdcVSRDims(
        unet=UNetDims(widths=(16, 32, 32, 32), head_dim=16, out_channels=16, layers_per_block=1),
        decoder=DecoderDims(latent_channels=16, widths=(16, 16, 8, 8), layers_per_block=1),
        temporal=TemporalDims() if temporal else None,
    )
    m = AdcVSR(dims).eval()
    init_random_(m, seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, TemporalBlock):
                for p in mod.parameters():
                    p.mul_(temporal_scale)
    return m


# ----------------------------------------------------------------------------- plans

LENGTHS = [1, 2, 24, 25, 26, 1000]
SETTINGS = [(25, 0), (25, 4), (25, 12), (8, 3), (5, 2), (2, 1), (1, 0)]


def _cuts_for(n: int) -> list[int]:
    return sorted({c for c in (n // 3, n // 3 + 1, (2 * n) // 3, n - 1) if 0 < c < n})


def _check_plan(n, chunk, overlap, cuts, full_last):
    chunks = plan_chunks(n, chunk, overlap, cuts, full_last)
    shots = shot_bounds(n, cuts)
    covered = torch.zeros(n, dtype=torch.int64)
    for c in chunks:
        assert 0 <= c.start < c.end <= n and len(c) <= chunk
        # never across a cut: the chunk lies inside one shot
        shot = next(s for s in shots if s[0] <= c.start < s[1])
        assert c.end <= shot[1]
        if full_last and shot[1] - shot[0] >= chunk:
            assert len(c) == chunk  # no tiny last chunk
        covered[c.start : c.end] += 1
    assert n == 0 or int(covered.min()) >= 1
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)

    total = torch.zeros(n, dtype=torch.float64)
    nonzero = torch.zeros(n, dtype=torch.int64)
    for c, w in zip(chunks, crossfade_weights(chunks, overlap), strict=True):
        assert w.shape == (len(c),) and float(w.min()) >= 0
        total[c.start : c.end] += w
        nonzero[c.start : c.end] += (w > 0).long()
    assert torch.allclose(total, torch.ones(n, dtype=torch.float64), atol=1e-12, rtol=0)
    assert int(nonzero.max()) <= 2
    for cut in cuts:  # nothing spans (so nothing is blended across) a cut
        assert not any(c.start < cut < c.end for c in chunks)
    return chunks


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(("chunk", "overlap"), SETTINGS)
@pytest.mark.parametrize("with_cuts", [False, True])
def test_plan_covers_every_frame_and_weights_sum_to_one(n, chunk, overlap, with_cuts):
    cuts = _cuts_for(n) if with_cuts else []
    _check_plan(n, chunk, overlap, cuts, full_last=True)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("chunk", [1, 7, 25])
def test_without_overlap_or_full_last_chunks_partition_the_frames(n, chunk):
    chunks = _check_plan(n, chunk, 0, _cuts_for(n), full_last=False)
    owners = torch.zeros(n, dtype=torch.int64)
    for c in chunks:
        owners[c.start : c.end] += 1
    assert torch.equal(owners, torch.ones(n, dtype=torch.int64))


def test_plan_examples():
    assert plan_chunks(24, 25, 4) == [Chunk(0, 24)]
    assert plan_chunks(26, 25, 4) == [Chunk(0, 25), Chunk(1, 26)]
    assert plan_chunks(50, 25, 4) == [Chunk(0, 25), Chunk(21, 46), Chunk(25, 50)]
    assert plan_chunks(50, 25, 4, full_last=False) == [Chunk(0, 25), Chunk(21, 46), Chunk(42, 50)]
    assert plan_chunks(30, 25, 4, cuts=[10]) == [Chunk(0, 10), Chunk(10, 30)]
    # the backwards-extended last chunk blends in over the same 4 frames as a regular one
    w = crossfade_weights(plan_chunks(50, 25, 4), 4)
    assert torch.all(w[2][: 42 - 25] == 0) and torch.all(w[2][42 - 25 : 46 - 25] > 0)
    assert torch.all(w[1][46 - 21 - 4 :] < 1) and torch.all(w[1][4 : 46 - 21 - 4] == 1)


@pytest.mark.parametrize(
    ("chunk", "overlap", "match"),
    [(0, 0, "--chunk"), (25, 13, "at most 12"), (25, -1, "--chunk-overlap"), (True, 0, "--chunk")],
)
def test_bad_chunk_arguments_are_usage_errors(chunk, overlap, match):
    with pytest.raises(UsageError, match=match):
        plan_chunks(100, chunk, overlap)


# ----------------------------------------------------------------------------- streaming


def _offline_reference(x, chunks, overlap, run_chunk):
    out = torch.zeros_like(x, dtype=torch.float64)
    for c, w in zip(chunks, crossfade_weights(chunks, overlap), strict=True):
        out[c.start : c.end] += run_chunk(x[c.start : c.end]).double() * w[:, None, None, None]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_streaming_runs_the_planned_chunks_and_blends_like_the_plan(seed):
    rng = random.Random(seed)
    n = rng.choice([1, 3, 25, 26, 49, 50, 51, 120])
    chunk = rng.choice([4, 7, 25])
    overlap = rng.randint(0, chunk // 2)
    cuts = sorted(rng.sample(range(1, n), k=min(n - 1, rng.randint(0, 3)))) if n > 1 else []
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, 1, 1).contiguous()

    def run_chunk(frames):  # each chunk's output differs, so the blend is visible
        return frames * 2 + frames[0, 0, 0, 0] * 0.01

    sc = StreamingChunker(run_chunk, chunk, overlap)
    out = []
    for i in range(n):
        out += sc.push(x[i], tag=("pts", i), cut=i in cuts)
    out += sc.finish()
    assert sc.chunks_run == plan_chunks(n, chunk, overlap, cuts)
    assert [f.index for f in out] == list(range(n))
    assert [f.tag for f in out] == [("pts", i) for i in range(n)]
    ref = _offline_reference(x, sc.chunks_run, overlap, run_chunk)
    got = torch.stack([f.frame for f in out]).double()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("chunk", "overlap", "full_last"), [(25, 4, True), (25, 12, True), (8, 0, False), (1, 0, True)]
)
def test_streaming_holds_a_bounded_number_of_frames(chunk, overlap, full_last):
    n = 2000
    rng = random.Random(chunk * 100 + overlap)
    cuts = set(rng.sample(range(1, n), 25))
    sc = StreamingChunker(lambda f: f, chunk, overlap, full_last)
    emitted = 0
    peak_in = peak_out = 0
    for i in range(n):
        done = sc.push(torch.full((3, 2, 2), float(i)), cut=i in cuts)
        peak_in = max(peak_in, sc.buffered_inputs)
        peak_out = max(peak_out, sc.pending_outputs)
        for f in done:
            assert f.index == emitted and float(f.frame[0, 0, 0]) == pytest.approx(f.index)
            emitted += 1
        assert i + 1 - emitted <= sc.max_buffered_inputs  # latency is bounded too
    for f in sc.finish():
        assert f.index == emitted
        emitted += 1
    assert emitted == n
    assert peak_in <= sc.max_buffered_inputs == chunk + (chunk - overlap - 1 if full_last else 0)
    assert peak_out <= overlap
    assert sc.buffered_inputs == 0 and sc.pending_outputs == 0
    assert sc.frames_pushed == n


def test_streaming_rejects_a_wrong_output_length():
    sc = StreamingChunker(lambda f: f[:-1], 4, 1)
    for _ in range(3):
        assert sc.push(torch.zeros(3, 2, 2)) == []
    with pytest.raises(ValueError, match="run_chunk returned"):
        sc.push(torch.zeros(3, 2, 2))


# ----------------------------------------------------------------------------- with the network


def _frames(n, h=16, w=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    tex = F.avg_pool2d(torch.randn(1, 3, h + 6, w + 6, generator=g), 7, 1, 3) * 4
    base = tex[0, :, 3 : 3 + h, 3 : 3 + w].clamp(-1, 1)
    # a still texture under a slow, smooth change of brightness
    return base[None] * torch.linspace(0.6, 1.0, n)[:, None, None, None]


@pytest.mark.parametrize(
    ("chunk", "overlap", "full_last"), [(5, 0, False), (4, 2, True), (6, 3, True), (20, 0, False)]
)
def test_chunked_equals_unchunked_for_an_image_model(chunk, overlap, full_last):
    m = tiny_model(temporal=False)
    x = torch.rand(13, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        full = m(x, 1)
        y = run_chunked(lambda c: m(c, 1), x, chunk, overlap, full_last=full_last)
    assert y.shape == full.shape
    # Same frames through the same network: equal up to float rounding of batched convolutions.
    assert float((y - full).abs().max()) <= 1e-4  # measured <= 1e-5; the bar is 1/255 = 3.9e-3


def test_seams_of_a_temporal_model_are_no_jump():
    """Random temporal blocks (nonzero): the frame-to-frame change across a cross-faded seam is no
    larger than inside a chunk; without overlap the seam is a visible jump."""
    n, chunk = 50, 25
    m = tiny_model(temporal=True, temporal_scale=0.5)
    x = _frames(n)
    with torch.inference_mode():
        full = m(x, n)
        results = {}
        for overlap in (0, 4):
            y = run_chunked(lambda c: m(c, c.shape[0]), x, chunk, overlap)
            change = (y[1:] - y[:-1]).abs().mean(dim=(1, 2, 3))  # change into frame t+1
            err_jump = ((y - full)[1:] - (y - full)[:-1]).abs().mean(dim=(1, 2, 3))
            chunks = plan_chunks(n, chunk, overlap)
            seam = set()
            for a, _b in zip(chunks, chunks[1:], strict=False):
                seam |= set(range(a.end - max(overlap, 1) - 1, a.end))
            inside = [t for t in range(n - 1) if t not in seam]
            results[overlap] = (
                max(float(change[t]) for t in seam),
                max(float(change[t]) for t in inside),
                max(float(err_jump[t]) for t in seam),
            )
    seam0, inside0, jump0 = results[0]
    seam4, inside4, jump4 = results[4]
    # Measured: overlap 0: seam 0.0192 vs inside 0.0132, error jump 0.0101; overlap 4: seam 0.0111
    # vs inside 0.0132, error jump 0.0014. (Other seeds: overlap-4 ratios 0.46-0.91.)
    assert seam0 > inside0
    assert seam4 <= inside4
    assert jump4 < jump0 / 3  # the cross-fade spreads the disagreement between chunks


# ----------------------------------------------------------------------------- OOM back-off


class InjectOOM:
    """Wraps a forward; raises torch.OutOfMemoryError while the condition holds (a few times)."""

    def __init__(self, fn, when, times=1):
        self.fn, self.when, self.times, self.raised = fn, when, times, 0

    def __call__(self, x, frames):
        if self.raised < self.times and self.when(x):
            self.raised += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.fn(x, frames)


def test_backoff_halves_the_batch_and_gives_the_same_output():
    m = tiny_model()
    x = torch.rand(8, 3, 16, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.inference_mode():
        clean = run_chunk_plan(m, x, Plan(tile=0, batch=8), False, 16)
        oom = InjectOOM(m, when=lambda t: t.shape[0] > 4)
        y, plan, changes = run_with_backoff(
            lambda p: run_chunk_plan(oom, x, p, False, 16), Plan(0, 8), Plan(64, 1), (16, 32)
        )
    assert oom.raised == 1
    assert plan == Plan(tile=0, batch=4)
    assert changes == ["out of memory at tile off, batch 8: retrying with tile off, batch 4"]
    assert y.shape == clean.shape == (8, 3, 64, 128)
    assert float((y - clean).abs().max()) <= 1e-5


def test_backoff_shrinks_the_tile_keeps_the_plan_and_never_drops_frames():
    m = tiny_model(temporal=True)
    x = _frames(10, 16, 32)
    with torch.inference_mode():
        oom = InjectOOM(m, when=lambda t: t.shape[-1] > 16, times=1)
        runner = BackoffRunner(Plan(tile=0, batch=8), Plan(tile=16, batch=8), (16, 32))
        y = run_chunked(lambda c: runner(lambda p: run_chunk_plan(oom, c, p, True, 0)), x, 8, 2)
        # the run it must equal: the same chunks, at the plan the back-off settled on
        ref = run_chunked(lambda c: run_chunk_plan(m, c, Plan(16, 8), True, 0), x, 8, 2)
    assert oom.raised == 1
    assert runner.plan == Plan(tile=16, batch=8)  # kept for the rest of the file
    assert runner.changes == ["out of memory at tile off, batch 8: retrying with tile 16, batch 8"]
    assert len(plan_chunks(10, 8, 2)) == 2
    assert y.shape == (10, 3, 64, 128)  # every frame, once
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_backoff_at_the_floor_raises_out_of_memory():
    calls = []

    def always_oom(plan):
        calls.append(plan)
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(OutOfMemory, match="clip.mkv.*tile 64, batch 1"):
        run_with_backoff(always_oom, Plan(256, 4), Plan(64, 1), what="clip.mkv")
    assert calls == [Plan(256, 4), Plan(256, 2), Plan(256, 1), Plan(128, 1), Plan(64, 1)]


def test_backoff_passes_other_errors_through():
    def broken(plan):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        run_with_backoff(broken, Plan(), Plan(64, 1))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated ...)"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling x"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_smaller_plan_steps():
    floor = Plan(tile=64, batch=1)
    assert smaller_plan(Plan(0, 1), floor, (480, 864)) == Plan(432, 1)
    assert smaller_plan(Plan(0, 1), floor) is None  # untiled, frame size unknown
    assert smaller_plan(Plan(96, 1), floor) == Plan(64, 1)
    assert smaller_plan(Plan(64, 1), floor) is None
    assert smaller_plan(Plan(0, 3), floor) == Plan(0, 1)
    assert smaller_plan(Plan(512, 1), floor, (100, 120)) == Plan(64, 1)  # 512 > the frame: 128
    assert smaller_plan(Plan(0, 1), floor, (64, 64)) is None  # cannot go below the floor
