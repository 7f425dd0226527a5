"""The pipeline against its floor: ``adcvsr upscale``'s code, file to file, next to the simplest
loop that does the same work in one thread.

The loop decodes with PyAV, runs the same configured network one frame at a time, applies the
same colour fix, quantises and encodes with the same encoder settings, all in one thread, one
step after the other. The pipeline (:func:`adcvsr_cli.pipeline.upscale`) should beat it by
overlapping decoding, the network and encoding; its rate relative to the loop's is the measure.

Two networks: the *null* network (nearest x4 on the device, no weights: the media machinery
alone) and a small random network (the network's structure at tiny widths). Used by protocol C
of :mod:`adcvsr_cli.bench`. Nothing here prints.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .model import AdcVSRDims, Layout

# The encoder settings of both sides (the CLI's defaults for an .mp4 of 8-bit input).
ENCODER: dict[str, Any] = {"codec": "libx264", "crf": 18, "preset": "medium", "pix_fmt": "yuv420p"}


class NullNetwork(nn.Module):
    """Nearest x4 on the device: the pipeline with no learned work. ``dims`` gives the frame
    rules of a real network (scale, input multiple, no temporal blocks)."""

    def __init__(self, dims: AdcVSRDims) -> None:
        super().__init__()
        if dims.has_temporal:
            raise ValueError("the null network has no temporal blocks: give image-model dims")
        self.dims = dims
        self.layout = Layout()

    def set_layout(self, layout: Layout) -> NullNetwork:
        self.layout = layout  # nothing to convert: no weights
        return self

    def forward(
        self, x: torch.Tensor, frames: int = 1, decode_group: int | None = None
    ) -> torch.Tensor:
        return F.interpolate(x, scale_factor=float(self.dims.scale), mode="nearest")


def simple_loop(
    src: Path, dst: Path, upscaler: Any, color_fix: str, encoder: dict[str, Any] = ENCODER
) -> int:
    """Upscale ``src`` into ``dst`` in one thread, frame by frame, with ``upscaler``'s
    configured network (its ``network`` and ``dims``). Returns the frames written."""
    import av

    from .engine.colorfix import make_color_fix
    from .engine.frames import to_array, to_tensor
    from .engine.tiling import pad_to_multiple

    fix = make_color_fix(color_fix)
    scale, frames = upscaler.dims.scale, 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream(
            encoder["codec"],
            rate=istream.average_rate or 25,
            options={"crf": str(encoder["crf"]), "preset": encoder["preset"]},
        )
        ostream.width = istream.codec_context.width * scale
        ostream.height = istream.codec_context.height * scale
        ostream.pix_fmt = encoder["pix_fmt"]
        for frame in inp.decode(istream):
            lr = to_tensor(frame.to_ndarray(format="rgb24"), upscaler.device)[None]
            x, (ph, pw) = pad_to_multiple(lr, upscaler.dims.multiple)
            with torch.inference_mode():
                sr = upscaler.network(x, 1)
                sr = sr[..., : sr.shape[-2] - ph * scale, : sr.shape[-1] - pw * scale]
                sr = fix(sr, lr, [False])
            arr = to_array(sr[0], False)
            for pkt in ostream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(pkt)
            frames += 1
        for pkt in ostream.encode():
            out.mux(pkt)
    return frames


@dataclass
class FloorRun:
    """Seconds of each timed run of both sides (interleaved) and the frames of one file."""

    loop_s: list[float]
    pipeline_s: list[float]
    frames: int
    pipeline_frames: int

    def fields(self) -> dict[str, Any]:
        loop, pipe = statistics.median(self.loop_s), statistics.median(self.pipeline_s)
        return {
            "frames": self.frames,
            "pipeline_frames": self.pipeline_frames,
            "loop_s_median": round(loop, 4),
            "pipeline_s_median": round(pipe, 4),
            "loop_s_all": [round(t, 4) for t in self.loop_s],
            "pipeline_s_all": [round(t, 4) for t in self.pipeline_s],
            "loop_fps": round(self.frames / loop, 4),
            "pipeline_fps": round(self.frames / pipe, 4),
            "pipeline_vs_loop": round(loop / pipe, 4),
        }


def time_floor(
    src: Path, workdir: Path, upscaler: Any, runs: int, warmup: int = 1, color_fix: str = "adain"
) -> FloorRun:
    """Both sides on ``src``, alternating (loop, pipeline) ``warmup`` + ``runs`` times, wall
    time. The pipeline is :func:`~adcvsr_cli.pipeline.upscale` with the same encoder settings
    and colour fix, and otherwise the CLI's defaults."""
    from .media import EncodeOptions
    from .pipeline import UpscaleOptions, upscale

    encode = EncodeOptions(
        codec=ENCODER["codec"],
        crf=ENCODER["crf"],
        preset=ENCODER["preset"],
        pix_fmt=ENCODER["pix_fmt"],
        no_audio=True,
        overwrite=True,
    )
    options = UpscaleOptions(color_fix=color_fix)
    frames = {"loop": 0, "pipeline": 0}

    def loop() -> None:
        frames["loop"] = simple_loop(src, workdir / "floor-loop.mp4", upscaler, color_fix)

    def pipeline() -> None:
        rep = upscale(src, workdir / "floor-pipeline.mp4", upscaler, options, encode)
        frames["pipeline"] = rep.frames_out

    sides: list[tuple[Callable[[], None], list[float]]] = [(loop, []), (pipeline, [])]
    for r in range(warmup + runs):
        for fn, times in sides:
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times.append(time.perf_counter() - t0)
    return FloorRun(sides[0][1], sides[1][1], frames["loop"], frames["pipeline"])
