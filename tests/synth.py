"""Synthetic videos with known motion for the flicker meter (generated with PyAV, lossless), and
clips with scene cuts for ranges and previews."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from fractions import Fraction

import av
import numpy as np

from adcvsr_cli.reference import bicubic


def texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth, richly textured RGB field (sums of sinusoids) at real coordinates -> uint8."""
    chans = []
    for k, (a, b, c) in enumerate([(0.31, 0.17, 0.0), (0.23, -0.29, 1.3), (-0.13, 0.37, 2.1)]):
        v = (
            np.sin(a * x + b * y + c)
            + 0.6 * np.sin(0.11 * x - 0.19 * y + k)
            + 0.4 * np.cos(0.07 * (x + 2 * y) + 2 * k)
        )
        chans.append(128 + 55 * v)
    return np.clip(np.rint(np.stack(chans, -1)), 0, 255).astype(np.uint8)


def shifted(i: int, w: int, h: int, dx: float = 1.0, dy: float = 0.5) -> np.ndarray:
    """Frame ``i`` of the texture panning by (dx, dy) pixels per frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return texture(x + dx * i, y + dy * i)


def rotating(i: int, w: int, h: int, degrees: float = 1.5) -> np.ndarray:
    """Frame ``i`` of the texture turning about the frame centre by ``degrees`` per frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    t = math.radians(degrees * i)
    xr = cx + (x - cx) * math.cos(t) - (y - cy) * math.sin(t)
    yr = cy + (x - cx) * math.sin(t) + (y - cy) * math.cos(t)
    return texture(xr, yr)


def write_lossless(
    path: str | os.PathLike[str], frames: Iterable[np.ndarray], rate: int = 25
) -> str:
    """RGB frames -> FFV1 in Matroska (lossless RGB), so the meter reads back exactly these."""
    path = os.fspath(path)
    with av.open(path, "w") as c:
        s = None
        for i, f in enumerate(frames):
            if s is None:
                s = c.add_stream("ffv1", rate=rate)
                s.width, s.height, s.pix_fmt = f.shape[1], f.shape[0], "bgr0"
                s.time_base = Fraction(1, rate)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf = vf.reformat(format="bgr0")
            vf.pts = i
            c.mux(s.encode(vf))
        assert s is not None
        c.mux(s.encode(None))
    return path


def flickered(frames: list[np.ndarray], amplitude: float, scale: int = 4) -> list[np.ndarray]:
    """Bicubic x``scale`` of ``frames`` with brightness alternating by +-``amplitude``."""
    out = []
    for i, f in enumerate(frames):
        b = bicubic(f, f.shape[1] * scale, f.shape[0] * scale).astype(np.float64)
        gain = 1.0 + amplitude * (1 if i % 2 else -1)
        out.append(np.clip(np.rint(b * gain), 0, 255).astype(np.uint8))
    return out


def make_pair(
    folder: str | os.PathLike[str],
    gen: Callable[[int, int, int], np.ndarray],
    *,
    amplitude: float = 0.0,
    frames: int = 8,
    size: tuple[int, int] = (64, 48),
    name: str = "clip",
) -> tuple[str, str]:
    """(input, output) files: ``frames`` frames of ``gen``, and their flickered bicubic x4."""
    lr = [gen(i, *size) for i in range(frames)]
    src = write_lossless(os.path.join(folder, f"{name}_in.mkv"), lr)
    dst = write_lossless(os.path.join(folder, f"{name}_out.mkv"), flickered(lr, amplitude))
    return src, dst


def shots_clip(path, lengths, size=32, seed=0, interlaced=False):
    """Shots of different block textures, each moving 1 px a frame (B-frames, keyint 8): the
    scene detector finds a cut at every shot start but the first. ``interlaced``: coded as
    top-field-first fields."""
    rng = np.random.default_rng(seed)
    params = "keyint=8:min-keyint=8:bframes=2:scenecut=0" + (":interlaced=1:tff=1" * interlaced)
    x264 = {"preset": "medium", "x264-params": params}
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25, options=x264)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        i = 0
        for length in lengths:
            tex = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            tex = tex.repeat(8, 0).repeat(8, 1)
            for k in range(length):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(tex, k, 1)), "rgb24")
                f.pts, i = i, i + 1
                out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path
