"""The pipeline against its floor: ``adcvsr upscale``'s code, file to file, next to the simplest
loop that does the same work in one thread, and next to each stage alone.

The loop decodes with PyAV, runs the same configured network one frame at a time over the tiles
the pipeline's planner chose for the file, applies the same colour fix, quantises and encodes
with the same encoder settings, all in one thread, one step after the other. The pipeline
(:func:`adcvsr_cli.pipeline.upscale`) should beat it by overlapping decoding, the network and
encoding; its rate relative to the loop's is the measure.

No pipeline can beat its slowest stage, so three more timings bound what overlap can give: the
network alone over the loop's decoded frames (the same calls, nothing else), the encoder alone
over the loop's output pictures (the same settings, nothing else), and the colour fix and
quantisation as timed inside the loop. The slowest of the three is the *bound* (on a GPU, where
post is queued on the network's thread, the network and post count as one stage);
``loop / bound`` is the most any overlap could gain on this machine and ``bound / pipeline``
is how close the pipeline gets to it. The encoder alone is given RGB pictures, as the loop's
encoder is, so its time includes swscale's RGB -> Y'CbCr conversion, which the pipeline makes
in its post stage when the encoder takes planes: there the bound is a few per cent high.

Two networks: the *null* network (nearest x4 on the device, no weights: the media machinery
alone) and a small random network (the network's structure at tiny widths). Used by protocol C
of :mod:`adcvsr_cli.bench`. Nothing here prints.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .engine.device import synchronize
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


@dataclass
class LoopWork:
    """What the loop runs per frame, fixed before timing: the tile grid the pipeline's planner
    chose for the file, the colour fix, the frame rate, and :data:`ENCODER` plus
    ``encoder_options`` (given to both sides as the CLI's ``-e key=value`` would be)."""

    tile: int
    overlap: int
    rate: Any = 25
    color_fix: str = "adain"
    encoder_options: dict[str, str] = field(default_factory=dict)

    def add_stream(self, out: Any, width: int, height: int) -> Any:
        """The output video stream of ``out`` with these encoder settings."""
        options = {"crf": str(ENCODER["crf"]), "preset": ENCODER["preset"]}
        options |= {str(k): str(v) for k, v in self.encoder_options.items()}
        stream = out.add_stream(ENCODER["codec"], rate=self.rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, ENCODER["pix_fmt"]
        return stream


def _encode(out: Any, stream: Any, arr: np.ndarray | None) -> None:
    """One RGB picture through ``stream`` into ``out``; None: the encoder's last packets."""
    import av

    frame = None if arr is None else av.VideoFrame.from_ndarray(arr, format="rgb24")
    for pkt in stream.encode(frame):
        out.mux(pkt)


def _network_call(upscaler: Any, work: LoopWork) -> Callable[[torch.Tensor], torch.Tensor]:
    """One LR frame (1, 3, H, W) on the device -> its SR frame, over ``work``'s tiles."""
    from .engine.tiling import run_tiled

    scale, multiple = upscaler.dims.scale, upscaler.dims.multiple

    def call(lr: torch.Tensor) -> torch.Tensor:
        fn = lambda t: upscaler.network(t, 1)  # noqa: E731
        return run_tiled(fn, lr, work.tile, work.overlap, scale, multiple)

    return call


def simple_loop(
    src: Path,
    dst: Path,
    upscaler: Any,
    work: LoopWork,
    keep: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    post_s: list[float] | None = None,
) -> int:
    """Upscale ``src`` into ``dst`` in one thread, frame by frame, with ``upscaler``'s
    configured network. ``keep``: lists that receive the decoded LR frames and the output
    pictures (for the stage-alone timings); ``post_s`` receives the seconds of the colour fix
    and quantisation of each frame. Returns the frames written."""
    import av

    from .engine.colorfix import make_color_fix
    from .engine.frames import to_array, to_tensor

    fix, net, frames = make_color_fix(work.color_fix), _network_call(upscaler, work), 0
    scale = upscaler.dims.scale
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        istream = inp.streams.video[0]
        ctx = istream.codec_context
        ostream = work.add_stream(out, ctx.width * scale, ctx.height * scale)
        for frame in inp.decode(istream):
            rgb = frame.to_ndarray(format="rgb24")
            lr = to_tensor(rgb, upscaler.device)[None]
            with torch.inference_mode():
                sr = net(lr)
                synchronize(upscaler.device)
                t0 = time.perf_counter()
                sr = fix(sr, lr, [False])
            arr = to_array(sr[0], False)
            if post_s is not None:
                post_s.append(time.perf_counter() - t0)
            if keep is not None:
                keep[0].append(rgb)
                keep[1].append(arr)
            _encode(out, ostream, arr)
            frames += 1
        _encode(out, ostream, None)
    return frames


def network_only(frames: Sequence[np.ndarray], upscaler: Any, work: LoopWork) -> None:
    """The loop's network calls alone, on frames already decoded (uploaded one by one, as the
    loop does; the result waited for)."""
    from .engine.frames import to_tensor

    net = _network_call(upscaler, work)
    with torch.inference_mode():
        for rgb in frames:
            net(to_tensor(rgb, upscaler.device)[None])
    synchronize(upscaler.device)


def encoder_only(pictures: Sequence[np.ndarray], dst: Path, work: LoopWork) -> None:
    """The loop's encoder alone: ``pictures`` (RGB, already computed) into ``dst``."""
    import av

    h, w = pictures[0].shape[:2]
    with av.open(str(dst), "w") as out:
        stream = work.add_stream(out, w, h)
        for arr in pictures:
            _encode(out, stream, arr)
        _encode(out, stream, None)


# The stages whose time alone bounds the pipeline's (each runs in its own thread there).
STAGES = ("network", "post", "encoder")


@dataclass
class FloorRun:
    """Seconds of each timed run of every side (interleaved) and the frames of one file."""

    loop_s: list[float]
    pipeline_s: list[float]
    network_s: list[float]
    encoder_s: list[float]
    post_s: list[float]  # the colour fix and quantisation, timed inside each loop run
    frames: int
    pipeline_frames: int
    tile: int
    post_with_network: bool = False  # post runs on the network's thread (on a GPU)

    def fields(self) -> dict[str, Any]:
        med = {k: statistics.median(v) for k, v in self._sides().items()}
        stages = {k: med[k] for k in STAGES}
        if self.post_with_network:
            stages = {"network+post": med["network"] + med["post"], "encoder": med["encoder"]}
        stage = max(stages, key=lambda k: stages[k])
        bound = stages[stage]
        out: dict[str, Any] = {"frames": self.frames, "pipeline_frames": self.pipeline_frames}
        out["loop_tile"] = self.tile
        for k, v in self._sides().items():
            out[f"{k}_s_median"] = round(med[k], 4)
            out[f"{k}_s_all"] = [round(t, 4) for t in v]
        out.update(
            loop_fps=round(self.frames / med["loop"], 4),
            pipeline_fps=round(self.frames / med["pipeline"], 4),
            pipeline_vs_loop=round(med["loop"] / med["pipeline"], 4),
            bound_stage=stage,
            bound_s=round(bound, 4),
            overlap_ceiling=round(med["loop"] / bound, 4),
            pipeline_vs_bound=round(bound / med["pipeline"], 4),
        )
        return out

    def _sides(self) -> dict[str, list[float]]:
        return {
            "loop": self.loop_s,
            "pipeline": self.pipeline_s,
            "network": self.network_s,
            "encoder": self.encoder_s,
            "post": self.post_s,
        }


def loop_work(
    src: Path, upscaler: Any, options: Any, encoder_options: dict[str, str] | None
) -> LoopWork:
    """The loop's work for ``src``: the tiles the pipeline's planner picks with ``options``
    (memory as free now), its colour fix, the encoder settings."""
    from .media import probe

    info = probe(src)
    tile = upscaler.choose_plan(info.height, info.width, options).plan.tile
    rate = info.avg_rate or 25
    return LoopWork(tile, options.tile_overlap, rate, options.color_fix, encoder_options or {})


def time_floor(
    src: Path,
    workdir: Path,
    upscaler: Any,
    runs: int,
    warmup: int = 1,
    options: Any = None,
    encoder_options: dict[str, str] | None = None,
) -> FloorRun:
    """Every side on ``src``, alternating (loop, network alone, encoder alone, pipeline)
    ``warmup`` + ``runs`` times, wall time. The pipeline is :func:`~adcvsr_cli.pipeline.upscale`
    with ``options`` (default: the CLI's, colour fix adain), the same encoder settings and
    ``encoder_options``; the loop takes the tiles its planner picks; the stage-alone sides take
    the loop's decoded frames and output pictures."""
    from .media import EncodeOptions
    from .pipeline import UpscaleOptions, upscale

    options = options or UpscaleOptions(color_fix="adain")
    work = loop_work(src, upscaler, options, encoder_options)
    encode = EncodeOptions(
        codec=ENCODER["codec"],
        crf=ENCODER["crf"],
        preset=ENCODER["preset"],
        pix_fmt=ENCODER["pix_fmt"],
        encoder_options=dict(work.encoder_options),
        no_audio=True,
        overwrite=True,
    )
    frames = {"loop": 0, "pipeline": 0}
    kept: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    post_s: list[float] = []

    def loop() -> None:
        kept[0].clear()
        kept[1].clear()
        per_frame: list[float] = []
        dst = workdir / "floor-loop.mp4"
        frames["loop"] = simple_loop(src, dst, upscaler, work, kept, per_frame)
        post_s.append(sum(per_frame))

    def pipeline() -> None:
        kept[1].clear()  # the loop's pictures are not held while the pipeline runs
        rep = upscale(src, workdir / "floor-pipeline.mp4", upscaler, options, encode)
        frames["pipeline"] = rep.frames_out

    sides: list[tuple[Callable[[], None], list[float]]] = [
        (loop, []),
        (lambda: network_only(kept[0], upscaler, work), []),
        (lambda: encoder_only(kept[1], workdir / "floor-encoder.mp4", work), []),
        (pipeline, []),
    ]
    for r in range(warmup + runs):
        for fn, times in sides:
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times.append(time.perf_counter() - t0)
    loop_s, net_s, enc_s, pipe_s = (t for _, t in sides)
    post, on_gpu = post_s[warmup:], upscaler.device.type != "cpu"
    return FloorRun(
        loop_s, pipe_s, net_s, enc_s, post, frames["loop"], frames["pipeline"], work.tile, on_gpu
    )
