"""Scene cuts on generated clips: found at hard cuts, not in motion, fades or flicker.

Budget: about a second on 2 CPU cores (64x96 frames, no network).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adcvsr_cli.engine.chunking import StreamingChunker, plan_chunks
from adcvsr_cli.engine.scenes import SceneDetector, detect_cuts, thumbnail

H, W = 64, 96


def _texture(seed, h, w, tint=(0.0, 0.0, 0.0)):
    g = torch.Generator().manual_seed(seed)
    t = F.avg_pool2d(torch.randn(1, 3, h + 8, w + 8, generator=g), 9, 1)[0] * 3
    return (t + torch.tensor(tint).view(3, 1, 1)).clamp(-1, 1)


def _view(seed, offsets, tint=(0.0, 0.0, 0.0)):
    """Frames (len(offsets), 3, H, W) in [-1, 1]: one texture seen at these horizontal offsets."""
    tex = _texture(seed, H, W + 400, tint)
    frames = []
    for x0 in offsets:
        a, f = int(x0), x0 - int(x0)
        frames.append((1 - f) * tex[:, :, a : a + W] + f * tex[:, :, a + 1 : a + 1 + W])
    return torch.stack(frames)


def _pan(seed, n, speed, tint=(0.0, 0.0, 0.0)):
    """n frames of a texture panning right by ``speed`` pixels a frame."""
    return _view(seed, [speed * i for i in range(n)], tint)


def test_two_shots_give_one_cut_and_no_chunk_spans_it():
    clip = torch.cat([_pan(1, 30, 1.0), _pan(2, 40, 1.5, tint=(0.2, -0.1, 0.0))])
    assert detect_cuts(clip) == [30]
    chunks = plan_chunks(len(clip), 25, 4, cuts=[30])
    assert all(not (c.start < 30 < c.end) for c in chunks)
    # the streaming path: the detector tells the chunker as frames arrive
    det = SceneDetector()
    sc = StreamingChunker(lambda x: x, chunk=25, overlap=4)
    out = []
    for f in clip:
        out += sc.push(f, cut=det.feed(f))
    out += sc.finish()
    assert len(out) == len(clip)
    assert sc.chunks_run == chunks
    assert all(not (c.start < 30 < c.end) for c in sc.chunks_run)


def test_cuts_are_found_even_between_similar_looking_shots_in_motion():
    a = _pan(3, 20, 1.5)
    b = _pan(4, 20, 1.5)  # same statistics, other content
    c = _pan(5, 3, 1.5)  # a very short shot
    assert detect_cuts(torch.cat([a, b, c, a[:10]])) == [20, 40, 43]


@pytest.mark.parametrize("speed", [0.0, 0.5, 2.0, 4.0])
def test_no_cut_in_smooth_motion(speed):
    assert detect_cuts(_pan(6, 60, speed)) == []


def test_motion_that_starts_suddenly_is_at_most_one_cut():
    still = [0.0] * 20
    assert detect_cuts(_view(7, still + [1.0 * i for i in range(40)])) == []
    # a pan of 4 % of the frame width per frame, from a standstill: one cut at most, never more
    assert detect_cuts(_view(7, still + [4.0 * i for i in range(40)])) in ([], [21])


def test_no_cut_in_fades_or_exposure_flicker():
    shot = _pan(8, 40, 1.0)
    other = _pan(9, 40, 1.0)
    k = torch.linspace(1, 0, 15).view(15, 1, 1, 1)
    fade_out = torch.cat([shot[:20], (shot[20:35] + 1) * k - 1])  # to black in 15 frames
    assert detect_cuts(fade_out) == []
    mix = torch.linspace(0, 1, 12).view(12, 1, 1, 1)
    dissolve = torch.cat([shot[:20], shot[20:32] * (1 - mix) + other[20:32] * mix, other[32:]])
    assert detect_cuts(dissolve) == []
    g = torch.Generator().manual_seed(0)
    gain = 0.7 + 0.6 * torch.rand(40, 1, 1, 1, generator=g)  # old-film exposure flicker
    assert detect_cuts(((shot + 1) * gain - 1).clamp(-1, 1)) == []


def test_input_formats_agree():
    clip = torch.cat([_pan(1, 10, 1.0), _pan(2, 10, 1.0)])
    as_uint8 = ((clip + 1) * 127.5).round().to(torch.uint8)
    as_numpy = [f.permute(1, 2, 0).numpy() for f in as_uint8]  # PyAV's (H, W, 3) rgb24
    assert detect_cuts(clip) == detect_cuts(as_uint8) == detect_cuts(as_numpy) == [10]
    t = thumbnail(as_numpy[0])
    assert t.shape[0] == 3 and 900 <= t.shape[1] * t.shape[2] <= 1100
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    with pytest.raises(ValueError, match="uint8"):
        thumbnail(np.zeros((4, 4, 3), dtype=np.float32))


def test_first_frame_and_min_scene_len():
    a, b, c = _pan(1, 10, 1.0), _pan(2, 2, 1.0), _pan(3, 10, 1.0)
    clip = torch.cat([a, b, c])
    det = SceneDetector()
    flags = [det.feed(f) for f in clip]
    assert (
        flags[0] is False
        and flags[1] is False
        and [i for i, x in enumerate(flags) if x] == [10, 12]
    )
    assert len(det.scores) == len(clip)
    assert detect_cuts(clip, min_scene_len=5) == [10]  # the 2-frame shot is merged
    with pytest.raises(ValueError, match="ratio > 1"):
        SceneDetector(ratio=1.0)
