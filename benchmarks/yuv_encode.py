"""Where the RGB -> YUV conversion costs: on the encoder thread (the sink's swscale ``reformat``,
before) or in the post stage on the device (``engine/yuv.py``, after), per frame.

    OMP_NUM_THREADS=1 python benchmarks/yuv_encode.py [--size 640x384] [--frames 8] [--rounds 5]

For 8-bit (rgb24 -> yuv420p) and 16-bit sources (rgb48le -> yuv420p10le), BT.709 limited:
``before`` = the post stage's quantisation to RGB and its copy to the host, then what the
encoder thread did per frame besides encoding (ndarray -> VideoFrame -> reformat, as
``ContainerSink`` does for RGB frames); ``after`` = the post stage's quantisation straight to
planes (``levels`` + ``to_planes``) and its copy, then what the encoder thread does now
(``frame_from_planes``). The post stage runs on this machine's CPU as its device (on a GPU it
runs there); ``encode`` = libx264 CRF 18 medium per frame, the same before and after, for scale. Rounds interleave the variants; median and min of the rounds, ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import torch

from adcvsr_cli.engine.frames import host_arrays, levels, quantise
from adcvsr_cli.engine.yuv import layout_for, split_planes, to_planes
from adcvsr_cli.media.encode import frame_from_planes


def _frames(n: int, h: int, w: int) -> torch.Tensor:
    """(n, 3, h, w) finished frames in [-1, 1] as the post stage gets them: smooth, moving."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = []
    for i in range(n):
        r = torch.sin((xx + 3 * i) / 17.0)
        g = torch.cos((yy - 2 * i) / 11.0)
        b = torch.sin((xx + yy + i) / 23.0)
        out.append(torch.stack([r, g, b]) * 0.95)
    return torch.stack(out).float()


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _steps(sr: torch.Tensor, deep: bool, pix: str) -> dict[str, Callable[[], object]]:
    """The timed steps of one source -> format case, each over the chunk's frames."""
    n, _, h, w = sr.shape
    layout = layout_for(pix, 1, False, w, h, deep_source=deep)
    assert layout is not None
    src = "rgb48le" if deep else "rgb24"
    rgb = host_arrays(quantise(sr, deep))
    planes = split_planes(to_planes(levels(sr, deep), layout, deep).numpy(), layout)

    def before_post() -> None:
        host_arrays(quantise(sr, deep))

    def before_encoder() -> None:
        for a in rgb:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format=src)
            vf.reformat(format=pix, dst_colorspace=1, dst_color_range=1)

    def after_post() -> None:
        split_planes(to_planes(levels(sr, deep), layout, deep).numpy(), layout)

    def after_encoder() -> None:
        for p in planes:
            frame_from_planes(p, pix, w, h)

    def encode() -> None:
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = w, h, pix
        cc.time_base = Fraction(1, 25)
        cc.options = {"crf": "18", "preset": "medium"}
        for i, p in enumerate(planes):
            vf = frame_from_planes(p, pix, w, h)
            vf.pts = i
            cc.encode(vf)
        cc.encode(None)

    return {
        "before: post, quantise to RGB": before_post,
        "before: encoder thread, from_ndarray+reformat": before_encoder,
        "after: post, levels + to_planes": after_post,
        "after: encoder thread, frame_from_planes": after_encoder,
        "both: encoder thread, libx264 crf 18 medium": encode,
    }


def run(size: tuple[int, int], n: int, rounds: int) -> None:
    w, h = size
    print(
        f"{w}x{h}, {n} frames per chunk, {rounds} rounds, torch threads {torch.get_num_threads()}"
    )
    print(f"{'source -> format':28} {'step (per frame)':46} {'median ms':>9} {'min ms':>7}")
    for deep, pix in ((False, "yuv420p"), (True, "yuv420p10le")):
        steps = _steps(_frames(n, h, w), deep, pix)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for fn in steps.values():
            fn()  # warm-up
        for _ in range(rounds):
            for k, fn in steps.items():
                times[k].append(_timed(fn) / n * 1000.0)
        case = ("rgb48le" if deep else "rgb24") + " -> " + pix
        for k, ts in times.items():
            print(f"{case:28} {k:46} {statistics.median(ts):9.2f} {min(ts):7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="640x384", help="output frame size WxH")
    ap.add_argument("--frames", type=int, default=8, help="frames per chunk")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    run((w, h), a.frames, a.rounds)


if __name__ == "__main__":
    main()
