"""Where the RGB -> YUV conversion costs: on the encoder thread (the sink's swscale ``reformat``,
before) or in the post stage on the device (``engine/yuv.py``, after), per frame.

    OMP_NUM_THREADS=1 python benchmarks/yuv_encode.py [--size 640x384] [--frames 8] [--rounds 5]
        [--e2e FRAMES]

For 8-bit (rgb24 -> yuv420p) and 16-bit sources (rgb48le -> yuv420p10le), BT.709 limited:
``before`` = the post stage's quantisation to RGB and its copy to the host, then what the
encoder thread did per frame besides encoding (ndarray -> VideoFrame -> reformat, as
``ContainerSink`` does for RGB frames); ``after`` = the post stage's quantisation straight to
planes (``levels`` + ``to_planes``) and its copy, then what the encoder thread does now
(``frame_from_planes``). The post stage runs on this machine's CPU as its device (on a GPU it
runs there); ``encode`` = libx264 CRF 18 medium per frame, the same before and after, for scale.
``--e2e N``: whole transcodes of a generated N-frame clip at a quarter of the size through the
null network (nearest x4), RGB frames against planes, alternated: the encoder thread's busy
time, the processing thread's time and the total, per frame, medians. Rounds interleave the variants; median and min of the rounds, ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

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


def _clip(path: Path, n: int, h: int, w: int) -> None:
    """A smooth moving clip (libx264 CRF 10) of ``n`` frames."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25, options={"crf": "10", "preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i, sr in enumerate(_frames(n, h, w)):
            rgb = host_arrays(quantise(sr[None], False))[0]
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf.reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)


def _transcode(up, src: Path, dst: Path, planes: bool):
    """One run of ``src`` through ``up`` (adain, libx264 CRF 18 medium), joined as
    ``pipeline.upscale`` joins it: frames to the encoder as RGB, or as its planes."""
    from adcvsr_cli.engine.options import UpscaleOptions
    from adcvsr_cli.media import EncodeOptions, Events, open_session

    size = lambda info: (4 * info.width, 4 * info.height)  # noqa: E731
    enc = EncodeOptions(overwrite=True)
    t_start = time.monotonic()
    with open_session(src, dst, out_size=size, options=enc, events=Events(None)) as s:
        yuv = s.yuv_target() if planes else None

        def planes_for(w: int, h: int, deep: bool):
            return None if yuv is None else layout_for(*yuv, w, h, deep_source=deep)

        process = up.processor(
            UpscaleOptions(color_fix="adain"), lambda w, h: (4 * w, 4 * h), planes=planes_for
        )
        run = s.start()
        for out in process(run.decoded()):
            run.put(out)
        return s.commit(run.end(), t_start)


def run_e2e(size: tuple[int, int], n: int, rounds: int) -> None:
    """The whole transcode with the null network (nearest x4): RGB frames (before) against
    planes from the post stage (after), alternated; the encoder thread's busy time per frame."""
    from adcvsr_cli.bench import tiny_dims
    from adcvsr_cli.engine.upscaler import Upscaler
    from adcvsr_cli.floor import NullNetwork

    w, h = size
    up = Upscaler(NullNetwork(tiny_dims(False)), device=torch.device("cpu"), dtype=torch.float32)
    times: dict[str, list[tuple[float, float, float]]] = {"before (rgb)": [], "after (planes)": []}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.mp4", Path(tmp) / "out.mkv"
        _clip(src, n, h // 4, w // 4)
        for r in range(rounds + 1):
            for name in times:
                rep = _transcode(up, src, dst, name.startswith("after"))
                k = rep.frames_out / 1000.0
                if r:  # round 0 warms up
                    row = (rep.seconds_encode / k, rep.seconds_process / k, rep.seconds_total / k)
                    times[name].append(row)
    print(f"transcode {w // 4}x{h // 4} -> {w}x{h}, {n} frames, null network, adain, libx264")
    print("ms/frame, median (min) of the rounds")
    print(f"{'frames':16} {'encoder thread':>16} {'process':>16} {'total':>16}")
    for name, rows in times.items():
        cols = [f"{statistics.median(c):7.2f} ({min(c):6.2f})" for c in zip(*rows, strict=True)]
        print(f"{name:16} {cols[0]:>16} {cols[1]:>16} {cols[2]:>16}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="640x384", help="output frame size WxH")
    ap.add_argument("--frames", type=int, default=8, help="frames per chunk")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--e2e", type=int, metavar="FRAMES", help="also time whole transcodes")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    run((w, h), a.frames, a.rounds)
    if a.e2e:
        run_e2e((w, h), a.e2e, a.rounds)


if __name__ == "__main__":
    main()
