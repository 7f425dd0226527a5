"""Render the small sample clip used by the README's first command (no input file needed).

    python examples/make_sample.py [OUT]      # default: out/sample.mp4 under the current folder

A 2-second 160x96 clip at 24000/1001 fps: a moving gradient with thin bars and a checker patch,
and a 440 Hz tone (AAC), so that an upscale shows both detail and stream copying. The file is
the same, byte for byte, every time it is made on the same installation (single-threaded
encoders, no dates or version strings in the container), and its index comes first
(``movflags=+faststart``), so that it also streams through a pipe (``examples/pipe.sh``).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = Fraction(24000, 1001)
SAMPLE_RATE = 48000


def picture(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i`` as an RGB uint8 array (height, width, 3)."""
    t = i / float(RATE)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(xx / 17.0 + 2 * t)
    g = 128 + 100 * np.sin(yy / 11.0 - 3 * t)
    b = 128 + 100 * np.cos((xx + yy) / 23.0 + t)
    img = np.stack([r, g, b], axis=-1)
    # Thin bars and a checker patch: fine detail for the network to work on.
    x0 = int(20 + 60 * (1 + np.sin(t)))
    img[20:76, x0 : x0 + 2] = 250
    img[20:76, x0 + 5 : x0 + 6] = 10
    checker = ((xx[60:84, 100:148] // 3 + yy[60:84, 100:148] // 3) % 2) == 0
    img[60:84, 100:148] = np.where(checker, 235, 20)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def render(out: Path, seconds: float = 2.0, width: int = 160, height: int = 96) -> Path:
    """Write the sample clip to ``out`` (its folder is created) and return ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # +bitexact: no library version strings in the file; the mp4 muxer writes no date unless
    # asked. +faststart: the index (moov) before the media data.
    container_opts = {"movflags": "+faststart", "fflags": "+bitexact"}
    with av.open(str(out), "w", format="mp4", options=container_opts) as c:
        v = c.add_stream(
            "libx264",
            rate=RATE,
            options={"crf": "20", "preset": "medium", "threads": "1", "flags": "+bitexact"},
        )
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=SAMPLE_RATE, layout="mono", options={"flags": "+bitexact"})
        for i in range(int(seconds * RATE)):
            frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="rgb24")
            c.mux(v.encode(frame))
        c.mux(v.encode(None))
        n = int(SAMPLE_RATE * seconds)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate = SAMPLE_RATE
            af.pts = s
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out", "sample.mp4")
    print(render(target))
