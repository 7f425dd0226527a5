"""Render the small sample clip used by the README's main command (no input file needed).

    python examples/make_sample.py [OUT]      # default: examples/sample.mp4

A 2-second 160x96 clip at 24000/1001 fps: a moving gradient with text-like bars and a sine
tone (AAC), so that an upscale shows both detail and stream copying.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def render(out: Path, seconds: float = 2.0, width: int = 160, height: int = 96) -> Path:
    rate = Fraction(24000, 1001)
    frames = int(seconds * rate)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as c:
        v = c.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "medium"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=48000, layout="mono")
        for i in range(frames):
            t = i / float(rate)
            r = 128 + 100 * np.sin(xx / 17.0 + 2 * t)
            g = 128 + 100 * np.sin(yy / 11.0 - 3 * t)
            b = 128 + 100 * np.cos((xx + yy) / 23.0 + t)
            img = np.stack([r, g, b], axis=-1)
            # Thin bars and a checker patch: fine detail for the network to work on.
            x0 = int(20 + 60 * (1 + np.sin(t)))
            img[20:76, x0 : x0 + 2] = 250
            img[20:76, x0 + 5 : x0 + 6] = 10
            img[60:84, 100:148] = np.where(((xx[60:84, 100:148] // 3 + yy[60:84, 100:148] // 3) % 2) == 0, 235, 20)[..., None]
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        n = int(48000 * seconds)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32)
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate = 48000
            af.pts = s
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("sample.mp4")
    print(render(target))
