"""The host meets the device a fixed number of times per chunk, whatever the frames and tiles.

On the CPU, :class:`syncspy.SyncSpy` follows the device tensors and counts reads of device values,
copies to the host and copies to the device. Before the per-chunk engine a 4-frame chunk in two
tiles cost 6 uploads, 16 host copies and about 10 reads (fp16); now it costs 1, 1 and 1, and the
tile weights go up once per plan. Frames converted to the encoder's Y'CbCr planes on the device
cost the same (the one copy carries the planes). On CUDA the same is checked with torch's sync
debug mode.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from syncspy import SyncSpy, sync_options
from test_pipeline import tiny_upscaler

from adcvsr_cli.engine.frames import host_arrays, quantise, to_array
from adcvsr_cli.engine.options import UpscaleOptions
from adcvsr_cli.engine.upscaler import ChunkStats, Upscaler
from adcvsr_cli.engine.yuv import layout_for


def frames(n: int, h: int = 32, w: int = 48, deep: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    hi = 65535 if deep else 255
    dtype = np.uint16 if deep else np.uint8
    return [rng.integers(0, hi, (h, w, 3), dtype=dtype) for _ in range(n)]


def yuv(pix_fmt: str):
    """The processor's ``planes`` for an encoder taking ``pix_fmt`` (BT.709, limited)."""
    return lambda w, h, deep: layout_for(pix_fmt, 1, False, w, h, deep_source=deep)


def run_counted(up: Upscaler, opts: UpscaleOptions, n: int, deep: bool = False, planes=None):
    stats = ChunkStats()
    process = up.processor(opts, lambda w, h: (4 * w, 4 * h), stats=stats, planes=planes)
    params = [*up.model.parameters(), *up.model.buffers()]
    with SyncSpy(up.device.type).on_device(params) as spy:
        out = list(process(iter(frames(n, deep=deep))))
    assert len(out) == n
    return spy, stats, out


@pytest.mark.parametrize("temporal", [False, True])
@pytest.mark.parametrize("color_fix", ["adain", "adain-temporal", "none"])
@pytest.mark.parametrize("tile", [0, 32])
def test_one_upload_one_download_per_chunk(temporal, color_fix, tile):
    up = tiny_upscaler(temporal=temporal)
    opts = sync_options(temporal, tile, color_fix)
    spy, stats, _ = run_counted(up, opts, 12)
    assert stats.chunks == 3
    tiles = 2 if tile else 1
    # The chunk's frames in one copy; the blend weights once for the file's plan.
    assert spy.counts["upload:to"] == stats.chunks + (tiles if tile else 0)
    # The chunk's finished frames in one copy; nothing else read (fp32 has no range guard).
    assert spy.total("download") == stats.chunks == spy.counts["download:numpy"]
    assert spy.total("read") == 0


def test_the_fp16_guard_reads_once_per_chunk():
    base = tiny_upscaler(temporal=True)
    up = Upscaler(base.model.half(), device=torch.device("cpu"), dtype=torch.float16)
    opts = UpscaleOptions(chunk=6, chunk_overlap=2, tile=32, tile_overlap=8)
    spy, stats, _ = run_counted(up, opts, 12)
    assert spy.total("read") == spy.counts["read:__bool__"] == stats.chunks == 3
    assert spy.total("download") == 3 and spy.counts["upload:to"] == 3 + 2


def test_more_frames_cost_more_chunks_not_more_transfers_per_chunk():
    up = tiny_upscaler()
    opts = UpscaleOptions(chunk=4, chunk_overlap=0, batch=4, tile=0)
    spy8, s8, _ = run_counted(up, opts, 8)
    spy16, s16, _ = run_counted(up, opts, 16)
    assert (s8.chunks, s16.chunks) == (2, 4)
    assert spy16.total("download") == 2 * spy8.total("download") == 4
    assert spy16.total("upload") == 2 * spy8.total("upload") == 4


def test_deep_frames_round_trip_per_chunk():
    up = tiny_upscaler()
    opts = UpscaleOptions(chunk=4, chunk_overlap=0, batch=4, tile=0, color_fix="none")
    spy, stats, out = run_counted(up, opts, 8, deep=True)
    assert all(a.dtype == np.uint16 and a.shape == (128, 192, 3) for a in out)
    assert spy.total("download") == stats.chunks == 2
    # The batched quantisation matches the per-frame one, 16 bits kept.
    sr = torch.rand(3, 3, 8, 8) * 2.2 - 1.1
    for deep in (False, True):
        batched = host_arrays(quantise(sr, deep))
        assert all(np.array_equal(b, to_array(f, deep)) for b, f in zip(batched, sr, strict=True))


@pytest.mark.parametrize("deep,pix_fmt", [(False, "yuv420p"), (True, "yuv420p10le")])
@pytest.mark.parametrize("temporal", [False, True])
def test_planes_for_the_encoder_cost_no_transfer_more(deep, pix_fmt, temporal):
    """RGB -> YUV on the device: still one copy to the host per chunk (now of the planes) and
    nothing read; the frames come out as the encoder's planes."""
    up = tiny_upscaler(temporal=temporal)
    opts = sync_options(temporal, 32)
    spy, stats, out = run_counted(up, opts, 12, deep=deep, planes=yuv(pix_fmt))
    assert stats.chunks == 3
    assert spy.total("download") == stats.chunks == spy.counts["download:numpy"]
    assert spy.total("read") == 0
    assert spy.counts["upload:to"] == stats.chunks + 2
    dt = np.uint16 if deep else np.uint8
    for y, u, v in out:
        assert (y.shape, u.shape, v.shape) == ((128, 192), (64, 96), (64, 96))
        assert y.dtype == u.dtype == v.dtype == dt
    _, _, rgb = run_counted(up, opts, 12, deep=deep)  # the same frames as RGB
    assert all(a.shape == (128, 192, 3) for a in rgb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("planes", [None, "yuv420p"])
def test_cuda_steady_state_does_not_synchronise(planes):
    cpu = tiny_upscaler(temporal=True)
    dev = torch.device("cuda")
    up = Upscaler(cpu.model.to(dev), device=dev, dtype=torch.float32)
    opts = UpscaleOptions(chunk=6, chunk_overlap=2, tile=32, tile_overlap=8)
    process = up.processor(
        opts, lambda w, h: (4 * w, 4 * h), planes=yuv(planes) if planes else None
    )
    it = process(iter(frames(30)))
    first = [next(it)]  # the plan and the first chunks: memory queries, weights up once
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rest = list(it)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(first) + len(rest) == 30
    assert syncs == [], [str(w.message) for w in syncs[:3]]
