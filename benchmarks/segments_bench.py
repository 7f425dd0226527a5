"""Segments benchmark: worker scaling, the join's cost, the work folder's peak disk.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/segments_bench.py [--frames 3000]

1. Scaling: one clip through a tiny temporal network, ``--segment 10``, on 1 and on 2 CPU
   workers (``--devices cpu`` / ``cpu,cpu``), wall time of ``upscale_long``.
2. The join: ``--frames`` frames (25 fps) encoded as 10 segment files at 256x192 (the clip at
   x4), then joined with the source's AAC audio; seconds, and seconds per hour of video.
3. Peak disk of the work folder: all segments plus the joined output exist at the join.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from media import make_video  # noqa: E402
from tiny import tiny_dims  # noqa: E402

from adcvsr_cli.engine.upscaler import Upscaler  # noqa: E402
from adcvsr_cli.media import EncodeOptions  # noqa: E402
from adcvsr_cli.media.parts import encode_segment, join, scan  # noqa: E402
from adcvsr_cli.model import AdcVSR, init_random_  # noqa: E402
from adcvsr_cli.pipeline import UpscaleOptions  # noqa: E402
from adcvsr_cli.segmented import upscale_long  # noqa: E402


def tiny() -> Upscaler:
    m = AdcVSR(tiny_dims(temporal=True)).eval()
    init_random_(m, seed=0)
    return Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny")


def scaling(d: Path, frames: int) -> None:
    src = make_video(d / "clip.mp4", size=(64, 48), frames=frames, options={"g": "10"})
    enc = EncodeOptions(preset="ultrafast")
    opts = UpscaleOptions(chunk=6, chunk_overlap=2)
    print(f"scaling: {frames} frames 64x48 -> 256x192, tiny temporal network, --segment 10")
    for n in (1, 2, 1, 2):
        out = d / f"out{n}.mkv"
        out.unlink(missing_ok=True)
        peak = {"bytes": 0}

        def on_event(e: dict, peak: dict = peak) -> None:
            if e["type"] == "segment":
                peak["bytes"] += e["bytes"]

        t = time.perf_counter()
        upscale_long(src, out, [tiny() for _ in range(n)], opts, enc, segment=10, on_event=on_event)
        secs = time.perf_counter() - t
        print(
            f"  {n} worker(s): {secs:6.1f} s  {frames / secs:5.2f} frames/s   work folder peak "
            f"{(peak['bytes'] + out.stat().st_size) / 1e6:.2f} MB (segments "
            f"{peak['bytes'] / 1e6:.2f} MB + output {out.stat().st_size / 1e6:.2f} MB)"
        )


def join_cost(d: Path, frames: int) -> None:
    src = make_video(d / "long.mp4", size=(64, 48), frames=frames, audio="aac", options={"g": "25"})
    sc = scan(str(src), EncodeOptions())
    enc = EncodeOptions(preset="ultrafast")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    parts, n = [], 10
    bounds = np.linspace(0, sc.frames, n + 1).astype(int)
    for i in range(n):
        p = d / f"seg-{i:05d}.mkv"
        frames_i = ((np.roll(base, k, axis=1), sc.pts[k]) for k in range(bounds[i], bounds[i + 1]))
        encode_segment(
            str(src),
            str(p),
            lambda _yuv, frames_i=frames_i: frames_i,  # RGB frames
            fmt="matroska",
            info=sc.info,
            size=(256, 192),
            opts=enc,
            warn=print,
        )
        parts.append(str(p))
    seg_bytes = sum(Path(p).stat().st_size for p in parts)
    times = []
    for r in range(3):
        out = d / f"joined{r}.mkv"
        t = time.perf_counter()
        join(
            str(src),
            parts,
            str(out),
            fmt="matroska",
            info=sc.info,
            size=(256, 192),
            frames=sc.frames,
            opts=enc,
            warn=print,
        )
        times.append(time.perf_counter() - t)
    best = min(times)
    hours = sc.frames / 25 / 3600
    print(
        f"join: {sc.frames} frames (10 segments, 256x192, {seg_bytes / 1e6:.1f} MB of video + AAC): "
        f"{best:.2f} s (min of 3) = {best / hours:.0f} s per hour of video, "
        f"{seg_bytes / best / 1e6:.0f} MB/s of segment data"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000, help="frames of the join's clip")
    ap.add_argument("--scale-frames", type=int, default=60, help="frames of the scaling clip")
    a = ap.parse_args()
    torch.set_num_threads(1)
    d = Path(tempfile.mkdtemp(prefix="adcvsr-segbench-"))
    try:
        scaling(d, a.scale_frames)
        join_cost(d, a.frames)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
