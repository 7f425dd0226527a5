"""The planner: batch and tile chosen together by estimated compute under the memory budget."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from adcvsr_cli.engine.options import UpscaleOptions
from adcvsr_cli.engine.plan import (
    HEADROOM,
    Budget,
    call_bytes,
    choose_plan,
    choose_tile,
    plan_for_file,
    tile_cost,
)
from adcvsr_cli.engine.tiling import MIN_TILE, estimate_bytes

GIB = 2**30


def fp16_cuda(gib: float) -> Budget:
    return Budget(int(gib * GIB), 2, "cuda")


# (w, h, GiB, temporal) -> (tile, batch, tiles, computed-pixel overhead in %). The old plan (batch
# fixed at --chunk 25, a tile fitted to that) was, for image models: 854x480 at 20 GiB 28 tiles of
# 160 (+73 %), at 130 GiB 8 tiles of 256 (+26 %); 1920x1080 at 20 GiB 336 tiles of 112 (+102 %),
# at 130 GiB 15 tiles of 432 (+34 %).
PINNED = {
    (854, 480, 20, False): (0, 2, 1, 0),
    (854, 480, 130, False): (0, 13, 1, 0),
    (1920, 1080, 20, False): (304, 7, 28, 24),
    (1920, 1080, 130, False): (0, 2, 1, 0),
    (854, 480, 20, True): (144, 25, 32, 60),
    (854, 480, 130, True): (256, 25, 8, 26),
    (1920, 1080, 20, True): (112, 25, 336, 102),
    (1920, 1080, 130, True): (304, 25, 28, 24),
}


@pytest.mark.parametrize("key", sorted(PINNED))
def test_the_plans_of_the_table(key):
    w, h, gib, temporal = key
    c = choose_plan(h, w, temporal=temporal, chunk=25, budget=fp16_cuda(gib))
    tile, batch, tiles, overhead = PINNED[key]
    assert (c.tile, c.batch, c.tiles) == (tile, batch, tiles)
    assert round(100 * c.computed_overhead) == overhead
    assert c.fits and c.peak_bytes <= HEADROOM * gib * GIB
    assert (c.cost == 1.0) == (tile == 0)


def test_the_memory_model_reproduces_the_measured_frame():
    need = estimate_bytes(1, 480, 864, 2, tiled=False)
    # One 480x864 fp16 frame peaked at 8.4 GiB on the H200: the model is within 15 %.
    assert 0.85 * 8.4 * GIB < need < 1.15 * 8.4 * GIB
    assert choose_tile(480, 854, 1, 32, Budget(int(need / 0.8), 2)) == 0
    assert choose_tile(480, 854, 1, 32, Budget(int(need / 0.9), 2)) > 0


@pytest.mark.parametrize("gib", [2, 5, 10, 20, 40, 80, 130])
@pytest.mark.parametrize("size", [(854, 480), (1920, 1080), (640, 360)])
def test_an_image_model_shrinks_the_batch_before_the_tile(gib, size):
    w, h = size
    budget = fp16_cuda(gib)
    c = choose_plan(h, w, temporal=False, chunk=25, budget=budget)
    # The tile is what one frame needs, never smaller for the sake of a batch.
    assert c.tile == choose_tile(h, w, 1, 32, budget)
    limit = HEADROOM * budget.free_bytes
    if c.fits:
        assert call_bytes(c.batch, h, w, c.tile, budget) <= limit
        assert c.batch == 25 or call_bytes(c.batch + 1, h, w, c.tile, budget) > limit
    else:  # not even one frame in the smallest tile: the back-off decides at run time
        assert (c.tile, c.batch) == (MIN_TILE, 1)


def test_whole_frames_are_kept_whenever_one_fits():
    h, w = 1080, 1920
    one = call_bytes(1, h, w, 0, fp16_cuda(1))
    c = choose_plan(h, w, temporal=False, chunk=25, budget=Budget(int(one / HEADROOM) + 1, 2))
    assert (c.tile, c.batch, c.cost) == (0, 1, 1.0)
    c = choose_plan(h, w, temporal=False, chunk=25, budget=Budget(int(one / HEADROOM) - 1, 2))
    assert c.tile > 0 and c.batch >= 1


def test_the_cost_model_counts_overlap_and_quadratic_attention():
    h, w = 1080, 1920
    whole, px, n = tile_cost(h, w, 0, 32)
    assert (px, n) == (1088 * 1920, 1)
    # Tiles recompute their overlaps: more pixels, but much less attention at 1080p.
    c304, px304, n304 = tile_cost(h, w, 304, 32)
    assert px304 > px and n304 == 28 and c304 < 0.25 * whole
    # Very small tiles lose again to the overlap they recompute.
    c64, px64, _ = tile_cost(h, w, 64, 32)
    assert px64 > 2 * px and c64 > tile_cost(h, w, 192, 32)[0]
    # At 128x128 LR (the training size) attention is about a tenth of the cost.
    c128, _, _ = tile_cost(128, 128, 0, 32)
    assert 900e9 < c128 < 1000e9


def test_given_tile_and_batch_are_kept_and_the_cpu_takes_a_frame_at_a_time():
    c = choose_plan(480, 854, temporal=False, chunk=25, budget=fp16_cuda(20), tile=128, batch=3)
    assert (c.tile, c.batch) == (128, 3)
    cpu = choose_plan(480, 854, temporal=False, chunk=25, budget=Budget(64 * GIB, 4, "cpu"))
    assert cpu.batch == 1 and cpu.tile == 0
    # A given --batch is what goes together: the tile is fitted to it.
    big = choose_plan(1080, 1920, temporal=False, chunk=25, budget=fp16_cuda(20), batch=25)
    assert big.tile == 112 and big.batch == 25


def test_plan_for_file_reads_the_options_and_the_dtype():
    opts = UpscaleOptions(tile="auto", chunk=25)
    c = plan_for_file(
        1080,
        1920,
        opts,
        device=torch.device("cpu"),
        dtype=torch.float16,
        temporal=True,
        free_bytes=20 * GIB,
    )
    ref = choose_plan(1080, 1920, temporal=True, chunk=25, budget=Budget(20 * GIB, 2, "cpu"))
    assert c == ref


def test_the_run_and_the_dry_run_report_the_same_plan(tmp_path):
    from test_pipeline import tiny_upscaler

    from adcvsr_cli.pipeline import dry_run_plan, upscale

    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as f:
        s = f.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(3):
            img = np.full((32, 48, 3), 40 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                f.mux(p)
        for p in s.encode():
            f.mux(p)
    events: list[dict] = []
    opts = UpscaleOptions(chunk=4, chunk_overlap=0)
    upscale(src, tmp_path / "out.mp4", tiny_upscaler(), opts, on_event=events.append)
    run = [e for e in events if e["type"] == "plan"][0]
    dry = dry_run_plan(src, tmp_path / "out.mp4", opts, device="cpu", precision="fp32")
    keys = ("tile", "batch", "tiles", "computed_overhead", "cost_vs_untiled")
    assert {k: run[k] for k in keys} == {k: dry[k] for k in keys}
    assert run["cost_vs_untiled"] == 1.0 and run["tiles"] == 1
